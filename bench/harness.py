"""The benchmark's measuring side: runs *inside* the booted systemd box, under Debian's
/usr/bin/python3, standard library only. Each subcommand prints one JSON object of raw samples
(seconds, bytes) on stdout; the orchestrator (``python -m bench``) turns them into statistics.

Kinds of subhost measured the same way:

* ``ours``        overlay-boot@NAME.service: ``systemctl start`` (returns at READY=1) and
                  ``systemctl stop`` (returns once the unit is inactive);
* ``ours-cli``    ``overlay-boot --no-systemd CONF`` (returns once PID 1 reported ready) and
                  ``overlay-stop CONF`` (returns once the supervisor released its lock);
* ``nspawn``      nsbench@NAME.service, ``systemd-nspawn`` on an overlay of ``/`` with a veth,
                  Type=notify (nspawn sends READY=1 once its container's init runs);
* ``nspawn-cli``  the same systemd-nspawn run directly, ready at its READY=1 on our own notify
                  socket, stopped with SIGTERM;
* ``old``         Debian's overlay-boot 1.6.4 scripts (/usr/sbin/overlay-boot CONF returns at
                  once and works in the background): ready when its ``/.reaper NAME`` runs;
                  stopped by /usr/sbin/overlay-stop CONF, cleaned when its background shell,
                  netns and host cable end are gone.

Every stop is followed by a check that the subhost left nothing (netns, host link, mounts under
its base, runtime files, processes); the stop time runs until that check passes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SBIN = "/usr/local/sbin"
OLD_SBIN = "/usr/sbin"
GENERATOR = "/usr/local/lib/systemd/system-generators/overlay-boot-generator"
GENERATOR_OUT = "/run/obbench-generator"  # a tmpfs, as systemd's generator directories
DIFF_DIR = "/run/obbench-diff"  # in the box's own /run: a tmpfs is mounted on it
NSPAWN_TEMPLATE = "nsbench@.service"
# The floor under any service started through systemctl on this machine: a unit that only
# runs /bin/sleep (Type=exec), and one whose whole main process is a Python interpreter that
# says READY=1 (Type=notify, `python3 -I -S` importing socket: what any Python service pays).
FLOOR_UNITS = {
    "floor-exec": "[Service]\nType=exec\nExecStart=/bin/sleep infinity\n",
    "floor-python": (
        "[Service]\nType=notify\nNotifyAccess=main\nExecStart=/usr/bin/python3 -I -S -c "
        "\"import os, signal, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
        "a = os.environ['NOTIFY_SOCKET']; s.sendto(b'READY=1', chr(0) + a[1:] if a[0] == '@' "
        "else a); signal.pause()\"\n"),
}
BUS_UNIT = "overlay-boot-bus.service"
NET_UNIT = "overlay-boot-net.service"
SHARED_UNITS = (NET_UNIT, BUS_UNIT)  # the project's services shared by all subhosts
CLEAN_TIMEOUT = 10.0
POLL = 0.001

now = time.monotonic


# -- small helpers ----------------------------------------------------------------------------

def run(*argv: str, env: dict[str, str] | None = None, input: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, input=input,
                       env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        units = [a for a in argv if a.endswith(".service")]
        journal = subprocess.run(
            ["journalctl", "--no-pager", "-o", "short-monotonic", "-n", "40",
             *(f"--unit={u}" for u in units[:3])],
            capture_output=True, text=True).stdout if units else ""
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}\n"
                           f"{journal}")
    return r


def read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cmdline(pid: int | str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid in pids():
        stat = read(f"/proc/{pid}/stat")
        if stat:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(pid)
    return kids


def descendants(root: int) -> list[int]:
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def mount_points() -> list[str]:
    """The mount points of this mount namespace (read once for a pass over many subhosts)."""
    return [line.split()[4] for line in read("/proc/self/mountinfo").splitlines()]


def mounts_under(prefix: str, points: list[str] | None = None) -> list[str]:
    prefix = prefix.rstrip("/")
    points = mount_points() if points is None else points
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def unit_cgroup(unit: str) -> str:
    """Where systemd puts template instance UNIT (prefix@instance.service) in the box."""
    if "@" not in unit:
        return f"/sys/fs/cgroup/system.slice/{unit}"
    prefix = unit.split("@")[0].replace("-", "\\x2d")
    return f"/sys/fs/cgroup/system.slice/system-{prefix}.slice/{unit}"


def unit_procs(unit: str) -> list[int]:
    """Processes in UNIT's cgroup (read directly: no systemctl call in the polling loops)."""
    found: list[int] = []
    for d, _, _ in os.walk(unit_cgroup(unit)):
        found += [int(p) for p in read(f"{d}/cgroup.procs").split()]
    return found


