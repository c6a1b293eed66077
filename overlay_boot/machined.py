"""Registration of a running subhost with systemd-machined (`machinectl list`, `status`, …).

``RegisterMachineWithNetwork`` attaches the machine to the unit of its leader (the subhost's
PID 1, in our unit's cgroup), so `machinectl terminate` stops that unit, `machinectl poweroff`
and `reboot` signal PID 1 (SIGRTMIN+4, SIGINT), and machined forgets the machine when the unit
ends. The supervisor must stay small (no dbus-next, no pystemd): busctl(1) makes the call.
Under systemd the supervisor starts the call as soon as PID 1 exists (`start`), so that
machined works while PID 1 builds the tree and starts its interpreter, and waits for its answer
before it hands the unit over to PID 1 and exits; otherwise a forked grandchild runs it, logs
the outcome and exits. Without machined or a system bus, the registration fails with a debug
message and nothing else happens.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterable

from . import log, proc
from .naming import SYS_CLASS_NET

BUSCTL = "/usr/bin/busctl"
BUS_SOCKET = "/run/dbus/system_bus_socket"
SERVICE = "overlay-boot"  # what machinectl shows as the machine's service
TIMEOUT = 10  # seconds for the call, the activation of machined included
MAX_ERROR = 4096  # bytes of busctl's message kept


def wanted() -> bool:
    """Register only when systemd runs us as a unit: machined takes over the leader's unit,
    and `machinectl terminate` stops it, which must be the subhost's own unit."""
    from .systemd import booted

    return (
        booted()
        and bool(os.environ.get("INVOCATION_ID"))
        and os.path.exists(BUS_SOCKET)
        and os.access(BUSCTL, os.X_OK)
    )


def ifindices(interfaces: Iterable[str]) -> list[int]:
    """Interface indices of the existing host ends, in order."""
    found = []
    for ifname in interfaces:
        try:
            with open(SYS_CLASS_NET / ifname / "ifindex") as f:
                found.append(int(f.read()))
        except (OSError, ValueError):
            continue
    return found


def register_argv(name: str, leader: int, root: str, indices: list[int]) -> list[str]:
    """busctl's call of RegisterMachineWithNetwork(name, id, service, class, leader, root,
    ifindices); an empty id lets machined take the machine ID from the leader."""
    return [
        BUSCTL, "call", "--quiet", f"--timeout={TIMEOUT}",
        "org.freedesktop.machine1", "/org/freedesktop/machine1",
        "org.freedesktop.machine1.Manager", "RegisterMachineWithNetwork", "sayssusai",
        name, "0", SERVICE, "container", str(leader), root,
        str(len(indices)), *map(str, indices),
    ]


def _argv_for(name: str, leader: int, root: str, interfaces: Iterable[str]) -> list[str] | None:
    """busctl's command line, or None for a NAME machined does not take: hostname-like names
    only (letters, digits, inner '-', dots between); a NAME outside that (web_1, sübhöst) is
    not registered, rather than under another name that could be some other subhost's."""
    from .naming import machine_name_ok

    if not machine_name_ok(name):
        log.debug(f"subhost {name} not registered with systemd-machined: machine names are "
                  "letters, digits, inner '-' and single dots")
        return None
    return register_argv(name, leader, root, ifindices(interfaces))


def register_in_background(name: str, leader: int, root: str, interfaces: Iterable[str]) -> None:
    """Register NAME from a grandchild; returns at once (the child is reaped right away)."""
    argv = _argv_for(name, leader, root, interfaces)
    if argv is not None and not proc.call_detached(_register, name, argv):
        log.debug("not registered with systemd-machined: fork failed")


def start(name: str, leader: int, root: str,
          interfaces: Iterable[str]) -> Registration | None:
    """Start registering NAME; its `Registration.finish` waits for machined's answer. For the
    hand-over, which finishes it before systemd hears READY=1 (one that arrived while the
    unit was already stopping would outlive it in machined), and before the supervisor exits
    after a failed start. None when NAME is not registered (see `_argv_for`) or busctl could
    not be started (logged)."""
    argv = _argv_for(name, leader, root, interfaces)
    if argv is None:
        return None
    return Registration.start(name, argv)


def _register(name: str, argv: list[str]) -> None:
    """The grandchild: hold nothing of the supervisor's (its lock!), run busctl, log, exit."""
    status = 1
    try:
        log.configure(extra_fd=None)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        registration = Registration.start(name, argv)
        status = 0 if registration is not None and registration.finish() else 1
    finally:
        log.flush()
        os._exit(status)


class Registration:
    """One busctl call of RegisterMachineWithNetwork, running. Spawned with
    ``proc.spawn_quiet`` (no fork of the supervisor, no `subprocess` import: a few ms of CPU on
    every start); stderr a pipe for the reason of a failure, no descriptor of ours passed on
    (ours are all close-on-exec). A lost registration must not matter: the
    outcome is logged, nothing raised."""

    def __init__(self, name: str, pid: int, err_fd: int) -> None:
        self.name = name
        self.pid = pid  # our child until finish() reaps it: its PID is not reused before
        self.err_fd = err_fd

    @classmethod
    def start(cls, name: str, argv: list[str]) -> Registration | None:
        read_fd, write_fd = os.pipe()
        try:
            pid = proc.spawn_quiet(argv, err_fd=write_fd)
        except OSError as exc:
            os.close(read_fd)
            _not_registered(name, str(exc))
            return None
        finally:
            os.close(write_fd)
        return cls(name, pid, read_fd)

    def finish(self) -> bool:
        """Wait for busctl's end (killed after TIMEOUT + 5 seconds); True when registered."""
        err = b""
        late = False
        deadline = time.monotonic() + TIMEOUT + 5
        poller = select.poll()
        poller.register(self.err_fd, select.POLLIN)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(max(1, int(left * 1000))):
                    late = True
                    os.kill(self.pid, signal.SIGKILL)
                    break
                chunk = os.read(self.err_fd, 4096)
                if not chunk:
                    break
                err = (err + chunk)[-MAX_ERROR:]
        finally:
            os.close(self.err_fd)
            status = _reap(self.pid)
        if late:
            _not_registered(self.name, f"busctl gave no answer in {TIMEOUT + 5} s")
            return False
        if status == 0:
            log.debug(f"subhost {self.name} registered with systemd-machined")
            return True
        _not_registered(self.name, err.decode("utf-8", "replace").strip()
                        or proc.exit_words(status))
        return False


def _reap(pid: int) -> int:
    """Wait for our child PID; its exit status as subprocess gives it (-N: killed by N)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 1
        return os.waitstatus_to_exitcode(status)


def _not_registered(name: str, why: str) -> None:
    log.debug(f"subhost {name} not registered with systemd-machined: {why}")
