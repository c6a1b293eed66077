"""What a subhost may leave behind, by identity: before/after sets, not counts.

A `HostState` is a snapshot of everything a subhost can leave on the machine it ran on (the
test host in tests/root, the booted box in tests/system), each thing by its identity:

- mounts (mount id, mount point, source, type) from /proc/self/mountinfo;
- network namespaces by inode: /run/netns entries and nsfs bind mounts anywhere;
- links of this network namespace (netns inode, ifindex, name);
- processes by (PID, start time), with parent, cgroup, command line and the environment
  variables that say who started them (CONFIG of a `!` command, the test run's marker);
- runtime files and sockets (/run/overlay-boot/*: NAME.json/.lock/.ctl), systemd runtime
  drop-ins (/run/systemd/system/overlay-boot@*.d), transient units, machined registrations
  (/run/systemd/machines), cgroups named after the project, loop devices (backing file);
- the shared services (overlay-boot-net, overlay-boot-bus): PID, descriptors, memory.

Only what is attributable counts, so that other tests on the same host do not: a thing is
attributable to a `Scope` when it is named after one of its names or paths (a mount of
SCRATCH/NAME, /run/netns/NAME, link NAME-e0, NAME.ctl, overlay-boot@NAME.service's cgroup, a
process whose command line, cgroup or CONFIG names it, or whose hostname is NAME), or descends
from such a process (parent chain), or carries this test run's marker (``OVERLAY_BOOT_TEST_RUN``
in its environment: everything the test's commands started and did not clean it, e.g. a leaked
supervisor, `!` command or ifup, even once reparented to init).

The module is stdlib-only and runs standalone too (``python3 tests/leaks.py remains NAME ...``
inside the test box: tests/system).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: inherited by every command a test starts (and what those start, unless they clear the
#: environment): a leaked process is recognised by it even when reparented to init
MARKER_VAR = "OVERLAY_BOOT_TEST_RUN"
MARKER = os.environ.setdefault(MARKER_VAR, secrets.token_hex(8))

RUNTIME_DIRS = ("/run/overlay-boot",)
SYSTEMD_RUNTIME = ("/run/systemd/system", "/run/systemd/transient")
MACHINES_DIR = "/run/systemd/machines"
CGROUP_ROOT = "/sys/fs/cgroup"
SHARED_SERVICES = {"overlay-boot-net": "overlay_boot.netd",
                   "overlay-boot-bus": "overlay_boot.bus.service"}


@dataclass(frozen=True, order=True)
class Mount:
    """Identity: id, mount point and source together (the kernel reuses a freed mount id)."""

    mount_id: int
    mountpoint: str
    source: str
    fstype: str = field(compare=False)
    options: str = field(compare=False, repr=False)  # super options: overlay's upperdir=...

    def __str__(self) -> str:
        return f"mount {self.mount_id} {self.mountpoint} from {self.source} ({self.fstype})"

    def text(self) -> str:
        return f"{self.mountpoint} {self.source} {self.options}"


@dataclass(frozen=True, order=True)
class Netns:
    inode: int
    path: str

    def __str__(self) -> str:
        return f"netns {self.inode} {self.path}"

    def text(self) -> str:
        return self.path


@dataclass(frozen=True, order=True)
class Link:
    netns: int
    ifindex: int
    name: str

    def __str__(self) -> str:
        return f"link {self.ifindex} {self.name} in netns {self.netns}"

    def text(self) -> str:
        return self.name


@dataclass(frozen=True, order=True)
class Process:
    pid: int
    start: int  # start time in clock ticks since boot: (pid, start) is never reused
    ppid: int = field(compare=False)
    comm: str = field(compare=False)
    cmdline: str = field(compare=False)
    cgroup: str = field(compare=False)
    config: str = field(compare=False)  # CONFIG= (set for `!` commands)
    marked: bool = field(compare=False)  # carries this test run's marker
    uts: str = field(compare=False)

    def __str__(self) -> str:
        return f"process {self.pid} ({self.comm}) {self.cmdline[:200]} [cgroup {self.cgroup}]"

    def text(self) -> str:
        return f"{self.cmdline} {self.cgroup} {self.config}"


@dataclass(frozen=True, order=True)
class Entry:
    """A runtime file, socket, drop-in, machined registration, cgroup or loop device."""

    kind: str
    path: str
    detail: str = field(default="", compare=False)  # a cgroup's process count, a backing file

    def __str__(self) -> str:
        return f"{self.kind} {self.path}" + (f" ({self.detail})" if self.detail else "")

    def text(self) -> str:
        return f"{self.path} {self.detail}"


@dataclass(frozen=True)
class Usage:
    """A shared service's process: descriptors and resident memory."""

    pid: int
    start: int
    fds: int
    rss_kb: int


