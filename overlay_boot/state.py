"""Runtime files of running subhosts: the per-subhost lock and the runtime record.

The supervisor holds ``RUN_DIR/NAME.lock`` (flock) for its whole life, so "is NAME running?" is
answered by the kernel, never by a stale pid file. ``RUN_DIR/NAME.json`` says where to find the
running subhost (supervisor and leader PIDs, root, config, host interfaces). ``RUN_DIR/NAME.ctl``
is the control socket of its PID 1.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import SubhostError

RUN_DIR = Path(os.environ.get("OVERLAY_BOOT_RUN_DIR", "/run/overlay-boot"))


@dataclass(frozen=True)
class Runtime:
    """What the supervisor records about a running subhost."""

    name: str
    config: str
    supervisor_pid: int
    leader_pid: int
    root: str
    started: float = field(default_factory=time.time)
    interfaces: tuple[str, ...] = ()
    state: str = "starting"  # starting, running, stopping
    services: tuple[tuple[str, str], ...] = ()  # (START word, state) as PID 1 reports them


class AlreadyRunning(SubhostError):
    pass


RUNTIME_UNIT_DIR = Path("/run/systemd/system")


def runtime_dropin(name: str) -> Path:
    """The drop-in with which `overlay-boot CONF` runs a config systemd's generator doesn't know
    as overlay-boot@NAME.service, until the subhost stops."""
    return RUNTIME_UNIT_DIR / f"overlay-boot@{name}.service.d" / "60-overlay-boot-command-line.conf"


def remove_runtime_dropin(name: str) -> None:
    dropin = runtime_dropin(name)
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


def acquire(name: str) -> int:
    """Take the subhost's lock; returns the lock's fd (close it to release).

    Raises AlreadyRunning when another supervisor holds it.
    """
    RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(lock_path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        record = read(name)
        pid = f" (supervisor pid {record.supervisor_pid})" if record else ""
        raise AlreadyRunning(f"subhost {name} is already running{pid}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def is_locked(name: str) -> bool:
    """True while a supervisor of NAME is alive."""
    try:
        fd = os.open(lock_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
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
        fd = os.open(lock_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
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


def write(record: Runtime) -> None:
    """Atomically (re)write the runtime record."""
    path = runtime_path(record.name)
    tmp = path.with_suffix(".tmp")
    data = asdict(record)
    data["interfaces"] = list(record.interfaces)
    data["services"] = [list(pair) for pair in record.services]
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read(name: str) -> Runtime | None:
    try:
        data = json.loads(runtime_path(name).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        data["interfaces"] = tuple(data.get("interfaces", ()))
        data["services"] = tuple((str(w), str(s)) for w, s in data.get("services", ()))
        return Runtime(**data)
    except (TypeError, ValueError):
        return None


def running() -> list[Runtime]:
    """Records of the subhosts whose supervisor is alive, by name."""
    if not RUN_DIR.is_dir():
        return []
    found = []
    for path in sorted(RUN_DIR.glob("*.json")):
        name = path.stem
        if is_locked(name):
            record = read(name)
            if record is not None:
                found.append(record)
    return found


def remove(name: str) -> None:
    """Remove the runtime files: record, control socket, lock (with the lock held, or stale)."""
    for path in (runtime_path(name), control_path(name), lock_path(name)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
