"""PID 1's control socket: shells and commands started on request, as PID 1's own children
(docs/ARCHITECTURE.md, "Entering a subhost"; the messages are ``control_wire.py``'s).

One request per connection (JSON, fds by SCM_RIGHTS), from host root only. The connection stays
open while the process runs: ``{"signal": N}`` from the client signals its process group, and
PID 1 sends ``{"exit": CODE}`` when it has reaped it. Part of PID 1: light modules only.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import stat
import struct
import sys
import termios

from overlay_boot import log
from overlay_boot.control_wire import (
    exit_message,
    parse_request,
    parse_signal,
    receive_message,
    send_message,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

SANE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Every signal a child gets back to its default action (SIGPIPE too, which Python ignores).
DEFAULT_SIGNALS = tuple(
    s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)
)


class Control:
    """Processes started for clients of the control socket, as children of PID 1.

    One request per connection (JSON, fds by SCM_RIGHTS), from uid 0 only. The connection stays
    open while the process runs: ``{"signal": N}`` from the client signals its process group,
    and PID 1 sends ``{"exit": CODE}`` when it has reaped it.
    """

    def __init__(self, listener_fd: int, poller: select.poll,
                 host_peers_unmapped: bool = False) -> None:
        self.host_peers_unmapped = host_peers_unmapped
        self.listener = socket.socket(fileno=listener_fd)
        self.listener.set_inheritable(False)
        self.listener.setblocking(False)
        self.poller = poller
        self.poller.register(listener_fd, select.POLLIN)
        self.pending: dict[int, socket.socket] = {}  # fd -> connection awaiting its request
        self.running: dict[int, tuple[socket.socket, int]] = {}  # fd -> (connection, pid)
        self.clients: dict[int, socket.socket | None] = {}  # pid -> connection (None: gone)

    def handle(self, fd: int, stopping: bool) -> None:
        if fd == self.listener.fileno():
            self.accept()
        elif fd in self.pending:
            self.serve(self.pending.pop(fd), stopping)
        elif fd in self.running:
            self.client_message(fd)

    def from_host_root(self, conn: socket.socket) -> bool:
        """Whether the client is host root. Without a user namespace: uid 0. With USERNS=,
        host root has no uid here: the client must be outside the subhost's PID namespace
        (pid 0 here); the socket's path is in host root's 0700 RUN_DIR, which nobody else
        on the host reaches."""
        pid, uid, _ = struct.unpack(
            "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
        if self.host_peers_unmapped:
            return pid == 0
        return uid == 0

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave it queued, log once per wakeup
                log.error(f"control socket: accept: {exc.strerror}")
                return
            conn.setblocking(False)
            self.pending[conn.fileno()] = conn
            self.poller.register(conn, select.POLLIN)

    def serve(self, conn: socket.socket, stopping: bool) -> None:
        self.poller.unregister(conn)
        fds: list[int] = []
        try:
            message, fds = _receive(conn)
            if not message:
                raise _Refused("")
            # Refused only now, after reading the request: closing a socket with unread data
            # would reset the connection before the client could read why.
            if not self.from_host_root(conn):
                raise _Refused("permission denied: only root may do this")
            if stopping:
                raise _Refused("the subhost is stopping")
            request = parse_request(message)
            if request["op"] == "modules":
                raise _Answer({"ok": True, "modules": sorted(sys.modules)})
            pid, master = self.spawn(request, fds)
        except _Answer as answer:
            _send(conn, answer.message)
            conn.close()
            return
        except (_Refused, ValueError, OSError) as exc:
            text = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
            if text:
                answer = {"ok": False, "error": text}
                if getattr(exc, "status", None):
                    answer["status"] = exc.status
                _send(conn, answer)
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        try:
            _send(conn, {"ok": True, "pid": pid}, () if master is None else (master,))
        finally:
            if master is not None:
                os.close(master)
        self.clients[pid] = conn
        self.running[conn.fileno()] = (conn, pid)
        self.poller.register(conn, select.POLLIN)

    def spawn(self, request: dict, fds: list[int]) -> tuple[int, int | None]:
        """Start what ``request`` asks for; returns its PID and the pty master (tty only)."""
        argv, env, login = request["argv"], request["env"], request["login"]
        home, shell = root_account()
        if login:
            argv = argv or [shell]
            env.update(HOME=home, SHELL=shell, USER="root", LOGNAME="root")
        if not argv:
            raise _Refused("no command given")
        for key, value in (("PATH", SANE_PATH), ("HOME", home), ("SHELL", shell),
                           ("USER", "root"), ("LOGNAME", "root")):
            env.setdefault(key, value)
        cwd = request["cwd"] or env["HOME"]
        arg0 = "-" + os.path.basename(argv[0]) if login else argv[0]
        if not request["tty"]:
            if len(fds) != 3:
                raise _Refused(f"expected stdin, stdout and stderr, got {len(fds)} descriptors")
            pid = _spawn(argv, arg0, env, cwd, (fds[0], fds[1], fds[2]))
            log.debug(f"control: started {argv[0]} as pid {pid}")
            return pid, None
        master, slave = os.openpty()  # in the subhost's /dev/pts: PID 1 is inside its root
        try:
            size = struct.pack("HHHH", request["rows"], request["cols"], 0, 0)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
            pid = _fork_exec(argv, arg0, env, cwd, (slave, slave, slave), slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        log.debug(f"control: started {argv[0]} as pid {pid} on a terminal")
        return pid, master

    def client_message(self, fd: int) -> None:
        conn, pid = self.running[fd]
        try:
            message, fds = _receive(conn)
        except OSError:
            message, fds = b"", []
        for extra in fds:
            os.close(extra)
        if not message:  # the client went away: its process carries on
            self.poller.unregister(conn)
            del self.running[fd]
            self.clients[pid] = None
            conn.close()
            return
        sig = parse_signal(message)
        if sig is not None and 0 < sig <= signal.SIGRTMAX:
            for target in (-pid, pid):  # the group (it leads one), else the process itself
                try:
                    os.kill(target, sig)
                    break
                except ProcessLookupError:
                    continue

    def hang_up(self) -> None:
        """SIGHUP to the process group of everything started here, as a terminal hangup."""
        for pid in self.clients:
            try:
                os.kill(-pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    def exited(self, pid: int, status: int) -> None:
        if pid not in self.clients:
            return
        conn = self.clients.pop(pid)
        if conn is None:
            return
        _send(conn, exit_message(status))
        self.poller.unregister(conn)
        self.running.pop(conn.fileno(), None)
        conn.close()


class _Answer(Exception):
    """A request answered at once (no process started): MESSAGE goes back to the client."""

    def __init__(self, message: dict) -> None:
        super().__init__("answered")
        self.message = message


class _Refused(Exception):
    """A control request that cannot be served; the message goes back to the client.

    ``status`` is the exit status a shell would give (127: command not found, 126: not
    executable), when the command could not be run.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    """One message and the descriptors that came with it (made close-on-exec)."""
    try:
        # One descriptor more than a request ever carries: more is refused, not cut.
        message, fds, flags = receive_message(conn, maxfds=4)
    except (BlockingIOError, InterruptedError):
        return b"", []
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
        for fd in fds:
            os.close(fd)
        raise _Refused("request too large")
    return message, fds


