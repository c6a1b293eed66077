"""PID 1 of a subhost: start the START services, reap every orphan, stop in reverse order.

Run by PID 1's own interpreter (``linux/entry.py``) after ``pivot_root``, so it must need
nothing from the subhost's filesystem except what it runs (its import system is sealed), and
stays small: light standard library modules only (no dataclasses, typing, pathlib), one
``poll`` loop, no threads. Signals reach the loop through ``signal.set_wakeup_fd``; the
Python-level handlers do nothing (they must exist: PID 1 of a PID namespace only receives
signals it has a handler for).

Signals: SIGTERM and SIGRTMIN+4 stop the subhost (exit 0), SIGINT stops it and starts the
services again (reboot), SIGCHLD reaps. The status pipe gets ``STATUS starting WORD`` while
starting, ``READY`` once every START word was tried (again after each reboot) and
``STATUS stopping WORD`` while stopping; ``SERVICE WORD STATE`` (starting, started, stopping,
stopped, failed) as each START word changes state.

With a control socket (``InitSettings.control_fd``), PID 1 also spawns shells and commands on
request, as its own children (docs/ARCHITECTURE.md, "Entering a subhost"): see ``_Control``.
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
import time

from overlay_boot import log
from overlay_boot.control_wire import (
    exit_message,
    parse_request,
    parse_signal,
    receive_message,
    send_message,
)
from overlay_boot.linux import runfiles

# Annotations only: `typing` stays out of PID 1's memory.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from overlay_boot.linux.journal import Relay

SANE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SIGPOWEROFF = signal.SIGRTMIN + 4
STOP_TIMEOUT = 30.0
_KILL_WAIT = 5.0  # how long to reap after the final SIGKILL before giving up
_MAX_LINE = 8192  # a relayed line longer than this is cut


class InitSettings:
    """What PID 1 is told by the supervisor (a plain class: ``dataclasses`` costs PID 1 more
    than a megabyte, see docs/ARCHITECTURE.md "Processes")."""

    __slots__ = ("name", "start", "script", "grace", "log_fd", "stop_timeout", "control_fd",
                 "host_peers_unmapped", "notify_fd", "run_dir_fd", "lock_fd")

    def __init__(
        self,
        name: str,
        start: tuple[str, ...],  # START words; () for none
        script: str | None,  # INIT override: a shell script run instead of the built-in start
        grace: float = 5.0,  # seconds between TERM and KILL at shutdown
        log_fd: int | None = None,  # LOG= file, lines copied there too
        stop_timeout: float = STOP_TIMEOUT,  # per stop command, then it is killed
        control_fd: int | None = None,  # listening control socket (AF_UNIX, SOCK_SEQPACKET)
        # USERNS=: PID 1 is in a user namespace where host root has no uid (it reads as the
        # overflow uid, as a uid of the subhost may): a client is host root by being outside.
        host_peers_unmapped: bool = False,
        # Under systemd, once the supervisor has handed the unit over to PID 1 (MAINPID=):
        # a socket connected to systemd's notify socket, RUN_DIR and the subhost's lock.
        notify_fd: int | None = None,
        run_dir_fd: int | None = None,
        lock_fd: int | None = None,
    ) -> None:
        self.name = name
        self.start = tuple(start)
        self.script = script
        self.grace = grace
        self.log_fd = log_fd
        self.stop_timeout = stop_timeout
        self.control_fd = control_fd
        self.host_peers_unmapped = host_peers_unmapped
        self.notify_fd = notify_fd
        self.run_dir_fd = run_dir_fd
        self.lock_fd = lock_fd

    def __repr__(self) -> str:
        return f"InitSettings(name={self.name!r}, start={self.start!r})"


def find_command(name: str, path: str = SANE_PATH) -> str | None:
    """The first executable ``name`` on ``path`` (a PATH string), like ``command -v``."""
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def service_argv(word: str, action: str, path: str = SANE_PATH) -> list[str]:
    """The command that runs ``action`` (start/stop) for one START word (SPEC §2.4)."""
    if word.startswith("/"):
        return [word, action]
    service = find_command("service", path)
    if service:
        return [service, word, action]
    return [f"/etc/init.d/{word}", action]


def child_environment(environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """A clean environment for services: the sane PATH and the terminal type, nothing else."""
    environ = os.environ if environ is None else environ
    env = {"PATH": SANE_PATH}
    if environ.get("TERM"):
        env["TERM"] = environ["TERM"]
    return env


def describe_exit(status: int) -> str:
    """A wait status in words."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit status {code}"
    return f"killed by {_signal_name(-code)}"