def pss(pid: int) -> int:
    """Proportional set size of PID in bytes (0 if gone)."""
    for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_until(predicate, timeout: float = CLEAN_TIMEOUT) -> bool:
    deadline = now() + timeout
    while True:
        if predicate():
            return True
        if now() > deadline:
            return False
        time.sleep(POLL)


# -- the kinds of subhost ---------------------------------------------------------------------

class Kind:
    """One way of running a subhost NAME whose base is BASE (config BASE/NAME.conf)."""

    def __init__(self, name: str, base: str) -> None:
        self.name = name
        self.base = base
        self.conf = f"{base}/{name}.conf"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def procs(self) -> list[int]:
        raise NotImplementedError

    def links(self) -> list[str]:
        return [f"{self.name}0"]

    def leftovers(self, points: list[str] | None = None) -> list[str]:
        """What is left of it; POINTS: the mount points, if read already (``mount_points``)."""
        found = [f"link {ln}" for ln in self.links() if os.path.exists(f"/sys/class/net/{ln}")]
        found += [f"mount {m}" for m in mounts_under(self.base, points)]
        found += [f"process {p} {' '.join(cmdline(p))}" for p in self.procs()]
        return found


class Ours(Kind):
    unit_prefix = "overlay-boot@"

    @property
    def unit(self) -> str:
        return f"{self.unit_prefix}{self.name}.service"

    def start(self) -> None:
        run("systemctl", "start", self.unit)

    def stop(self) -> None:
        run("systemctl", "stop", self.unit)

    def procs(self) -> list[int]:
        return unit_procs(self.unit)

    def leftovers(self, points: list[str] | None = None) -> list[str]:
        found = super().leftovers(points)
        found += [f"file {p}" for p in (f"/run/netns/{self.name}",
                                        f"/run/overlay-boot/{self.name}.json",
                                        f"/run/overlay-boot/{self.name}.lock",
                                        f"/run/overlay-boot/{self.name}.ctl")
                  if os.path.exists(p)]
        return found

    def leader(self) -> int:
        return json.loads(read(f"/run/overlay-boot/{self.name}.json"))["leader_pid"]


class OursCli(Ours):
    env = {"OVERLAY_BOOT_NO_SYSTEMD": "1"}

    def start(self) -> None:
        run(f"{SBIN}/overlay-boot", "--no-systemd", self.conf, env=self.env)

    def stop(self) -> None:
        run(f"{SBIN}/overlay-stop", self.conf, env=self.env)

    def procs(self) -> list[int]:
        record = read(f"/run/overlay-boot/{self.name}.json")
        if not record:
            return [p for p in pids() if self.conf in cmdline(p)]
        return descendants(json.loads(record)["supervisor_pid"])


class Nspawn(Ours):
    unit_prefix = "nsbench@"

    def links(self) -> list[str]:
        return [f"ve-{self.name}"]

    def leftovers(self, points: list[str] | None = None) -> list[str]:
        return Kind.leftovers(self, points)