def _send(conn: socket.socket, answer: dict, fds: tuple[int, ...] = ()) -> None:
    try:
        send_message(conn, answer, fds)
    except OSError:
        pass  # the client went away


_PASSWD_MAX = 1 << 20  # a passwd file larger than this is not read past it


def root_account(passwd: str = "/etc/passwd") -> tuple[str, str]:
    """root's home and login shell from the subhost's passwd ("/root", "/bin/sh" if unknown).

    The file is the subhost's: a FIFO or device there must not block PID 1 (non-blocking open,
    regular files only), a huge one must not fill its memory (read up to 1 MiB).
    """
    home, shell = "/root", "/bin/sh"
    try:
        fd = os.open(passwd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return home, shell
            for raw in f.read(_PASSWD_MAX).split(b"\n"):
                fields = raw.decode("utf-8", "replace").split(":")
                if len(fields) >= 7 and fields[2] == "0":
                    return fields[5] or home, fields[6] or shell
    except OSError:
        pass
    return home, shell


def _spawn(
    argv: list[str], arg0: str, env: dict[str, str], cwd: str, stdio: tuple[int, int, int],
) -> int:
    """Start ``argv`` as a child of PID 1 in a session of its own, with STDIO as its 0, 1, 2.

    posix_spawn (vfork) rather than fork: it copies none of PID 1's memory, and it was most of
    the time PID 1 took to answer ``overlay-go NAME -- CMD`` (issue #13's budget). Raises
    ``_Refused`` with a shell's status (127 not found, 126 not executable) when it cannot run.
    PATH is searched as ``os.execvpe`` does; the working directory is set around the call (PID
    1 is single-threaded and lives in "/").
    """
    name = argv[0]
    paths = [name] if "/" in name else [
        os.path.join(directory, name) for directory in env["PATH"].split(os.pathsep)
    ]
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    failure: OSError | None = None
    try:
        try:
            os.chdir(cwd)
        except OSError:
            pass  # the command starts in "/"
        for path in paths:
            try:
                os.stat(path)  # what is not there fails here as exec would, without a vfork
                return os.posix_spawn(path, [arg0, *argv[1:]], env, file_actions=actions,
                                      setsid=True, setsigmask=(), setsigdef=DEFAULT_SIGNALS)
            except OSError as exc:  # as execvpe: the first error but "not there" is the one told
                if failure is None or isinstance(failure, (FileNotFoundError, NotADirectoryError)):
                    failure = exc
    finally:
        os.chdir("/")
    reason = failure.strerror if failure and failure.strerror else str(failure)
    raise _Refused(f"cannot run {name}: {reason}",
                   127 if isinstance(failure, FileNotFoundError) else 126)


def _fork_exec(
    argv: list[str], arg0: str, env: dict[str, str], cwd: str,
    stdio: tuple[int, int, int], ctty: int | None,
) -> int:
    """Fork a child of PID 1 in a session of its own and exec ``argv`` there: for a command on
    a terminal, which posix_spawn cannot make its controlling terminal (TIOCSCTTY).

    Returns its PID once the exec succeeded; raises ``_Refused`` with the reason otherwise
    (told through a close-on-exec pipe).
    """
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(argv, arg0, env, cwd, stdio, ctty, err_w)
    os.close(err_w)
    error = b""
    try:
        while chunk := os.read(err_r, 4096):
            error += chunk
    finally:
        os.close(err_r)
    if error:
        status, _, message = error.decode("utf-8", "replace").partition(" ")
        raise _Refused(message, int(status))
    return pid


def _child(
    argv: list[str], arg0: str, env: dict[str, str], cwd: str,
    stdio: tuple[int, int, int], ctty: int | None, err_w: int,
) -> NoReturn:
    try:
        signal.set_wakeup_fd(-1)
        for sig in DEFAULT_SIGNALS:  # also SIGPIPE, which Python ignores
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        os.setsid()
        if ctty is not None:
            fcntl.ioctl(ctty, termios.TIOCSCTTY, 0)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        try:
            os.chdir(cwd)
        except OSError:
            os.chdir("/")
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.execvpe(argv[0], [arg0, *argv[1:]], env)
    except BaseException as exc:  # noqa: BLE001 - the parent reads why
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        status = 127 if isinstance(exc, FileNotFoundError) else 126
        try:
            message = f"{status} cannot run {argv[0]}: {reason}"
            os.write(err_w, message.encode("utf-8", "replace"))
        except OSError:
            pass
    os._exit(127)
