"""Runtime files of running subhosts: the per-subhost lock and the runtime record.

The supervisor holds ``RUN_DIR/NAME.lock`` (flock) for its whole life, so "is NAME running?" is
answered by the kernel, never by a stale pid file. ``RUN_DIR/NAME.json`` says where to find the
running subhost (supervisor and leader PIDs, root, config, host interfaces). ``RUN_DIR/NAME.ctl``
is the control socket of its PID 1.

RUN_DIR is root's alone (0700, lock files 0600): nobody else can open a lock, so nobody else can
hold one and make a dead subhost look alive. A lock file is unlinked only by whoever holds it;
taking a lock re-checks that the file locked is still the one at the path. A record names
processes by PID *and* start time (``/proc/PID/stat`` field 22) in this boot: ``open_process``
gives a pidfd only while that is still the same process, and signals and ``setns`` go through it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import time
from pathlib import Path

from . import jsonlite
from .errors import SubhostError
from .record import Record, as_dict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

RUN_DIR = Path(os.environ.get("OVERLAY_BOOT_RUN_DIR", "/run/overlay-boot"))


class Runtime(Record):
    """What the supervisor records about a running subhost (its JSON file: the fields)."""

    name: str
    config: str
    supervisor_pid: int
    leader_pid: int
    root: str
    started: float = 0.0  # time.time() when 0
    interfaces: tuple[str, ...] = ()
    state: str = "starting"  # starting, running, stopping
    services: tuple[tuple[str, str], ...] = ()  # (START word, state) as PID 1 reports them
    # Who the PIDs are: start times (clock ticks after boot, /proc/PID/stat field 22) in the
    # boot BOOT_ID. A record without them (0, "") names no process that may be signalled.
    supervisor_start: int = 0
    leader_start: int = 0
    boot_id: str = ""
    # The runtime drop-in this start found (dropin_stamp): a later start's is not removed.
    dropin: str = ""
    # USERNS=: "BASE:COUNT", the host ids of the subhost's user namespace; "" without one.
    userns: str = ""

    def __post_init__(self) -> None:
        if not self.started:
            object.__setattr__(self, "started", time.time())


class AlreadyRunning(SubhostError):
    pass


RUNTIME_UNIT_DIR = Path("/run/systemd/system")


def runtime_dropin(name: str) -> Path:
    """The drop-in with which `overlay-boot CONF` runs a config systemd's generator doesn't know
    as overlay-boot@NAME.service, until the subhost stops."""
    from .naming import unit_name

    return RUNTIME_UNIT_DIR / f"{unit_name(name)}.d" / "60-overlay-boot-command-line.conf"


def dropin_stamp(name: str) -> str:
    """What identifies the runtime drop-in now there (inode and change time), "" if none."""
    try:
        info = os.stat(runtime_dropin(name), follow_symlinks=False)
    except OSError:
        return ""
    return f"{info.st_ino}:{info.st_ctime_ns}"


def remove_runtime_dropin(name: str, stamp: str | None = None) -> None:
    """Remove the runtime drop-in; with STAMP only if it is still that one (dropin_stamp), so
    that the end of one run never removes the drop-in a newer `overlay-boot CONF` wrote."""
    dropin = runtime_dropin(name)
    if stamp is not None and (not stamp or dropin_stamp(name) != stamp):
        return
    try:
        dropin.unlink()
        dropin.parent.rmdir()
    except OSError:
        pass


def lock_path(name: str) -> Path:
    return RUN_DIR / f"{name}.lock"


def runtime_path(name: str) -> Path:
    return RUN_DIR / f"{name}.json"


def control_path(name: str) -> Path:
    """PID 1's control socket (docs/ARCHITECTURE.md, "Entering a subhost")."""
    return RUN_DIR / f"{name}.ctl"