@dataclass(frozen=True)
class HostState:
    mounts: frozenset[Mount]
    netns: frozenset[Netns]
    links: frozenset[Link]
    processes: frozenset[Process]
    entries: frozenset[Entry]
    services: dict[str, Usage] = field(hash=False)

    def things(self) -> Iterator[Mount | Netns | Link | Process | Entry]:
        yield from sorted(self.mounts)
        yield from sorted(self.netns)
        yield from sorted(self.links)
        yield from sorted(self.processes)
        yield from sorted(self.entries)


@dataclass(frozen=True)
class Scope:
    """What one test started: subhost NAMES (also cable and bridge names), PATHS (its scratch
    directory, config files), MARKED: count processes carrying the test run's marker."""

    names: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    marked: bool = False

    def names_it(self, text: str, *, by_path: bool = True) -> bool:
        return any(n and n in text for n in (*self.names, *(self.paths if by_path else ())))


# --- reading the machine ----------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _unescape(field_: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field_.encode().decode("unicode_escape") if "\\" in field_ else field_


def _mounts(mountinfo: str) -> tuple[set[Mount], set[Netns]]:
    mounts, netns = set(), set()
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        mount = Mount(int(fields[0]), _unescape(fields[4]), _unescape(fields[sep + 2]),
                      fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else "")
        mounts.add(mount)
        if mount.fstype == "nsfs" and fields[3].startswith("net:["):
            netns.add(Netns(int(fields[3][5:-1]), mount.mountpoint))
    return mounts, netns


def _netns_entries() -> set[Netns]:
    found = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/run/netns"):
            with contextlib.suppress(OSError):
                found.add(Netns(entry.stat(follow_symlinks=False).st_ino, entry.path))
    return found


def _links() -> set[Link]:
    own = os.stat("/proc/self/ns/net").st_ino
    found = set()
    for name in os.listdir("/sys/class/net"):
        index = _read(f"/sys/class/net/{name}/ifindex").strip()
        if index.isdigit():
            found.add(Link(own, int(index), name))
    return found


def _process(pid: str) -> Process | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    comm = stat[stat.find("(") + 1:stat.rfind(")")]
    rest = stat[stat.rfind(")") + 2:].split()
    if rest[0] in ("Z", "X"):  # a zombie holds nothing but its PID; its parent is what counts
        return None
    environ = _read(f"/proc/{pid}/environ").split("\0")
    config = next((v[7:] for v in environ if v.startswith("CONFIG=")), "")
    cgroup = " ".join(line.split(":", 2)[2] for line in _read(f"/proc/{pid}/cgroup").splitlines()
                      if line.count(":") >= 2 and line.split(":", 2)[2] != "/")
    try:
        uts = os.readlink(f"/proc/{pid}/ns/uts")
    except OSError:
        uts = ""
    return Process(int(pid), int(rest[19]), int(rest[1]), comm,
                   _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip(), cgroup, config,
                   f"{MARKER_VAR}={MARKER}" in environ, uts)


def _processes() -> set[Process]:
    mine = _own_ancestry()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in mine and (proc := _process(entry)):
            found.add(proc)
    return found


def _own_ancestry() -> set[int]:
    """This process and its parents: the snapshot's own chain (in the box: nsenter, sh)."""
    chain, pid = set(), os.getpid()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        stat = _read(f"/proc/{pid}/stat")
        pid = int(stat[stat.rfind(")") + 2:].split()[1]) if stat else 0
    return chain


def _dir_entries(kind: str, directory: str, *, prefix: str = "") -> set[Entry]:
    with contextlib.suppress(OSError):
        return {Entry(kind, e.path) for e in os.scandir(directory) if e.name.startswith(prefix)}
    return set()


