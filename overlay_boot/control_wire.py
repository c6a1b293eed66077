"""The control socket's wire format: PID 1 and its clients (docs/ARCHITECTURE.md, "Entering a
subhost"), encoder and decoder in one place.

One ``AF_UNIX``/``SOCK_SEQPACKET`` connection per request; every message is one packet of
UTF-8 JSON, descriptors ride along as ``SCM_RIGHTS``:

* client → PID 1, first packet: ``{"op": "run", "argv": [...], "env": {...}, "cwd": "/x" or
  null, "login": bool, "tty": bool}`` (+ ``"rows"``, ``"cols"`` with ``tty``) and, without
  ``tty``, stdin, stdout, stderr as three descriptors; or ``{"op": "modules"}``: the modules
  PID 1 has loaded (its memory is checked by the tests);
* PID 1 → client, the answer: ``{"ok": true, "pid": N}`` (with ``tty`` the pty master as one
  descriptor), ``{"ok": true, "modules": [...]}``, or ``{"ok": false, "error": "...",
  "status": 126|127}`` (status only when the command could not be run);
* client → PID 1, later: ``{"signal": N}`` — signal the process group of the command;
* PID 1 → client, last: ``{"exit": CODE}`` (shell convention: 128+signal when killed).

Loaded by PID 1 for the whole life of a subhost: the standard library's lightest modules only
(JSON through ``jsonlite.py``, not the json package).
"""

from __future__ import annotations

import array
import os
import socket

from . import jsonlite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

MAX_MESSAGE = 65536
MAX_FDS = 4  # one more than a request ever carries: more is refused, not cut


def shell_status(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def send_message(conn: socket.socket, message: dict, fds: Sequence[int] = ()) -> None:
    """One message of the control protocol: JSON, with FDS passed as SCM_RIGHTS."""
    data = jsonlite.dumps(message).encode()
    if fds:
        socket.send_fds(conn, [data], list(fds))
    else:
        conn.send(data)


def receive_message(conn: socket.socket, maxfds: int = MAX_FDS) -> tuple[bytes, list[int], int]:
    """One message of the control protocol, the descriptors that came with it (close-on-exec)
    and recvmsg's flags (MSG_TRUNC, MSG_CTRUNC: more than fitted)."""
    # Not socket.recv_fds: up to Python 3.11 it drops the flags, MSG_CMSG_CLOEXEC included.
    fds = array.array("i")
    message, ancillary, flags, _ = conn.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(maxfds * fds.itemsize), socket.MSG_CMSG_CLOEXEC)
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return message, list(fds), flags


def run_request(argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None,
                login: bool, tty: bool, rows: int = 24, cols: int = 80) -> dict:
    """The ``run`` request (encoder)."""
    request = {"op": "run", "argv": list(argv), "env": dict(env or {}), "cwd": cwd,
               "login": login, "tty": tty}
    if tty:
        request.update(rows=max(1, min(rows, 65535)), cols=max(1, min(cols, 65535)))
    return request


def parse_request(message: bytes) -> dict:
    """Check a request (decoder); raises ValueError (its text goes back to the client).

    Returns ``{"op": "modules"}`` or the ``run`` request with every field filled in."""
    request = jsonlite.loads(message)
    if isinstance(request, dict) and request.get("op") == "modules":
        return {"op": "modules"}
    if not isinstance(request, dict) or request.get("op") != "run":
        raise ValueError("unknown request")
    argv = request.get("argv", [])
    env = request.get("env", {})
    cwd = request.get("cwd")
    if not (isinstance(argv, list) and all(isinstance(a, str) and "\0" not in a for a in argv)):
        raise ValueError("argv must be a list of strings")
    if not (isinstance(env, dict) and all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k
        and "\0" not in k + v for k, v in env.items()
    )):
        raise ValueError("env must map names to strings")
    if cwd is not None and not (isinstance(cwd, str) and cwd.startswith("/")):
        raise ValueError("cwd must be an absolute path")
    parsed = {"op": "run", "argv": argv, "env": dict(env), "cwd": cwd,
              "login": bool(request.get("login")), "tty": bool(request.get("tty"))}
    if parsed["tty"]:
        for key, default in (("rows", 24), ("cols", 80)):
            value = request.get(key) or default
            if not isinstance(value, int) or not 0 < value < 65536:
                raise ValueError(f"{key} must be a number from 1 to 65535")
            parsed[key] = value
    return parsed


def signal_message(signum: int) -> bytes:
    """``{"signal": N}`` (encoder)."""
    return jsonlite.dumps({"signal": int(signum)}).encode()


def parse_signal(message: bytes) -> int | None:
    """The signal number of a ``{"signal": N}`` message (decoder), None for anything else."""
    try:
        return int(jsonlite.loads(message)["signal"])
    except (ValueError, KeyError, TypeError):
        return None


def exit_message(status: int) -> dict:
    """``{"exit": CODE}`` for a wait status (encoder)."""
    return {"exit": shell_status(status)}


def parse_exit(data: bytes) -> int | None:
    """The exit code of an ``{"exit": CODE}`` message (decoder), None for anything else."""
    try:
        return int(jsonlite.loads(data)["exit"])
    except (ValueError, KeyError, TypeError):
        return None