def _signal_name(sig: int) -> str:
    if sig == SIGPOWEROFF:
        return "SIGRTMIN+4"
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class _Init:
    def __init__(self, settings: InitSettings, status_fd: int,
                 relay: Relay | None = None) -> None:
        self.settings = settings
        self.status_fd = status_fd
        self.relay = relay  # the subhost's /dev/log to the host's journal
        self.env = child_environment()
        self.poller = select.poll()
        self.relays: dict[int, tuple[str, bytearray]] = {}
        self.watched: dict[int, int | None] = {}  # our commands: pid -> wait status once reaped
        self.request: str | None = None  # None, "reboot" or "poweroff"
        self.started: list[str] = []  # words whose start was tried, in order
        self.wake_r = -1
        self.devnull = -1  # opened once, before any process of the subhost could replace it
        self.ready_sent = False
        # Under systemd: set once the supervisor has exited, PID 1 being the unit's main
        # process: STATUS=/READY=1 go to systemd and the record is PID 1's to keep current.
        self.notify: socket.socket | None = None
        self.handed_over = False
        self.control: _Control | None = None

    # --- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        settings = self.settings
        for fd in (self.status_fd, settings.log_fd, settings.run_dir_fd, settings.lock_fd):
            if fd is not None and fd >= 0:
                os.set_inheritable(fd, False)
        if settings.notify_fd is not None:
            self.notify = socket.socket(fileno=settings.notify_fd)
            self.notify.set_inheritable(False)
            self.notify.setblocking(False)
        if self.status_fd >= 0:
            os.set_blocking(self.status_fd, False)
        log.configure(extra_fd=self.settings.log_fd)
        os.chdir("/")
        # Now, while PID 1 is the only process: later, root inside could put a FIFO there,
        # and an open of it would block PID 1 (and posix_spawn, which opens in the child
        # while PID 1 waits for it).
        self.devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        os.umask(0o022)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        ours = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, SIGPOWEROFF}
        # Handlers inherited from the supervisor would make PID 1 receive signals it ignores.
        for sig in signal.valid_signals():
            if sig not in ours and callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        for sig in ours:
            signal.signal(sig, _noop)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, ours)
        self.poller.register(self.wake_r, select.POLLIN)
        if self.relay is not None:
            self.poller.register(self.relay.fileno(), select.POLLIN)
        if self.notify is not None and self.status_fd >= 0:
            self.poller.register(self.status_fd, 0)  # POLLERR: the supervisor exited
        if self.settings.control_fd is not None and self.settings.control_fd >= 0:
            self.control = _Control(self.settings.control_fd, self.poller,
                                    self.settings.host_peers_unmapped)

    # --- the event loop ---------------------------------------------------------------------

    def step(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds (None: forever) for signals and service output."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        for fd, _ in self.poller.poll(ms):
            if fd == self.wake_r:
                self.handle_signals()
            elif fd == self.status_fd:
                self.take_over()
            elif fd in self.relays:
                self.relay_output(fd)
            elif self.relay is not None and fd == self.relay.fileno():
                self.relay.pump()
            elif self.control is not None:
                self.control.handle(fd, stopping=self.request is not None)

    def handle_signals(self) -> None:
        try:
            data = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        for sig in data:
            if sig == signal.SIGCHLD:
                self.reap()
            elif sig in (signal.SIGTERM, SIGPOWEROFF):
                if self.request != "poweroff":  # a second one while stopping changes nothing
                    self.request = "poweroff"
                    log.info(f"{_signal_name(sig)}: stopping the subhost")
            elif sig == signal.SIGINT and self.request is None:
                self.request = "reboot"
                log.info("SIGINT: restarting the subhost's services")

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.watched:
                self.watched[pid] = status
            elif self.control is not None:
                self.control.exited(pid, status)

    def relay_output(self, fd: int, final: bool = False) -> None:
        source, buffer = self.relays[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data:
            buffer += data
            *lines, rest = buffer.split(b"\n")
            if len(rest) > _MAX_LINE:
                lines.append(rest)
                rest = b""
            buffer[:] = rest
            for line in lines:
                self.log_line(source, line)
        if data == b"" or final:
            if buffer:
                self.log_line(source, bytes(buffer))
            self.poller.unregister(fd)
            del self.relays[fd]
            os.close(fd)

    @staticmethod
    def log_line(source: str, line: bytes) -> None:
        log.info(line.decode("utf-8", "replace").rstrip("\r"), source=source)

    def status(self, line: str) -> None:
        """One line of the status pipe (docs/ARCHITECTURE.md); after the hand-over, the same
        to systemd and the runtime record."""
        if self.handed_over:
            self.tell_systemd(line)
            return
        if self.status_fd < 0:
            return
        try:
            os.write(self.status_fd, line.encode("utf-8", "replace") + b"\n")
        except OSError:
            # The supervisor stopped listening; PID 1 carries on regardless.
            if self.notify is not None:
                self.take_over()
                self.tell_systemd(line)

    def take_over(self) -> None:
        """The supervisor has exited (it closed its end of the status pipe): from now on PID 1
        is the unit's main process (it sent MAINPID= before it went)."""
        if self.handed_over or self.notify is None:
            return
        self.handed_over = True
        try:
            self.poller.unregister(self.status_fd)
        except KeyError:
            pass
        os.close(self.status_fd)
        self.status_fd = -1

    def tell_systemd(self, line: str) -> None:
        kind, _, text = line.partition(" ")
        run_dir = self.settings.run_dir_fd
        if kind == "STATUS":
            # Never STOPPING=1: a reboot (SIGINT) stops the services too, and the unit stays.
            self.sd_notify("STATUS=" + text)
            if run_dir is not None:
                runfiles.update_record(run_dir, self.settings.name, state=text.partition(" ")[0])
        elif kind == "READY":
            self.sd_notify(f"READY=1\nSTATUS=Running subhost {self.settings.name}")
            if run_dir is not None:
                runfiles.update_record(run_dir, self.settings.name, state="running")
        elif kind == "SERVICE" and run_dir is not None:
            word, _, service = text.partition(" ")
            runfiles.update_record(run_dir, self.settings.name, word=word, service=service)

    def sd_notify(self, message: str) -> None:
        if self.notify is None:
            return
        try:
            self.notify.send(message.encode("utf-8", "replace"))
        except OSError:
            pass  # systemd busy or gone: a lost status line never ends a subhost

    # --- running commands -------------------------------------------------------------------

    def spawn(self, argv: list[str], source: str) -> int | None:
        """Start ``argv`` in its own session, output relayed; None (logged) if it cannot run."""
        read_fd, write_fd = os.pipe()
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                self.env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                    (os.POSIX_SPAWN_DUP2, write_fd, 1),
                    (os.POSIX_SPAWN_DUP2, write_fd, 2),
                ],
                setsid=True,
                setsigmask=(),
                setsigdef=_DEFAULT_SIGNALS,
            )
        except OSError as exc:
            os.close(read_fd)
            log.error(f"cannot run {' '.join(argv)}: {exc.strerror}", source=source)
            return None
        finally:
            os.close(write_fd)
        self.watched[pid] = None
        os.set_blocking(read_fd, False)
        self.relays[read_fd] = (source, bytearray())
        self.poller.register(read_fd, select.POLLIN)
        return pid

    def wait(self, pid: int, timeout: float | None, abort_on_request: bool) -> int | None:
        """Run the loop until ``pid`` exits; on timeout kill its process group, return None.

        With ``abort_on_request``, a stop or reboot request ends the wait: the command's
        process group gets SIGTERM at once (as systemd does to a starting service), and SIGKILL
        after the stop timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.reap()  # it may have exited before we looked
        while self.watched.get(pid) is None:
            if abort_on_request and self.request and deadline is None:
                deadline = time.monotonic() + self.settings.stop_timeout
                for target in (-pid, pid):
                    try:
                        os.kill(target, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                for target in (-pid, pid):
                    try:
                        os.kill(target, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.watched.pop(pid, None)  # reaped later like any orphan
                return None
            self.step(remaining)
        return self.watched.pop(pid)

    def run_word(self, word: str, action: str) -> None:
        self.status(f"SERVICE {word} {'starting' if action == 'start' else 'stopping'}")
        argv = service_argv(word, action)
        pid = self.spawn(argv, word)
        if pid is None:
            self.status(f"SERVICE {word} failed")
            return
        if action == "start":
            status = self.wait(pid, None, abort_on_request=True)
        else:
            status = self.wait(pid, self.settings.stop_timeout, abort_on_request=False)
        self.report(word, action, status)

    def report(self, word: str, action: str, status: int | None) -> None:
        done = "started" if action == "start" else "stopped"
        self.status(f"SERVICE {word} {done if status == 0 else 'failed'}")
        if status is None:
            log.error(f"{action} timed out, killed", source=word)
        elif status == 0:
            log.info(f"{action}: done", source=word)
        else:
            log.error(f"{action} failed: {describe_exit(status)}", source=word)

    # --- the life cycle ---------------------------------------------------------------------

    def start_all(self) -> None:
        script = self.settings.script
        if script is not None:
            self.status("STATUS starting init script")
            pid = self.spawn(["/bin/sh", "-c", script], "init")
            if pid is not None:
                self.report("init", "start", self.wait(pid, None, abort_on_request=True))
            return
        for word in self.settings.start:
            if self.request:
                return
            self.status(f"STATUS starting {word}")
            self.started.append(word)
            self.run_word(word, "start")

    def stop_all(self) -> None:
        for word in reversed(self.started):
            self.status(f"STATUS stopping {word}")
            self.run_word(word, "stop")
        self.started.clear()
        self.end_the_rest()

    def anyone_left(self) -> bool:
        self.reap()
        try:
            os.kill(-1, 0)
        except ProcessLookupError:
            return False
        return True

    def end_the_rest(self) -> None:
        if not self.anyone_left():
            return
        self.status("STATUS stopping remaining processes")
        log.info("sending SIGTERM to the remaining processes")
        if self.control is not None:
            self.control.hang_up()  # interactive shells ignore SIGTERM
        _kill_all(signal.SIGTERM)
        _kill_all(signal.SIGCONT)
        if self.settle(self.settings.grace):
            return
        log.warning(f"sending SIGKILL to the processes left after {self.settings.grace:g} s")
        _kill_all(signal.SIGKILL)
        if not self.settle(_KILL_WAIT):
            log.error("processes are left after SIGKILL")

    def settle(self, seconds: float) -> bool:
        """Reap for up to ``seconds``; True once no process but PID 1 is left."""
        deadline = time.monotonic() + seconds
        while self.anyone_left():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.step(min(remaining, 0.1))  # SIGCHLD wakes us; the cap is a safety net
        return True

    def main(self) -> NoReturn:
        self.setup()
        while True:
            self.start_all()
            if not self.request:
                self.status("READY")
                self.ready_sent = True
            while not self.request:
                self.step(None)
            self.stop_all()
            if self.request == "poweroff":  # also a SIGTERM during a reboot's stop
                break
            self.request = None
        self.finish()

    def finish(self) -> NoReturn:
        for fd in list(self.relays):
            self.relay_output(fd, final=True)
        log.info("stopped")
        log.flush()
        if self.handed_over and self.settings.run_dir_fd is not None:
            runfiles.remove(self.settings.run_dir_fd, self.settings.name, self.settings.lock_fd)
        os._exit(0)


class _Control:
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
            pid = _fork_exec(argv, arg0, env, cwd, (fds[0], fds[1], fds[2]), None)
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


def _fork_exec(
    argv: list[str], arg0: str, env: dict[str, str], cwd: str,
    stdio: tuple[int, int, int], ctty: int | None,
) -> int:
    """Fork a child of PID 1 in a session of its own and exec ``argv`` there.

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
        for sig in _DEFAULT_SIGNALS:  # also SIGPIPE, which Python ignores
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


def _kill_all(sig: int) -> None:
    try:
        os.kill(-1, sig)
    except ProcessLookupError:
        pass


def _noop(signum: int, frame: object) -> None:
    """The real work happens in the loop, woken through the wakeup fd."""


_DEFAULT_SIGNALS = tuple(
    s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)
)


def run(settings: InitSettings, status_fd: int, relay: Relay | None = None) -> NoReturn:
    """Be PID 1 of the subhost until stopped; exits the process (0 after an orderly stop).
    ``relay``: the subhost's /dev/log to the host's journal (``linux/journal.py``)."""
    pid1 = _Init(settings, status_fd, relay)
    try:
        pid1.main()
    except BaseException as exc:  # PID 1 must say why it dies
        log.error(f"init failed: {exc!r}")
        log.flush()
        if not pid1.ready_sent:
            pid1.status(f"ERROR init failed: {exc}")
        os._exit(1)