def _cgroups() -> set[Entry]:
    """cgroup directories named after the project (overlay-boot@NAME.service, a subhost's own,
    machine-*.scope) and how many processes each holds."""
    found = set()
    for top, dirs, _ in os.walk(CGROUP_ROOT):
        depth = top[len(CGROUP_ROOT):].count("/")
        if depth >= 4:
            dirs[:] = []
        for d in dirs:
            if "overlay-boot" in d or d.startswith("machine-"):
                path = f"{top}/{d}"
                procs = len(_read(f"{path}/cgroup.procs").split())
                found.add(Entry("cgroup", path[len(CGROUP_ROOT):], f"{procs} processes"))
    return found


def _loops() -> set[Entry]:
    found = set()
    with contextlib.suppress(OSError):
        for dev in os.listdir("/sys/block"):
            backing = _read(f"/sys/block/{dev}/loop/backing_file").strip()
            if backing:
                found.add(Entry("loop", f"/dev/{dev}", f"backing {backing}"))
    return found


def _entries() -> set[Entry]:
    found = set()
    for directory in RUNTIME_DIRS:
        found |= _dir_entries("file", directory)
    found |= _dir_entries("drop-in", SYSTEMD_RUNTIME[0], prefix="overlay-boot")
    found |= _dir_entries("transient", SYSTEMD_RUNTIME[1])
    found |= _dir_entries("machined", MACHINES_DIR)
    return found | _cgroups() | _loops()


def services(processes: Iterable[Process]) -> dict[str, Usage]:
    """The shared services' current processes (none while idle: they are started on demand)."""
    found = {}
    for proc in processes:
        for name, module in SHARED_SERVICES.items():
            if f"-m {module}" in proc.cmdline:
                status = _read(f"/proc/{proc.pid}/status")
                rss = next((int(line.split()[1]) for line in status.splitlines()
                            if line.startswith("VmRSS:")), 0)
                with contextlib.suppress(OSError):
                    found[name] = Usage(proc.pid, proc.start, len(os.listdir(
                        f"/proc/{proc.pid}/fd")), rss)
    return found


def snapshot() -> HostState:
    mounts, nsfs = _mounts(_read("/proc/self/mountinfo"))
    processes = _processes()
    return HostState(frozenset(mounts), frozenset(nsfs | _netns_entries()),
                     frozenset(_links()), frozenset(processes), frozenset(_entries()),
                     services(processes))


def identity(thing: object) -> str:
    """A thing's identity as text (its compared fields), for comparing snapshots as JSON."""
    return repr((type(thing).__name__, *(getattr(thing, f.name) for f in fields(thing)
                                         if f.compare)))


# --- attribution --------------------------------------------------------------------------------

_CLONE_NEWUTS = 0x04000000


def hostname_of(pid: int) -> str | None:
    """The hostname in PID's UTS namespace (setns in a throw-away thread: only that thread
    moves), None when it cannot be entered."""
    result: list[str] = []

    def look() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if libc.setns(fd, _CLONE_NEWUTS) == 0:
                result.append(os.uname().nodename)
        finally:
            os.close(fd)

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return result[0] if result else None


def attributable_processes(processes: Iterable[Process], scope: Scope) -> set[Process]:
    """Processes named after SCOPE's names (command line, cgroup, CONFIG, hostname) or marked
    (when SCOPE.marked), and everything descending from those. Not by SCOPE's paths: a scratch
    directory holds the other subhosts of the same test too, which may still run."""
    by_pid = {p.pid: p for p in processes}
    hostnames = {os.readlink("/proc/self/ns/uts"): None}  # UTS namespace -> its hostname
    names = set(scope.names)
    hit: set[int] = set()
    for proc in by_pid.values():
        if scope.names_it(proc.text(), by_path=False) or (scope.marked and proc.marked):
            hit.add(proc.pid)
        elif names and proc.uts:
            if proc.uts not in hostnames:
                hostnames[proc.uts] = hostname_of(proc.pid)
            if hostnames[proc.uts] in names:
                hit.add(proc.pid)
    found = set()
    for proc in by_pid.values():
        seen, pid = set(), proc.pid
        while pid in by_pid and pid not in seen:  # up the parent chain
            if pid in hit:
                found.add(proc)
                break
            seen.add(pid)
            pid = by_pid[pid].ppid
    return found


