"""Runtime state as untrusted input (security review H4, M1, L4, L5), on the real kernel.

* The lock files are root's alone: an unprivileged user cannot hold one.
* A record's PIDs are only signalled or entered while they are the processes it names.
* Cleanup holds the lock; a lock file is never taken over from under its holder.
* PID 1's status pipe, written by someone who reached it, leaves the record bounded and sane.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot import state
from tests.leaks import run_command
from tests.subhostkit import Lab, alive, wait_dead

pytestmark = pytest.mark.root

RUN_DIR = Path("/run/overlay-boot")


def _sleeper(*wrapper: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*wrapper, "sleep", "300"], stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def _process(*wrapper: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = _sleeper(*wrapper)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _held_lock(name: str) -> Iterator[int]:
    """NAME's lock, held by this test (as a supervisor or a cleanup would hold it)."""
    fd = os.open(state.lock_path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield fd
    finally:
        for path in (state.runtime_path(name), state.lock_path(name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(fd)


def _stale_record(name: str, supervisor: int, leader: int) -> None:
    """A record as an old run (or an older version) left it: PIDs without their identity."""
    data = {"name": name, "config": f"/nonexistent/{name}.conf", "supervisor_pid": supervisor,
            "leader_pid": leader, "root": "/nonexistent", "interfaces": [], "state": "running",
            "services": []}
    state.runtime_path(name).write_text(json.dumps(data))


def _in_own_mount_ns(proc: subprocess.Popen[bytes]) -> int:
    """PROC's PID once it runs in a mount namespace of its own (unshare execs its command)."""
    deadline = time.monotonic() + 10
    own = os.readlink("/proc/self/ns/mnt")
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (os.readlink(f"/proc/{proc.pid}/ns/mnt") != own
                    and Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep"):
                return proc.pid
        time.sleep(0.01)
    raise TimeoutError("not in a mount namespace of its own")


# -- H4: locks and records -----------------------------------------------------------------------

def test_an_unprivileged_user_cannot_hold_a_subhost_lock(lab: Lab) -> None:
    conf = lab.config("START=none\n")
    name = conf.stem
    assert lab.start(conf).returncode == 0
    assert RUN_DIR.stat().st_mode & 0o7777 == 0o700
    lock = RUN_DIR / f"{name}.lock"
    assert lock.stat().st_mode & 0o7777 == 0o600
    assert (RUN_DIR / f"{name}.json").stat().st_mode & 0o077 == 0
    attempt = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "flock", "--nonblock", "--shared", str(lock), "true"],
        capture_output=True, text=True, timeout=30)
    assert attempt.returncode != 0, "nobody could lock the subhost's lock file"
    assert lab.stop(name).returncode == 0


def test_stop_never_signals_a_pid_the_record_does_not_own(lab: Lab) -> None:
    """A record whose supervisor PID is now someone else's process (a stale record while the
    lock is held): overlay-stop must not signal that process."""
    name = lab.name()
    with _process() as victim, _held_lock(name):
        _stale_record(name, supervisor=victim.pid, leader=victim.pid)
        result = run_command("stop", "--timeout", "0.5", name, timeout=60)
        time.sleep(0.2)
        assert alive(victim.pid), f"overlay-stop signalled pid {victim.pid}: {result.stderr}"


def test_share_never_enters_a_pid_the_record_does_not_own(lab: Lab, tmp_path: Path) -> None:
    """A stale record whose leader PID is now a process in another mount namespace:
    overlay-share must not mount anything into that namespace."""
    name = lab.name()
    hostdir = tmp_path / "shared"
    hostdir.mkdir()
    with _process("unshare", "--mount", "--propagation", "private") as wrapper, \
            _held_lock(name):
        victim = _in_own_mount_ns(wrapper)
        _stale_record(name, supervisor=os.getpid(), leader=victim)
        try:
            result = run_command("share", str(hostdir), name, "/mnt/obtest-share", timeout=60)
            mounts = Path(f"/proc/{victim}/mountinfo").read_text()
        finally:
            with contextlib.suppress(OSError):  # made on the host's /mnt by a vulnerable share
                os.rmdir("/mnt/obtest-share")
        assert "/mnt/obtest-share" not in mounts
        assert result.returncode != 0
        assert "not running" in result.stderr


def test_identity_of_a_process(tmp_path: Path) -> None:
    """open_process: a pidfd only for the PID *and* start time the record names."""
    with _process() as proc:
        started = state.start_time(proc.pid)
        assert started > 0
        boot = state.boot_id()
        fd = state.open_process(proc.pid, started, boot)
        assert fd is not None
        os.close(fd)
        for wrong in ((proc.pid, started + 1, boot), (proc.pid, started, "other-boot"),
                      (proc.pid, 0, boot), (0, started, boot)):
            assert state.open_process(*wrong) is None
        record = state.Runtime(name="x", config="", supervisor_pid=proc.pid, leader_pid=0,
                               root="", supervisor_start=started + 1, boot_id=boot)
        assert not state.signal_supervisor(record, signal.SIGTERM)
        assert alive(proc.pid)
        record = state.Runtime(name="x", config="", supervisor_pid=proc.pid, leader_pid=0,
                               root="", supervisor_start=started, boot_id=boot)
        assert state.signal_supervisor(record, signal.SIGTERM)
        assert wait_dead(proc.pid)


def test_a_stale_record_is_removed_when_the_lock_is_taken(lab: Lab) -> None:
    name = lab.name()
    _stale_record(name, supervisor=1, leader=1)
    try:
        fd = state.acquire(name)
        try:
            assert not state.runtime_path(name).exists()
        finally:
            state.remove(name, fd)
            os.close(fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            state.runtime_path(name).unlink()


def test_a_lock_file_unlinked_by_its_holder_is_not_taken(lab: Lab) -> None:
    """try_lock re-checks the locked file is the one at the path: an old file that its
    holder unlinked (with the lock held) never counts as "locked by me"."""
    name = lab.name()
    first = state.try_lock(name)
    assert first is not None
    old = os.open(state.lock_path(name), os.O_RDONLY | os.O_CLOEXEC)  # a waiter of the old file
    try:
        state.remove(name, first)
        os.close(first)
        second = state.try_lock(name)
        assert second is not None
        try:
            assert os.fstat(second).st_ino == state.lock_path(name).stat().st_ino
            assert state.is_locked(name)
        finally:
            state.remove(name, second)
            os.close(second)
    finally:
        os.close(old)
    assert not state.lock_path(name).exists()


def test_cleanup_leaves_a_held_lock_and_what_it_protects(lab: Lab) -> None:
    """overlay-stop --cleanup while a supervisor holds the lock: nothing is removed."""
    from overlay_boot import netns

    name = lab.name()
    with _held_lock(name):
        netns.create(name)
        try:
            lock = state.lock_path(name).stat().st_ino
            assert lab.cleanup(name).returncode == 0
            assert netns.exists(name)
            assert state.lock_path(name).stat().st_ino == lock
        finally:
            netns.remove(name)


# -- L4 ------------------------------------------------------------------------------------------

def test_the_supervisor_forgets_pid1_once_reaped(tmp_path: Path) -> None:
    """After PID 1 is reaped its PID may be reused: a later stop signal must not go there."""
    from overlay_boot.config import load_config
    from overlay_boot.supervisor import Supervisor

    base = tmp_path / "s"
    for sub in ("live", "root", "work"):
        (base / sub).mkdir(parents=True)
    conf = base / "s.conf"
    conf.write_text("BASE=.\nSTART=none\n")
    supervisor = Supervisor(load_config(conf))
    child = os.fork()
    if child == 0:
        os._exit(0)
    supervisor.pid1 = child
    supervisor.pid1_fd = os.pidfd_open(child)
    assert os.waitstatus_to_exitcode(supervisor._wait_pid1()) == 0
    assert supervisor.pid1 is None and supervisor.pid1_fd is None
    supervisor._on_signal(signal.SIGTERM, None)
    assert supervisor.stop_requested


# -- M1: PID 1's status pipe ----------------------------------------------------------------------

def _status_pipe_of(pid1: int, supervisor: int) -> int:
    """The fd number, in PID 1, of the write end of the status pipe the supervisor reads."""
    read_ends = set()
    for fd in os.listdir(f"/proc/{supervisor}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{supervisor}/fd/{fd}")
            if target.startswith("pipe:"):
                read_ends.add(target)
    for fd in os.listdir(f"/proc/{pid1}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid1}/fd/{fd}")
            flags = Path(f"/proc/{pid1}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
            if target in read_ends and int(flags, 8) & 3 == os.O_WRONLY:
                return int(fd)
    raise AssertionError("no status pipe found")


def test_forged_status_lines_leave_the_record_bounded_and_sane(lab: Lab, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # shared, and not the directory holding LOG
    bin_dir.mkdir()
    script = bin_dir / "svc"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    conf = lab.config(f"SHARE={bin_dir}\nSTART={script}\n")
    name = conf.stem
    assert lab.start(conf).returncode == 0
    record = lab.record(name, state="running")
    pid1, supervisor = record["leader_pid"], record["supervisor_pid"]
    fd = _status_pipe_of(pid1, supervisor)
    cpu_before = _cpu_seconds(supervisor)
    with open(f"/proc/{pid1}/fd/{fd}", "wb", buffering=0) as pipe:
        pipe.write(b"STATUS stopping forged\x01\x1b[31m\x00red\n")
        pipe.write(b"SERVICE a\x00b started\n")
        pipe.write(f"SERVICE {script} bogus-state\n".encode())
        pipe.write(b"NONSENSE line\n")
        for i in range(300):
            pipe.write(b"SERVICE w%d %s\n" % (i, b"x" * 20000))
        pipe.write(b"SERVICE long " + b"y" * (8 << 20) + b" started\n")
        pipe.write(f"SERVICE {script} stopped\n".encode())
        pipe.write(b"STATUS starting " + b"z" * 1000 + b"\n")
    time.sleep(1.0)
    raw = (RUN_DIR / f"{name}.json").read_bytes()
    assert len(raw) < 4096, len(raw)
    data = json.loads(raw)
    assert data["services"] == [[str(script), "stopped"]]
    assert data["state"] == "starting"
    assert b"\\u00" not in raw  # no control character or NUL made it into the record
    assert _cpu_seconds(supervisor) - cpu_before < 5
    assert alive(supervisor) and alive(pid1)
    assert lab.go(name, "true").returncode == 0
    assert lab.stop(name).returncode == 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