def nspawn_argv(name: str, base: str, *, unit: bool) -> list[str]:
    """The container: an overlay of / (upper BASE/upper), a veth, `sleep infinity` as PID 2.

    In a unit, ``--keep-unit`` keeps the container in the unit's cgroup (as
    systemd-nspawn@.service does); from the command line nspawn makes a scope of its own.
    BASE/root is an empty directory with an empty usr/ (nspawn refuses a root without one);
    the overlay mounted on the container's / hides it.
    """
    return ["/usr/bin/systemd-nspawn", "--quiet", f"--directory={base}/root",
            f"--overlay=/:{base}/upper:/", "--network-veth", f"--machine={name}",
            "--register=no", "--link-journal=no", *(["--keep-unit"] if unit else []),
            "--as-pid2", "/bin/sleep", "infinity"]


class NspawnCli(Kind):
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        path = f"/run/nsbench-{self.name}.notify"
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock.bind(path)
        try:
            self.proc = subprocess.Popen(nspawn_argv(self.name, self.base, unit=False),
                                         env={**os.environ, "NOTIFY_SOCKET": path},
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            sock.settimeout(10)
            while b"READY=1" not in sock.recv(4096).split(b"\n"):
                pass
        finally:
            sock.close()
            os.unlink(path)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.proc = None

    def procs(self) -> list[int]:
        return descendants(self.proc.pid) if self.proc else []

    def links(self) -> list[str]:
        return [f"ve-{self.name}"]


class Old(Kind):
    """1.6.4: /usr/sbin/overlay-boot forks a background shell (`unshare -m` of itself) whose
    descendants end in `/.reaper NAME`, the subhost's PID 1."""

    def _shell(self) -> int | None:
        for pid in pids():
            argv = cmdline(pid)
            if len(argv) >= 3 and argv[1] == f"{OLD_SBIN}/overlay-boot" and argv[2] == self.conf:
                return pid
        return None

    def _reaper(self) -> int | None:
        want = ["/.reaper", self.name]
        for pid in pids():
            if cmdline(pid) == want:
                return pid
        return None

    def start(self) -> None:
        run(f"{OLD_SBIN}/overlay-boot", self.conf)
        if not wait_until(lambda: self._reaper() is not None, 30):
            raise RuntimeError(f"1.6.4's reaper of {self.name} did not start: "
                               f"{read(f'/tmp/oly-{self.name}.log')[-2000:]}")

    def stop(self) -> None:
        run(f"{OLD_SBIN}/overlay-stop", self.conf)

    def procs(self) -> list[int]:
        shell = self._shell()
        return descendants(shell) if shell else []

    def leftovers(self, points: list[str] | None = None) -> list[str]:
        found = super().leftovers(points)
        if os.path.exists(f"/run/netns/{self.name}"):
            found.append(f"file /run/netns/{self.name}")
        return found

    def tidy(self) -> None:
        """1.6.4 leaves its cgroup (setup_cgroup2_accounting) behind: not counted, removed."""
        try:
            os.rmdir(f"/sys/fs/cgroup/{self.name}")
        except OSError:
            pass


class Floor(Kind):
    """A FLOOR_UNITS unit; NAME is the unit's name without .service."""

    def start(self) -> None:
        run("systemctl", "start", f"{self.name}.service")

    def stop(self) -> None:
        run("systemctl", "stop", f"{self.name}.service")

    def procs(self) -> list[int]:
        return unit_procs(f"{self.name}.service")

    def links(self) -> list[str]:
        return []


KINDS = {"ours": Ours, "ours-cli": OursCli, "nspawn": Nspawn, "nspawn-cli": NspawnCli,
         "old": Old, "floor": Floor}


def leftovers_of(ks: list[Kind]) -> list[str]:
    """What any of KS left, the mount table read once for all: read once per subhost, a
    check of 100 took 50-80 ms of the time measured for stopping them."""
    points = mount_points()
    return [x for k in ks for x in k.leftovers(points)]


def stop_and_clean(k: Kind) -> tuple[float, float, list[str]]:
    """Stop K; (seconds until the stop command returned, until nothing was left, leftovers)."""
    t0 = now()
    k.stop()
    t1 = now()
    clean = wait_until(lambda: not k.leftovers())
    t2 = now()
    if isinstance(k, Old):
        k.tidy()
    return t1 - t0, t2 - t0, [] if clean else k.leftovers()


# -- subcommands ------------------------------------------------------------------------------

def cmd_startstop(kind: str, name: str, base: str, reps: int, warmup: int = 1) -> dict:
    k = KINDS[kind](name, base)
    out: dict = {"start": [], "stop": [], "stop_return": [], "leaks": []}
    for i in range(warmup + reps):
        t0 = now()
        k.start()
        t1 = now()
        returned, cleaned, left = stop_and_clean(k)
        if i >= warmup:
            out["start"].append(t1 - t0)
            out["stop"].append(cleaned)
            out["stop_return"].append(returned)
        out["leaks"] += left
    return out


def _paired(names: tuple[str, str], labels: tuple[str, str], base_dir: str, reps: int,
            kind: str = "ours") -> dict:
    """Start and stop two subhosts in turn, REPS pairs after one warming up: their start
    times under LABELS, and "added", the paired difference (first minus second)."""
    pair = [KINDS[kind](name, f"{base_dir}/{name}") for name in names]
    out: dict = {"added": [], labels[0]: [], labels[1]: [], "leaks": []}
    for i in range(reps + 1):
        times = []
        for k in pair:
            t0 = now()
            k.start()
            times.append(now() - t0)
            out["leaks"] += stop_and_clean(k)[2]
        if i > 0:  # the first pair warms up
            out[labels[0]].append(times[0])
            out[labels[1]].append(times[1])
            out["added"].append(times[0] - times[1])
    return out


def cmd_confinement(confined: str, unconfined: str, base_dir: str, reps: int) -> dict:
    """A confined subhost and an unconfined one (CAPABILITIES=all): the paired difference of
    their start times is what the confinement adds."""
    return _paired((confined, unconfined), ("confined", "unconfined"), base_dir, reps)


def stop_net_service() -> None:
    """Stop the cable service (its socket stays): the next start is a cold one."""
    run("systemctl", "stop", NET_UNIT)


def cmd_coldstart(name: str, base: str, reps: int) -> dict:
    """Pairs of starts of one subhost: warm (the cable service runs, as the previous start
    left it) then cold (the cable service stopped just before; its socket starts it again).
    Each start is followed by a stop and the leftover check; one pair warms up."""
    k = Ours(name, base)
    out: dict = {"warm": [], "cold": [], "cold_over_warm": [], "leaks": []}
    for i in range(reps + 1):
        times = []
        for cold in (False, True):
            if cold:
                stop_net_service()
            t0 = now()
            k.start()
            times.append(now() - t0)
            out["leaks"] += stop_and_clean(k)[2]
        if i > 0:
            out["warm"].append(times[0])
            out["cold"].append(times[1])
            out["cold_over_warm"].append(times[1] / times[0])
    return out


def cmd_go(kind: str, name: str, base: str, reps: int) -> dict:
    k = KINDS[kind](name, base)
    k.start()
    out: dict = {"go": [], "leaks": []}
    try:
        for i in range(reps + 1):
            t0 = now()
            if kind == "old":  # its overlay-go runs bash; bash reads `true` from stdin
                r = run(f"{OLD_SBIN}/overlay-go", name, input="true\n")
            else:
                r = run(f"{SBIN}/overlay-go", name, "--", "true")
            t1 = now()
            if r.returncode == 0 and i > 0:
                out["go"].append(t1 - t0)
    finally:
        out["leaks"] += stop_and_clean(k)[2]
    return out


def cmd_generator(directory: str, counts: list[int], reps: int) -> dict:
    """The generator as systemd runs it (a fresh process), on N configs in a directory."""
    out: dict = {}
    for n in counts:
        confs = Path(directory) / f"n{n}"
        confs.mkdir(parents=True, exist_ok=True)
        confs.chmod(0o755)
        for i in range(n):
            conf = confs / f"g{i:04d}.conf"
            conf.write_text(f"BASE=/srv/g{i:04d}\nSTART=none\nCABLES= =\nRAM_SIZE=20M\n")
            conf.chmod(0o644)
        env = {"OVERLAY_BOOT_CONFIG_DIR": str(confs),
               "OVERLAY_BOOT_SUBHOSTS_CONF": "/nonexistent/subhosts.conf"}
        times = []
        for i in range(reps + 1):
            # systemd hands generators empty directories under /run (a tmpfs)
            dest = Path(GENERATOR_OUT)
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(mode=0o755)
            dirs = [str(dest / d) for d in ("normal", "early", "late")]
            for d in dirs:
                os.mkdir(d, 0o755)
            t0 = now()
            run(GENERATOR, *dirs, env=env)
            t1 = now()
            made = len(list((dest / "normal").glob("overlay-boot@*.service.d")))
            shutil.rmtree(dest)
            if made != n:
                raise RuntimeError(f"the generator wrote {made} drop-ins for {n} configs")
            if i > 0:
                times.append(t1 - t0)
        out[str(n)] = times
    return out


def make_diff_layers(directory: str, entries: int) -> tuple[str, int]:
    """A config whose UPPER holds ENTRIES entries over a LOWER made before it (as the host's
    files are older than a subhost's): per directory of 1000, half the files copy a lower one,
    a tenth are whiteouts, the rest new. Returns the config and how many entries overlay-diff
    must report (the merged directories are not entries of their own)."""
    base = Path(directory)
    dirs, per_dir = max(1, entries // 1000), 999
    for d in range(dirs):
        lower = base / "lower" / f"d{d:03d}"
        lower.mkdir(parents=True, exist_ok=True)
        for f in range(0, per_dir, 2):
            (lower / f"f{f:04d}").write_text("lower\n")
    for d in range(dirs):
        upper = base / "upper" / f"d{d:03d}"
        upper.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            if f % 10 == 9:
                os.mknod(upper / f"f{f:04d}", 0o020000 | 0o600, 0)
            else:
                (upper / f"f{f:04d}").write_text("upper\n")
    for sub in ("work", "live"):
        (base / sub).mkdir(exist_ok=True)
    conf = base / "diff.conf"
    conf.write_text("BASE=.\nLOWER=lower\nUPPER=upper\nWORK=work\nLIVE=live\nSTART=none\n")
    conf.chmod(0o644)
    base.chmod(0o755)
    return str(conf), dirs * per_dir


def cmd_diff(directory: str, entries: int, reps: int) -> dict:
    """`overlay-diff --json CONF` of a stopped subhost whose UPPER holds ENTRIES entries, the
    whole command, its output read to the end (the first run, unmeasured, also checks it)."""
    # On a tmpfs of the box's own: unmounted at once afterwards, where removing 150,000 files
    # from the host's disk took minutes of the benchmark's time.
    os.makedirs(directory, mode=0o755, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", "mode=0755,size=2g", "obbench-diff", directory)
    try:
        conf, expected = make_diff_layers(directory, entries)
        out: dict = {"diff": [], "entries": entries}
        for i in range(reps + 1):
            t0 = now()
            r = subprocess.run([f"{SBIN}/overlay-diff", "--json", conf], capture_output=True)
            t1 = now()
            if r.returncode != 0:
                raise RuntimeError(f"overlay-diff exited {r.returncode}: {r.stderr.decode()}")
            if i == 0:
                reported = r.stdout.count(b"\n")
                if reported != expected:
                    raise RuntimeError(f"overlay-diff reported {reported} entries, "
                                       f"not {expected}")
            else:
                out["diff"].append(t1 - t0)
    finally:
        run("umount", directory, check=False)
    return out


def _subhost_pss(k: Kind, own_pidns: str) -> tuple[int, int]:
    """PSS of K's processes in bytes: (host side, inside its PID namespace)."""
    host = inside = 0
    for pid in k.procs():
        size = pss(pid)
        try:
            inner = os.readlink(f"/proc/{pid}/ns/pid") != own_pidns
        except OSError:
            inner = False
        if inner:
            inside += size
        else:
            host += size
    return host, inside


def cmd_memory(kind: str, names: list[str], bases: list[str], counts: list[int]) -> dict:
    """Start subhosts in steps up to each of COUNTS running; at each step (1 s after the last
    start, so that short-lived helpers have ended) the PSS of each running subhost's processes
    and of the project's shared services; then stop all.

    Per count: "host" and "inside" (one value per running subhost, bytes) and "shared"
    (unit -> PSS of all its processes, 0 when it does not run)."""
    ks = [KINDS[kind](n, b) for n, b in zip(names, bases, strict=True)]
    out: dict = {"counts": {}, "leaks": []}
    own_pidns = os.readlink("/proc/self/ns/pid")
    running = 0
    try:
        for count in sorted(counts):
            if kind in ("ours", "nspawn"):
                batch, running = ks[running:count], count  # all stopped again, even on errors
                run("systemctl", "start", *(k.unit for k in batch))  # type: ignore[attr-defined]
            while running < count:
                ks[running].start()
                running += 1
            time.sleep(1.0)
            parts = [_subhost_pss(k, own_pidns) for k in ks[:count]]
            out["counts"][str(count)] = {
                "host": [h for h, _ in parts], "inside": [i for _, i in parts],
                "shared": {u: sum(pss(p) for p in unit_procs(u)) for u in SHARED_UNITS}
                if kind == "ours" else {}}
        if ks[:running]:
            out["example"] = [{"pss": pss(p), "cmd": " ".join(cmdline(p))[:80]}
                              for p in ks[0].procs()]
    finally:
        started = ks[:running]
        if kind in ("ours", "nspawn") and started:
            run("systemctl", "stop", *(k.unit for k in started), check=False)  # type: ignore
            for k in started:
                if not wait_until(lambda k=k: not k.leftovers()):
                    out["leaks"] += k.leftovers()
        else:
            for k in started:
                out["leaks"] += stop_and_clean(k)[2]
    return out


def cmd_concurrent(kind: str, names: list[str], bases: list[str], reps: int) -> dict:
    """`systemctl start` of all units at once: time until it returned (all active), then
    `systemctl stop` of all: time until it returned and nothing was left."""
    ks = [KINDS[kind](n, b) for n, b in zip(names, bases, strict=True)]
    units = [k.unit for k in ks]  # type: ignore[attr-defined]
    out: dict = {"start": [], "stop": [], "leaks": [], "not_active": []}
    try:
        for i in range(reps + 1):
            t0 = now()
            run("systemctl", "start", *units)
            t1 = now()
            states = run("systemctl", "is-active", *units, check=False).stdout.split()
            out["not_active"] += [u for u, s in zip(units, states, strict=False) if s != "active"]
            t2 = now()
            run("systemctl", "stop", *units)
            clean = wait_until(lambda: not leftovers_of(ks))
            t3 = now()
            if not clean:
                out["leaks"] += leftovers_of(ks)
            if i > 0:
                out["start"].append(t1 - t0)
                out["stop"].append(t3 - t2)
    except BaseException:
        run("systemctl", "stop", *units, check=False)
        raise
    return out


def main(argv: list[str]) -> int:
    command, args = argv[1], json.loads(argv[2])
    func = globals()[f"cmd_{command}"]
    result = func(**args)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
