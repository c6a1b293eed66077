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
request, as its own children (docs/ARCHITECTURE.md, "Entering a subhost"): see
``linux/control_server.py``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time

from overlay_boot import log, status_wire
from overlay_boot.linux import runfiles
from overlay_boot.linux.control_server import DEFAULT_SIGNALS, SANE_PATH, Control

# Annotations only: `typing` stays out of PID 1's memory.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from overlay_boot.linux.journal import Relay

SIGPOWEROFF = signal.SIGRTMIN + 4
STOP_TIMEOUT = 30.0
_KILL_WAIT = 5.0  # how long to reap after the final SIGKILL before giving up
_MAX_LINE = 8192  # a relayed line longer than this is cut


class InitSettings:
    """What PID 1 is told by the supervisor (a plain class: ``dataclasses`` costs PID 1 more
    than a megabyte, see docs/ARCHITECTURE.md "Processes")."""

    __slots__ = ("name", "start", "script", "grace", "log_fd", "stop_timeout", "control_fd",
                 "host_peers_unmapped", "notify_fd", "run_dir_fd", "lock_fd", "netns_dir_fd")

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
        # a socket connected to systemd's notify socket, RUN_DIR, the subhost's lock and
        # /run/netns (its netns bind is removed at a clean end).
        notify_fd: int | None = None,
        run_dir_fd: int | None = None,
        lock_fd: int | None = None,
        netns_dir_fd: int | None = None,
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
        self.netns_dir_fd = netns_dir_fd

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
    """A wait status in words: PID 1's own (proc.wait_status_words needs errors.py, which loads
    dataclasses: not in PID 1's light module set)."""
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
        self.control: Control | None = None

    # --- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        settings = self.settings
        for fd in (self.status_fd, settings.log_fd, settings.run_dir_fd, settings.lock_fd,
                   settings.netns_dir_fd):
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
            self.control = Control(self.settings.control_fd, self.poller,
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
            os.write(self.status_fd, status_wire.encode(line))
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
        kind, first, rest = status_wire.parse(line)
        run_dir = self.settings.run_dir_fd
        if kind == "STATUS":
            # Never STOPPING=1: a reboot (SIGINT) stops the services too, and the unit stays.
            self.sd_notify("STATUS=" + first)
            if run_dir is not None:
                runfiles.update_record(run_dir, self.settings.name, state=first.partition(" ")[0])
        elif kind == "READY":
            self.sd_notify(f"READY=1\nSTATUS=Running subhost {self.settings.name}")
            if run_dir is not None:
                runfiles.update_record(run_dir, self.settings.name, state="running")
        elif kind == "SERVICE" and run_dir is not None:
            runfiles.update_record(run_dir, self.settings.name, word=first, service=rest)

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
                setsigdef=DEFAULT_SIGNALS,
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
        self.status(status_wire.service(word, "starting" if action == "start" else "stopping"))
        argv = service_argv(word, action)
        pid = self.spawn(argv, word)
        if pid is None:
            self.status(status_wire.service(word, "failed"))
            return
        if action == "start":
            status = self.wait(pid, None, abort_on_request=True)
        else:
            status = self.wait(pid, self.settings.stop_timeout, abort_on_request=False)
        self.report(word, action, status)

    def report(self, word: str, action: str, status: int | None) -> None:
        done = "started" if action == "start" else "stopped"
        self.status(status_wire.service(word, done if status == 0 else "failed"))
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
            self.status(status_wire.status("starting init script"))
            pid = self.spawn(["/bin/sh", "-c", script], "init")
            if pid is not None:
                self.report("init", "start", self.wait(pid, None, abort_on_request=True))
            return
        for word in self.settings.start:
            if self.request:
                return
            self.status(status_wire.status(f"starting {word}"))
            self.started.append(word)
            self.run_word(word, "start")

    def stop_all(self) -> None:
        for word in reversed(self.started):
            self.status(status_wire.status(f"stopping {word}"))
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
        self.status(status_wire.status("stopping remaining processes"))
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
                self.status(status_wire.ready())
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
        settings = self.settings
        if self.handed_over and settings.run_dir_fd is not None:
            # The netns bind first, while the lock still keeps a new start out; then nothing
            # is left: the unit runs nothing after a clean stop (generator: ExecStopPost=).
            if settings.netns_dir_fd is not None:
                runfiles.remove_netns(settings.netns_dir_fd, settings.run_dir_fd, settings.name)
            runfiles.remove(settings.run_dir_fd, settings.name, settings.lock_fd)
        os._exit(0)


def _kill_all(sig: int) -> None:
    try:
        os.kill(-1, sig)
    except ProcessLookupError:
        pass


def _noop(signum: int, frame: object) -> None:
    """The real work happens in the loop, woken through the wakeup fd."""


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
            pid1.status(status_wire.error(f"init failed: {exc}"))
        os._exit(1)
