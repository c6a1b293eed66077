"""The only pystemd user: readiness notification and the unit operations the CLIs need.

Every import of pystemd happens inside a function, so a process pays only for what it uses:
the long-lived supervisor only ever calls `notify`, which needs no pystemd at all (a datagram
sent by the standard library). Works with pystemd 0.11 (Debian 12) and 0.15: both have the
same ``pystemd.dbuslib.DBus`` calls used here. Properties are read with plain
``DBus.get_property`` calls on the unit's object path instead of
``pystemd.systemd1.Unit.load()``, whose introspection (XML through lxml) costs a round trip and
a parse per unit.

`booted` is the one answer to "is systemd here" (sd_booted(3), OVERLAY_BOOT_NO_SYSTEMD), and
`ACTIVE_STATES` the unit states that mean "running or about to".
"""

from __future__ import annotations

import os
import time

from overlay_boot.errors import SubhostError
from overlay_boot.proc import exit_words
from overlay_boot.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any  # typing costs the supervisor ~5 ms of its start

DEST = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
SERVICE_IFACE = b"org.freedesktop.systemd1.Service"
JOB_WAIT_MAX = 15 * 60.0  # seconds; the unit's own TimeoutStartSec ends a start job before


# ---------------------------------------------------------------------------------------------
# sd_notify


def notify(ready: bool = False, status: str | None = None) -> bool:
    """Tell systemd about this service (sd_notify). A no-op without ``NOTIFY_SOCKET``.

    The datagram is sent by the standard library: pystemd.daemon would cost the long-lived
    supervisor ~11 MB (ARCHITECTURE: it never imports pystemd). Returns whether a message was
    sent; never raises: a lost status line must not end a subhost.
    """
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    fields = []
    if ready:
        fields.append("READY=1")
    if status is not None:
        fields.append("STATUS=" + " ".join(status.splitlines()))
    if not fields:
        return False
    return _notify_socket("\n".join(fields))


