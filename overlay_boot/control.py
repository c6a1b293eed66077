"""Client of a subhost PID 1's control socket: run a command or open a terminal inside.

The protocol is in docs/ARCHITECTURE.md ("Entering a subhost"). One request per connection;
the connection then carries ``{"signal": N}`` from us and finally ``{"exit": CODE}`` from PID 1.
Standard library only, and cheap to import (``overlay-go NAME -- true`` has a 40 ms budget).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence

from . import jsonlite
from .control_wire import parse_exit, receive_message, run_request, send_message, signal_message
from .errors import SubhostError

ANSWER_TIMEOUT = 30.0  # seconds PID 1 may take to answer a request (it answers at once)
_RUN_DIR = os.environ.get("OVERLAY_BOOT_RUN_DIR", "/run/overlay-boot")  # as state.RUN_DIR


class NotRunning(SubhostError):
    """Nothing listens on the subhost's control socket."""


class ControlError(SubhostError):
    """PID 1 refused the request, or the conversation broke off.

    When the command could not be run, ``exit_status`` is what a shell would return (127 for a
    command not found, 126 for one that cannot be executed).
    """

    def __init__(self, message: str, exit_status: int | None = None) -> None:
        super().__init__(message)
        if exit_status:
            self.exit_status = exit_status


def socket_path(name: str) -> str:
    return os.path.join(_RUN_DIR, f"{name}.ctl")


def connect(name: str) -> socket.socket:
    """A connection to PID 1 of NAME; NotRunning when nothing listens."""
    if "/" in name or name in ("", ".", ".."):
        raise ControlError(f"invalid subhost name {name!r}")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.connect(socket_path(name))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        raise NotRunning(f"subhost {name} is not running") from None
    except OSError as exc:
        conn.close()
        raise ControlError(f"cannot reach subhost {name}: {exc.strerror}") from None
    return conn


def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    login: bool = False,
    stdin: int = 0,
    stdout: int = 1,
    stderr: int = 2,
) -> tuple[socket.socket, int]:
    """Start ARGV inside NAME with our descriptors as its stdio; returns (connection, pid).

    An empty ARGV with ``login`` starts root's login shell. The pid is as seen inside.
    """
    conn = connect(name)
    try:
        request = run_request(argv, env, cwd, login, tty=False)
        answer, _ = _ask(conn, request, (stdin, stdout, stderr))
    except BaseException:
        conn.close()
        raise
    return conn, int(answer["pid"])


def run(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    login: bool = False,
    stdin: int = 0,
    stdout: int = 1,
    stderr: int = 2,
) -> int:
    """Run ARGV inside NAME as a child of its PID 1; returns its exit status (128+signal)."""
    conn, _ = start(name, argv, env=env, cwd=cwd, login=login,
                    stdin=stdin, stdout=stdout, stderr=stderr)
    with conn:
        return wait_exit(conn)


def open_tty(
    name: str,
    argv: Sequence[str],
    *,
    rows: int = 24,
    cols: int = 80,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    login: bool = False,
) -> tuple[int, socket.socket]:
    """Start ARGV inside NAME on a new pty; returns (pty master fd, connection).

    The caller owns both: relay the master, then ``wait_exit(connection)``.
    """
    conn = connect(name)
    try:
        request = run_request(argv, env, cwd, login, tty=True, rows=rows, cols=cols)
        _, fds = _ask(conn, request, ())
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ControlError(f"subhost {name} sent no terminal")
    except BaseException:
        conn.close()
        raise
    return fds[0], conn


def loaded_modules(name: str) -> list[str]:
    """The modules PID 1 of NAME has loaded (``{"op": "modules"}``): its memory is tested."""
    conn = connect(name)
    with conn:
        answer, _ = _ask(conn, {"op": "modules"}, ())
    modules = answer.get("modules")
    if not isinstance(modules, list):
        raise ControlError(f"subhost {name} did not list its modules")
    return [str(m) for m in modules]


def wait_exit(conn: socket.socket) -> int:
    """Block until PID 1 reports the exit status of the process started on CONN."""
    conn.settimeout(None)
    while True:
        code = exit_message(conn)
        if code is not None:
            return code


def exit_message(conn: socket.socket) -> int | None:
    """Read one message from CONN: the exit status, or None for anything else.

    Raises ControlError when PID 1 closes the connection without one (it died).
    """
    try:
        data = conn.recv(4096)
    except TimeoutError:
        raise ControlError("timed out waiting for the exit status") from None
    except OSError as exc:
        raise ControlError(f"lost the connection to the subhost: {exc.strerror}") from None
    return exit_code(data)


def exit_code(data: bytes) -> int | None:
    """The exit status in one message DATA from PID 1, or None for anything else.

    Raises ControlError for the end of the connection (empty DATA): PID 1 died.
    """
    if not data:
        raise ControlError("the subhost went away before the command ended")
    return parse_exit(data)


def send_signal(conn: socket.socket, signum: int) -> None:
    """Ask PID 1 to send SIGNUM to the process group of the command started on CONN."""
    try:
        conn.send(signal_message(signum))
    except OSError:
        pass  # it ended meanwhile


def _ask(conn: socket.socket, request: dict, fds: Sequence[int]) -> tuple[dict, list[int]]:
    try:
        try:
            send_message(conn, request, fds)
        except BrokenPipeError:
            pass  # PID 1 refused us before we asked: its answer is waiting
        conn.settimeout(ANSWER_TIMEOUT)
        message, received, _ = receive_message(conn)
    except TimeoutError:
        raise ControlError("PID 1 of the subhost does not answer") from None
    except OSError as exc:
        raise ControlError(f"control socket: {exc.strerror or exc}") from None
    if not message:
        raise ControlError("PID 1 of the subhost closed the connection without answering")
    try:
        answer = jsonlite.loads(message)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict) or not answer.get("ok"):
        for fd in received:
            os.close(fd)
        if not isinstance(answer, dict):
            answer = {}
        status = answer.get("status")
        raise ControlError(str(answer.get("error") or "the subhost refused the request"),
                           status if isinstance(status, int) and 0 < status < 256 else None)
    return answer, received