def attributable(state: HostState, scope: Scope) -> list[object]:
    things = [t for t in state.things() if not isinstance(t, Process) and scope.names_it(t.text())]
    return things + sorted(attributable_processes(state.processes, scope))


def new_things(before: HostState, after: HostState, scope: Scope) -> list[str]:
    """What SCOPE left: attributable in AFTER and not in BEFORE, by identity."""
    old = {*before.mounts, *before.netns, *before.links, *before.processes, *before.entries}
    return [str(t) for t in attributable(after, scope) if t not in old]


def leftovers(before: HostState, name: str, *, paths: Iterable[str] = (),
              marked: bool = False) -> list[str]:
    """Everything NAME (with PATHS: its scratch directory, config) left behind since BEFORE;
    MARKED: also any process the test's own commands started that still runs."""
    return new_things(before, snapshot(), Scope((name,), tuple(paths), marked))


def remains(name: str, *paths: str) -> list[str]:
    """Everything named after NAME (or PATHS) that exists now, whenever it appeared: after a
    subhost stopped, nothing of it may exist at all."""
    return [str(t) for t in attributable(snapshot(), Scope((name,), paths))]


def processes_of(name: str) -> list[tuple[int, str]]:
    """Processes of NAME running now: inside it (hostname NAME), its supervisor (its config on
    the command line), its `!` commands (CONFIG) and their descendants."""
    procs = attributable_processes(_processes(), Scope((name,)))
    return [(p.pid, p.cmdline) for p in sorted(procs)]


def wait_clean(before: HostState, name: str, timeout: float = 5.0, *,
               paths: Iterable[str] = ()) -> list[str]:
    """Leftovers after giving asynchronous kernel cleanup (netns, veth) a moment; processes
    the test run's commands started count too (the test started only NAME)."""
    deadline = time.monotonic() + timeout
    while True:
        problems = leftovers(before, name, paths=paths, marked=True)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.05)


def grown(before: dict[str, Usage], after: dict[str, Usage], *, fds: int,
          rss_kb: int) -> list[str]:
    """The shared services that grew past a bound while the same process kept running (one
    that exited when idle and was started again is not comparable)."""
    problems = []
    for name, old in sorted(before.items()):
        new = after.get(name)
        if new is None or (new.pid, new.start) != (old.pid, old.start):
            continue
        if new.fds > old.fds + fds:
            problems.append(f"{name} (PID {new.pid}): {old.fds} -> {new.fds} descriptors")
        if new.rss_kb > old.rss_kb + rss_kb:
            problems.append(f"{name} (PID {new.pid}): {old.rss_kb} -> {new.rss_kb} kB resident")
    return problems


# --- running the project's commands -----------------------------------------------------------

def command(name: str) -> list[str]:
    """How tests run one of the project's commands: this interpreter, this checkout."""
    return [sys.executable, "-m", f"overlay_boot.cli.{name}"]


def run_command(
    name: str, *args: str, timeout: float = 60, **kwargs
) -> subprocess.CompletedProcess:
    env = dict(os.environ, OVERLAY_BOOT_NO_SYSTEMD="1", PYTHONPATH=str(REPO))
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [*command(name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=kwargs.pop("cwd", str(REPO)),
        **kwargs,
    )


# --- standalone: inside the test box ----------------------------------------------------------

def main(argv: list[str]) -> int:
    """``remains NAME [PATH...]``: one line per thing; ``services``: JSON of the shared
    services' usage; ``snapshot``: JSON of the whole snapshot (identity -> description)."""
    if argv[:1] == ["remains"] and len(argv) >= 2:
        for line in remains(argv[1], *argv[2:]):
            print(line)
        return 0
    if argv == ["services"]:
        print(json.dumps({k: asdict(v) for k, v in services(_processes()).items()}))
        return 0
    if argv == ["snapshot"]:
        state = snapshot()
        print(json.dumps({"things": {identity(t): str(t) for t in state.things()},
                          "services": {k: asdict(v) for k, v in state.services.items()}}))
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
