"""Drives the measurements: boots the systemd box, installs ours (``make install``), 1.6.4
(``dpkg -i``, when its package is there) and an nspawn template unit inside it, makes the
subhost directories, runs bench/harness.py inside for each suite and collects raw samples."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.system.box import SystemdBox

from . import harness

REPO = Path(__file__).resolve().parent.parent
OLD_DEB_DIR = Path("/var/cache/overlay-boot-tests")
CONF = "BASE=.\nSTART=none\nCABLES= =\n"  # START=none, one cable (its host end brought up)
CONCURRENCY = (1, 10, 50, 100)
MEMORY_COUNTS = (50, 100, 200, 300)  # the memory curve: PSS per subhost with N running
MEMORY_RUNNING = 100  # the budget's point; 1.6.4 and nspawn are measured with this many
DIFF_ENTRIES = 100_000
OUT_CONSOLE = Path(__file__).resolve().parent / "out" / "box-console.log"


@dataclass(frozen=True)
class Options:
    reps: int = 10
    concurrency_reps: int = 10
    concurrency: tuple[int, ...] = CONCURRENCY
    generator_counts: tuple[int, ...] = (1, 100, 500)
    memory_counts: tuple[int, ...] = MEMORY_COUNTS
    memory_running: int = MEMORY_RUNNING  # one of memory_counts
    nspawn: bool = True
    old: bool = True


@dataclass
class Raw:
    """Everything measured: suite -> kind -> JSON from the harness."""

    data: dict[str, dict[str, dict]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def put(self, suite: str, kind: str, value: dict) -> None:
        self.data.setdefault(suite, {})[kind] = value

    def get(self, suite: str, kind: str) -> dict | None:
        return self.data.get(suite, {}).get(kind)


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def make_subhost(box: SystemdBox, name: str, text: str = CONF, *, link: bool = True) -> Path:
    """BOX.scratch/NAME with live/, root/, work/ and the config NAME.conf (TEXT), linked into
    /etc/overlay-boot with LINK; the config's path."""
    base = box.scratch / name
    for sub in ("live", "root", "work"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    conf = base / f"{name}.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    if link:
        box.run("ln", "-sf", str(conf), f"/etc/overlay-boot/{name}.conf")
    return conf


def old_deb() -> Path | None:
    found = sorted(OLD_DEB_DIR.glob("overlay-boot_1.6.4-*_*.deb"))
    return found[-1] if found else None


class Bench:
    def __init__(self, box: SystemdBox, opts: Options, raw: Raw) -> None:
        self.box = box
        self.opts = opts
        self.raw = raw
        self.scratch = box.scratch
        self.harness = self.scratch / "harness.py"
        self.tag = secrets.token_hex(2)  # names stay unique within the box
        self.have_old = False

    # -- setup --------------------------------------------------------------------------
    def name(self, prefix: str, i: int | str) -> str:
        return f"{prefix}{self.tag}{i}"  # at most 2 + 4 + 3 = 9 characters

    def base(self, name: str) -> str:
        return str(self.scratch / name)

    def make_subhost(self, name: str, *, link: bool, extra: str = "") -> None:
        make_subhost(self.box, name, CONF + extra, link=link)

    def make_container(self, name: str) -> None:
        base = self.scratch / name
        (base / "root" / "usr").mkdir(parents=True, exist_ok=True)
        (base / "upper").mkdir(parents=True, exist_ok=True)

    def setup(self) -> None:
        o = self.opts
        most = max((*o.concurrency, *o.memory_counts, o.memory_running))
        most_refs = max((*o.concurrency, o.memory_running))
        self.harness.write_text((Path(__file__).with_name("harness.py")).read_text())
        log("installing overlay-boot in the box (make install)")
        self.box.run("make", "-s", "-C", str(REPO), "install", timeout=300)
        self.box.run("mkdir", "-p", "/etc/overlay-boot")
        for i in range(most):
            self.make_subhost(self.name("ob", i), link=True)
        self.make_subhost(self.name("oc", ""), link=False)
        self.make_subhost(self.name("ou", ""), link=True, extra="CAPABILITIES=all\n")
        if self.opts.nspawn:
            for i in range(most_refs):
                self.make_container(self.name("ns", i))
            self.make_container(self.name("nc", ""))
            exec_start = " ".join(harness.nspawn_argv("%i", f"{self.scratch}/%i", unit=True))
            self.box.write_file(f"/run/systemd/system/{harness.NSPAWN_TEMPLATE}",
                                "[Unit]\nDescription=benchmark container %i (systemd-nspawn)\n"
                                # as systemd-nspawn@.service has them
                                "[Service]\nType=notify\nKillMode=mixed\nDelegate=yes\n"
                                "SuccessExitStatus=133\nTasksMax=16384\n"
                                # nspawn ends a container without --boot with SIGKILL: exit 1
                                "SuccessExitStatus=1\n"
                                f"ExecStart={exec_start}\n")
        for name, text in harness.FLOOR_UNITS.items():
            self.box.write_file(f"/run/systemd/system/{name}.service", text)
        deb = old_deb() if self.opts.old else None
        if deb is not None:
            log(f"installing {deb.name} in the box (dpkg -i)")
            r = self.box.run("dpkg", "-i", "--force-confold", str(deb), check=False,
                             timeout=300, env={"DEBIAN_FRONTEND": "noninteractive"})
            self.have_old = r.returncode == 0
            if not self.have_old:
                self.raw.errors.append(f"dpkg -i {deb.name} failed: {r.stderr[-500:]}")
            for i in range(self.opts.memory_running):
                self.make_subhost(self.name("od", i), link=False)
        elif self.opts.old:
            self.raw.notes.append("overlay-boot 1.6.4 is not downloaded (.ci/setup does it): "
                                  "no 1.6.4 reference")
        # Configs made just before a generator run make its list of them stale from the start
        # (knownlist.RECENT_NS): a host's configs are older than that at its boot.
        time.sleep(0.2)
        self.box.run("systemctl", "daemon-reload")
        fresh = self.box.run("/usr/bin/python3", "-I", "-c",
                             "from overlay_boot import knownlist; "
                             "print(len(knownlist.read() or []))", check=False)
        self.raw.notes.append(f"the generator's list of known configs (knownlist.py), read "
                              f"as a start reads it: {fresh.stdout.strip() or fresh.stderr[-200:]}"
                              " configs (0: absent or stale, each start parses them all)")
        # The first subhost starts the cable service's socket (/run/overlay-boot/net.sock):
        # listening before the "before" snapshot, it is not counted as left behind.
        self.box.run("systemctl", "start", "overlay-boot-net.socket", check=False)

    # -- running the harness ------------------------------------------------------------
    def harness_run(self, command: str, timeout: float = 600, **args: object) -> dict:
        r = self.box.run("/usr/bin/python3", str(self.harness), command, json.dumps(args),
                         check=False, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"harness {command} {args.get('kind', '')} failed:\n"
                               f"{r.stderr[-3000:]}")
        return json.loads(r.stdout)

    def suite(self, suite: str, kind: str, fn: Callable[[], dict]) -> None:
        start = time.monotonic()
        log(f"{suite} / {kind} …")
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - one failing suite must not lose the others
            self.raw.errors.append(f"{suite}/{kind}: {e}")
            log(f"{suite} / {kind} FAILED: {e}")
            traceback.print_exc(file=sys.stderr)
            return
        self.raw.put(suite, kind, result)
        if result.get("leaks"):
            log(f"{suite} / {kind}: LEFTOVERS {result['leaks'][:5]}")
        log(f"{suite} / {kind} done in {time.monotonic() - start:.1f} s")

    def kinds(self, *, cli: bool) -> list[tuple[str, str]]:
        """(kind, name) pairs to measure start/stop with."""
        out = [("ours-cli", self.name("oc", ""))] if cli else [("ours", self.name("ob", 0))]
        if self.opts.nspawn:
            out.append(("nspawn-cli", self.name("nc", "")) if cli else
                       ("nspawn", self.name("ns", 0)))
        if self.have_old:
            out.append(("old", self.name("od", 0)))
        return out

    def run_all(self) -> None:
        o = self.opts
        for cli in (False, True):
            suite = "startstop-cli" if cli else "startstop"
            for kind, name in self.kinds(cli=cli):
                if kind == "old" and cli:
                    continue  # 1.6.4 has only its command line: measured once, in "startstop"
                self.suite(suite, kind, lambda k=kind, n=name: self.harness_run(
                    "startstop", kind=k, name=n, base=self.base(n), reps=o.reps))
        for name in harness.FLOOR_UNITS:
            self.suite("floor", name, lambda n=name: self.harness_run(
                "startstop", kind="floor", name=n, base=str(self.scratch / n), reps=o.reps))
        self.suite("coldstart", "ours", lambda: self.harness_run(
            "coldstart", name=self.name("ob", 0), base=self.base(self.name("ob", 0)),
            reps=o.reps))
        self.suite("confinement", "ours", lambda: self.harness_run(
            "confinement", confined=self.name("ob", 0), unconfined=self.name("ou", ""),
            base_dir=str(self.scratch), reps=o.reps))
        # No USERNS= suite: the box's root is an overlay, which cannot be idmapped as a LOWER.
        # bench/userns_steps.py measures what USERNS= adds to a start, on the host.
        for kind, name in (("ours", self.name("ob", 0)),
                           *((("old", self.name("od", 0)),) if self.have_old else ())):
            self.suite("go", kind, lambda k=kind, n=name: self.harness_run(
                "go", kind=k, name=n, base=self.base(n), reps=o.reps))
        self.suite("diff", "ours", lambda: self.harness_run(
            "diff", directory=harness.DIFF_DIR, entries=DIFF_ENTRIES, reps=o.reps))
        self.suite("generator", "ours", lambda: self.harness_run(
            "generator", directory=str(self.scratch / "generator"),
            counts=list(o.generator_counts), reps=o.reps))
        mem = [("ours", "ob", sorted({*o.memory_counts, o.memory_running})),
               *((("nspawn", "ns", [o.memory_running]),) if o.nspawn else ()),
               *((("old", "od", [o.memory_running]),) if self.have_old else ())]
        for kind, prefix, counts in mem:
            names = [self.name(prefix, i) for i in range(max(counts))]
            self.suite("memory", kind, lambda k=kind, ns=names, c=counts: self.harness_run(
                "memory", timeout=1800, kind=k, names=ns, bases=[self.base(n) for n in ns],
                counts=c))
        for n in o.concurrency:
            for kind, prefix in (("ours", "ob"), *((("nspawn", "ns"),) if o.nspawn else ())):
                names = [self.name(prefix, i) for i in range(n)]
                self.suite(f"concurrent-{n}", kind, lambda k=kind, ns=names: self.harness_run(
                    "concurrent", kind=k, names=ns, bases=[self.base(x) for x in ns],
                    reps=o.concurrency_reps))

    def stop_bus(self) -> None:
        """Stop the shared D-Bus service (if it ran); note when SIGTERM did not end it."""
        unit = harness.BUS_UNIT
        if self.box.run("systemctl", "is-active", unit, check=False).stdout.strip() != "active":
            return
        try:
            self.box.run("systemctl", "stop", unit, timeout=10)
        except subprocess.TimeoutExpired:
            self.raw.errors.append(f"{unit} did not stop within 10 s of SIGTERM (it holds up "
                                   "a shutdown for its 90 s stop timeout): killed")
            self.box.run("systemctl", "kill", "-s", "KILL", unit, check=False)
            self.box.run("systemctl", "stop", unit, check=False, timeout=30)

    def box_state(self) -> set[str]:
        """Netns, links, runtime files and failed units in the box: compared before/after."""
        r = self.box.run("sh", "-c", "ls /run/netns 2>/dev/null; ls /sys/class/net; "
                         "ls /run/overlay-boot 2>/dev/null; "
                         "systemctl list-units --failed --plain --no-legend", check=False)
        return {x for x in r.stdout.split() if x and x != "●"}


def measure(opts: Options) -> Raw:
    """Boot a box, measure everything, destroy the box (also on errors)."""
    raw = Raw()
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="obbench-", dir="/tmp")) / "state"
    box = SystemdBox(state)
    try:
        log("booting the systemd box")
        box.boot()
        bench = Bench(box, opts, raw)
        bench.setup()
        before = bench.box_state()
        bench.run_all()
        bench.stop_bus()
        left = sorted(bench.box_state() - before)
        if left:
            raw.errors.append(f"left in the box after all suites: {left}")
    except Exception as e:  # noqa: BLE001 - report, and still destroy the box
        raw.errors.append(f"{type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stderr)
    finally:
        try:
            if box.running:
                box.poweroff()
                log(f"box powered off in {box.poweroff_seconds:.1f} s")
        except Exception as e:  # noqa: BLE001
            raw.errors.append(f"powering the box off: {type(e).__name__}: {str(e)[:200]}")
        if raw.errors and box.console.exists():
            OUT_CONSOLE.parent.mkdir(parents=True, exist_ok=True)
            OUT_CONSOLE.write_bytes(box.console.read_bytes())
            raw.notes.append(f"the box's console log: {OUT_CONSOLE}")
        try:
            box.destroy()
        except Exception as e:  # noqa: BLE001
            raw.errors.append(f"destroying the box: {type(e).__name__}: {e}")
            box.kill()
        if left := box.leftovers():
            raw.errors.append(f"the box left on the host: {left}")
        try:
            state.parent.rmdir()
        except OSError:
            pass
    raw.seconds = time.monotonic() - started
    return raw