def _notify_socket(state: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET``.

    ``_socket`` rather than ``socket``: the latter's enums cost a megabyte in every supervisor.
    """
    import _socket

    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]  # abstract namespace
    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        try:
            s.sendto(state.encode("utf-8", "replace"), address)
        finally:
            s.close()
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# the system manager over D-Bus


def booted() -> bool:
    """Whether systemd is the init system here (sd_booted(3)), and overlay-boot should act
    through it: OVERLAY_BOOT_NO_SYSTEMD=1 makes every command act directly."""
    return os.path.isdir("/run/systemd/system") and not os.environ.get("OVERLAY_BOOT_NO_SYSTEMD")


# ActiveState values of a unit that runs or is about to (a start job, a reload).
ACTIVE_STATES = ("active", "activating", "reloading")


class UnitState(Record):
    active_state: str  # active, inactive, failed, activating, deactivating, …
    sub_state: str
    main_pid: int
    status_text: str  # the last STATUS= of the service
    result: str  # success, exit-code, signal, timeout, …


class _Bus:
    """One system bus connection for the calls of one operation."""

    def __init__(self) -> None:
        try:
            from pystemd.dbuslib import DBus
        except ImportError as e:
            raise SubhostError(f"pystemd is not available: {e}") from None
        self.bus = DBus()
        try:
            self.bus.open()
        except Exception as e:  # noqa: BLE001 - pystemd raises its own DBusError types
            raise SubhostError(f"cannot connect to the system bus: {_why(e)}") from None

    def __enter__(self) -> _Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bus.close()

    def call(self, method: bytes, signature: bytes, *args: Any) -> Any:
        from pystemd.dbuslib import apply_signature

        values = [a.encode() if isinstance(a, str) else a for a in args]
        return self.bus.call_method(DEST, MANAGER_PATH, MANAGER_IFACE, method,
                                    apply_signature(signature, values)).body

    def unit_path(self, name: str) -> bytes:
        """Object path of ``name``, loading the unit (a missing one loads as not-found)."""
        return _text_bytes(self.call(b"LoadUnit", b"s", name))

    def prop(self, path: bytes, iface: bytes, name: bytes, signature: bytes) -> Any:
        return self.bus.get_property(DEST, path, iface, name, signature)

    def state(self, path: bytes) -> UnitState:
        def s(iface: bytes, name: bytes) -> str:
            return _text(self.prop(path, iface, name, b"s"))

        return UnitState(
            active_state=s(UNIT_IFACE, b"ActiveState"),
            sub_state=s(UNIT_IFACE, b"SubState"),
            main_pid=int(self.prop(path, SERVICE_IFACE, b"MainPID", b"u")),
            status_text=s(SERVICE_IFACE, b"StatusText"),
            result=s(SERVICE_IFACE, b"Result"),
        )

    def job_pending(self, path: bytes) -> bool:
        job_id, _job_path = self.prop(path, UNIT_IFACE, b"Job", b"(uo)")
        return int(job_id) != 0

    def wait_job(self, path: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while self.job_pending(path):
            if time.monotonic() > deadline:
                raise SubhostError(f"gave up waiting for the job after {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _text_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _check_name(name: str) -> None:
    if not name or "/" in name or any(ord(c) < 0x20 for c in name):
        raise SubhostError(f"not a unit name: {name!r}")


def unit_state(name: str) -> UnitState:
    """(ActiveState, SubState, MainPID, StatusText, Result) of a service unit."""
    _check_name(name)
    with _Bus() as bus:
        try:
            return bus.state(bus.unit_path(name))
        except SubhostError:
            raise
        except Exception as e:  # noqa: BLE001
            raise SubhostError(f"cannot read the state of {name}: {_why(e)}") from None


def start_unit(name: str, timeout: float = JOB_WAIT_MAX) -> UnitState:
    """``systemctl start NAME``: returns once the unit is active (Type=notify: ready).

    Raises `SubhostError` with the reason when the start fails.
    """
    _check_name(name)
    with _Bus() as bus:
        try:
            bus.call(b"StartUnit", b"ss", name, "replace")
            path = bus.unit_path(name)
            bus.wait_job(path, timeout)
            state = bus.state(path)
        except SubhostError:
            raise
        except Exception as e:  # noqa: BLE001
            raise SubhostError(f"cannot start {name}: {_why(e)}") from None
        if state.active_state != "active":
            raise SubhostError(f"{name} failed to start: {failure_reason(bus, path, state)}")
        return state


def stop_unit(name: str, timeout: float = JOB_WAIT_MAX) -> UnitState:
    """``systemctl stop NAME``: returns once the stop job finished (TimeoutStopSec ends it)."""
    _check_name(name)
    with _Bus() as bus:
        try:
            bus.call(b"StopUnit", b"ss", name, "replace")
            path = bus.unit_path(name)
            bus.wait_job(path, timeout)
            return bus.state(path)
        except SubhostError:
            raise
        except Exception as e:  # noqa: BLE001
            raise SubhostError(f"cannot stop {name}: {_why(e)}") from None


def reload() -> None:
    """``systemctl daemon-reload``: returns once systemd has reloaded its units."""
    with _Bus() as bus:
        try:
            bus.call(b"Reload", b"")
        except Exception as e:  # noqa: BLE001
            raise SubhostError(f"cannot reload systemd: {_why(e)}") from None


def failure_reason(bus: _Bus, path: bytes, state: UnitState) -> str:
    """Why a unit is not active: its state, result, exit status, last status and log lines."""
    parts = [f"{state.active_state} ({state.sub_state}), result {state.result}"]
    try:
        code = int(bus.prop(path, SERVICE_IFACE, b"ExecMainCode", b"i"))
        status = int(bus.prop(path, SERVICE_IFACE, b"ExecMainStatus", b"i"))
        if code == 1:  # CLD_EXITED
            parts.append(exit_words(status))
        elif code in (2, 3):  # CLD_KILLED, CLD_DUMPED
            parts.append(exit_words(-status))
    except Exception:  # noqa: BLE001 - details are best-effort
        pass
    if state.status_text:
        parts.append(f"status: {state.status_text}")
    reason = "; ".join(parts)
    lines = _journal_tail(bus, path)
    if lines:
        reason += "\n" + "\n".join(f"  {line}" for line in lines)
    return reason


def _journal_tail(bus: _Bus, path: bytes, count: int = 10) -> list[str]:
    """The last log lines of the unit's latest run (best-effort, through journalctl)."""
    try:
        invocation = bytes(bus.prop(path, UNIT_IFACE, b"InvocationID", b"ay")).hex()
    except Exception:  # noqa: BLE001
        return []
    if not invocation or not int(invocation, 16):
        return []
    import subprocess

    try:
        out = subprocess.run(
            ["journalctl", "--no-pager", "-q", "-o", "cat", "-n", str(count),
             f"_SYSTEMD_INVOCATION_ID={invocation}"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.splitlines()[-count:]