def ensure_run_dir() -> None:
    """Create RUN_DIR 0700 or make it so; refuse one that is not root's own directory."""
    RUN_DIR.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        RUN_DIR.mkdir(mode=0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SubhostError(f"{RUN_DIR}: {exc.strerror}: it must be a directory") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise SubhostError(f"{RUN_DIR} belongs to uid {info.st_uid}, not to root: "
                               "remove it and try again")
        if info.st_mode & 0o7777 != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def try_lock(name: str) -> int | None:
    """Take NAME's lock without waiting: its fd (close it to release), None while a supervisor
    (or a cleanup) holds it. The lock file is 0600 and the one still at the path."""
    ensure_run_dir()
    path = lock_path(name)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SubhostError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _is_at(fd, path):
            os.fchmod(fd, 0o600)
            return fd
        os.close(fd)  # unlinked by its holder meanwhile: lock the new one


def _is_at(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def acquire(name: str) -> int:
    """Take the subhost's lock; returns the lock's fd (close it to release).

    Raises AlreadyRunning when another supervisor holds it. A record and control socket found
    with the lock free are a crashed run's: they are removed here, before anything trusts them.
    """
    fd = try_lock(name)
    if fd is None:
        record = read(name)
        pid = f" (supervisor pid {record.supervisor_pid})" if record else ""
        raise AlreadyRunning(f"subhost {name} is already running{pid}")
    _unlink(runtime_path(name), control_path(name))
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def is_locked(name: str, *, dir_fd: int | None = None) -> bool:
    """True while a supervisor of NAME (or a cleanup of it) holds its lock. DIR_FD: a
    descriptor of RUN_DIR (a pass over many names builds no path for each)."""
    where = lock_path(name) if dir_fd is None else f"{name}.lock"
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_unlocked(name: str, timeout: float) -> bool:
    """Wait until no supervisor holds NAME's lock; False on timeout."""
    try:
        fd = os.open(lock_path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return True
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
    finally:
        os.close(fd)


# -- who a PID is -------------------------------------------------------------------------------

def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_time(pid: int) -> int:
    """When PID started (clock ticks after boot, /proc/PID/stat field 22); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # comm (field 2) may hold anything, ")" included: the fields after it follow the last ")"
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def open_process(pid: int, started: int, boot: str) -> int | None:
    """A pidfd of PID if it is still the process that started at STARTED in boot BOOT, else
    None. The pidfd is taken first and the start time checked after: if PID was reused in
    between, the check fails; once it passed, the pidfd names that process whatever happens."""
    if pid <= 0 or started <= 0 or not boot or boot != boot_id():
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if start_time(pid) != started:
        os.close(fd)
        return None
    return fd


def supervisor_process(record: Runtime) -> int | None:
    """A pidfd of the record's supervisor, if it is still alive (open_process)."""
    return open_process(record.supervisor_pid, record.supervisor_start, record.boot_id)


def leader_process(record: Runtime) -> int | None:
    """A pidfd of the record's PID 1 (the leader), if it is still alive (open_process)."""
    return open_process(record.leader_pid, record.leader_start, record.boot_id)


def send_signal(pidfd: int, signum: int) -> bool:
    """Signal the process of PIDFD; False if it is gone."""
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return False
    return True


def signal_supervisor(record: Runtime, signum: int) -> bool:
    """Signal the record's supervisor if it is still that process; False if not (gone)."""
    pidfd = supervisor_process(record)
    if pidfd is None:
        return False
    try:
        return send_signal(pidfd, signum)
    finally:
        os.close(pidfd)


def _record_tmp(path: Path) -> Path:
    """Where a record is written before it is renamed into place."""
    return path.with_suffix(".tmp")


def write(record: Runtime) -> None:
    """Atomically (re)write the runtime record (0600, in root's RUN_DIR)."""
    path = runtime_path(record.name)
    tmp = _record_tmp(path)
    data = as_dict(record)
    data["interfaces"] = list(record.interfaces)
    data["services"] = [list(pair) for pair in record.services]
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(jsonlite.record_text(data))
    os.replace(tmp, path)


MAX_RECORD = 256 * 1024  # bytes; a record is well under 1 KiB, more is not one of ours


def read(name: str, *, dir_fd: int | None = None) -> Runtime | None:
    """NAME's record; None if there is none or it is not a sane one. Read through a
    descriptor (no symlink followed, a regular file, at most MAX_RECORD bytes): the D-Bus
    service reads records whenever they change, and their content comes partly from PID 1.
    DIR_FD: a descriptor of RUN_DIR, as for ``is_locked``."""
    where = runtime_path(name) if dir_fd is None else f"{name}.json"
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_RECORD and (chunk := os.read(fd, MAX_RECORD + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    if size > MAX_RECORD:
        return None
    try:
        data = jsonlite.loads(b"".join(chunks))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        data["interfaces"] = tuple(data.get("interfaces", ()))
        data["services"] = tuple((str(w), str(s)) for w, s in data.get("services", ()))
        return Runtime(**data)
    except (TypeError, ValueError):
        return None


def running(names: Iterable[str] | None = None, *,
            read_record: Callable[..., Runtime | None] = read) -> list[Runtime]:
    """Records of the subhosts whose supervisor is alive, by name. NAMES: only these, in this
    order (else every record in RUN_DIR, sorted); READ_RECORD(name, dir_fd=FD) reads one (the
    D-Bus service's reads only what changed)."""
    try:
        dir_fd = os.open(RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    found = []
    try:
        if names is None:
            # os.listdir, not Path.glob: that compiles a regular expression on every start.
            names = [name for name, dot, suffix in
                     (entry.rpartition(".") for entry in sorted(os.listdir(dir_fd)))
                     if dot and name and suffix == "json"]
        for name in names:
            if is_locked(name, dir_fd=dir_fd):
                record = read_record(name, dir_fd=dir_fd)
                if record is not None:
                    found.append(record)
    finally:
        os.close(dir_fd)
    return found


def remove(name: str, lock_fd: int) -> None:
    """Remove the runtime files: record (and the one a killed supervisor was writing),
    control socket and lock. Only with the lock held (LOCK_FD): a lock file is never unlinked
    under someone who holds it."""
    _unlink(runtime_path(name), _record_tmp(runtime_path(name)), control_path(name))
    if _is_at(lock_fd, lock_path(name)):
        _unlink(lock_path(name))


def _unlink(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
