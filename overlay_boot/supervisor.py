"""The supervisor: the host-side process that starts one subhost.

It runs the start sequence of docs/ARCHITECTURE.md. Under systemd (``NOTIFY_SOCKET``) it hands
the unit over to PID 1 once the START services were started — ``MAINPID=`` — and exits: PID 1
is then the only long-lived process of the subhost. Without systemd it waits for PID 1, and
tears everything down when PID 1 exits, whatever the reason; only the standard library lives
here then: the cables are built by the shared cable service or a short-lived child (pyroute2).
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from . import cleanup, log, machined, neighbours, netns, state, status_wire
from .config import Config
from .errors import SubhostError
from .linux import boot
from .proc import CommandFailed, failure_text, run_shell_status, wait_status_words
from .record import replace

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGRTMIN + 4)

# PID 1's status pipe can be written by whoever reaches PID 1's fds, so what comes through it
# is bounded: lines, texts, the states a START word can have, how often the record is rewritten.
MAX_STATUS_LINE = 4096
MAX_STATUS_TEXT = 200
MAX_ERROR_TEXT = 1000
SUBHOST_STATES = frozenset({"starting", "running", "stopping"})
RECORD_INTERVAL = 0.2  # seconds: at most this often is the runtime record rewritten


class _Stop(Exception):
    """A stop was requested before PID 1 existed."""


class Supervisor:
    """Starts one subhost and supervises its PID 1 until it exits."""

    def __init__(self, config: Config, *, ready: Callable[[str | None], None] | None = None):
        self.config = config
        self.ready_callback = ready
        self.pid1: int | None = None  # until reaped
        self.pid1_fd: int | None = None  # its pidfd, the only way it is signalled
        self.stop_requested = False
        self.stop_asked = False  # a stop signal came (forwarded to PID 1 or not)
        self.record: state.Runtime | None = None
        self.record_dirty = False  # self.record is newer than the file
        self.record_written = 0.0  # time.monotonic() of the last write
        self.ready_seen = False
        self.unknown_logged = False
        self.too_long_logged = False
        self.registered = False  # with systemd-machined (once, not again after a reboot)
        self.registration: machined.Registration | None = None  # under way, for the hand-over
        self.dropin = ""  # the runtime drop-in this run was started with (state.dropin_stamp)
        self.lock_fd: int | None = None
        # Under systemd: PID 1 becomes the unit's main process once it is ready, and the
        # supervisor exits (docs/ARCHITECTURE.md, "Processes").
        self.handover = bool(os.environ.get("NOTIFY_SOCKET"))
        self.handed_over = False

    # -- signals -------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_asked = True
        pidfd = self.pid1_fd
        if pidfd is not None:
            # PID 1 knows what each signal means (SIGINT reboots, the others stop).
            forward = signum if signum in (signal.SIGINT, signal.SIGRTMIN + 4) else signal.SIGTERM
            state.send_signal(pidfd, forward)
        else:
            self.stop_requested = True

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise _Stop()

    # -- notify ----------------------------------------------------------------------------
    def _status(self, text: str) -> None:
        log.debug(text)
        if os.environ.get("NOTIFY_SOCKET"):
            from .systemd import notify

            notify(status=text)

    def _ready(self) -> None:
        if os.environ.get("NOTIFY_SOCKET"):
            from .systemd import notify

            notify(ready=True, status=f"Running subhost {self.config.name}")
        if self.ready_callback:
            self.ready_callback(None)

    def _failed(self, message: str) -> None:
        if self.ready_callback:
            self.ready_callback(message)

    # -- the sequence -------------------------------------------------------------------------
    def run(self) -> int:
        """Start the subhost and supervise it; returns the exit status for the process."""
        config = self.config
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        self.dropin = state.dropin_stamp(config.name)
        try:
            lock_fd = self.lock_fd = state.acquire(config.name)
        except SubhostError as exc:
            self._failed(str(exc))
            raise
        status = 1
        try:
            status = self._start_and_wait(config)
        except _Stop:
            log.notice(f"stop requested while starting subhost {config.name}")
            self._failed("stopped while starting")
            status = 0
        except SubhostError as exc:
            log.error(str(exc))
            self._failed(str(exc))
            status = exc.exit_status
        finally:
            if self.handed_over:  # PID 1 holds the lock and the rest now; the unit is its
                os.close(lock_fd)
                return status  # noqa: B012 - nothing of ours is left to clean up
            self._finish_registration()  # answered while the unit is still ours
            self._status("Cleaning up")
            try:
                cleanup.teardown(config.name, config.interfaces)
            except Exception as exc:  # teardown must always release the lock
                log.error(f"cleanup of subhost {config.name} failed: {exc}")
                status = status or 1
            state.remove(config.name, lock_fd)
            state.remove_runtime_dropin(config.name, self.dropin)
            os.close(lock_fd)
        return status

    def _start_and_wait(self, config: Config) -> int:
        cleanup.remove_stale(config.name, config.interfaces)
        self._check_stop()

        self._status("Creating network namespace")
        userns_fd = None
        if config.userns is not None:
            # Owned by the subhost's user namespace, made with it: see netns.create_in_userns.
            netns_path, userns_fd = netns.create_in_userns(config.name, config.userns)
        else:
            netns_path = netns.create(config.name)
        try:
            return self._start_in(config, netns_path, userns_fd)
        finally:
            if userns_fd is not None:
                os.close(userns_fd)

    def _start_in(self, config: Config, netns_path: Path, userns_fd: int | None) -> int:
        if config.cables:
            self._status("Building cables")
            from . import net

            net.build_cables(config.name, config.cables, config.vlans)
        self._check_stop()

        init_script = run_init_command(config) if config.init is not None else None
        control = open_control_socket(config.name)
        pid1 = boot.Pid1Exec(
            init={"name": config.name, "start": list(config.start), "script": init_script,
                  "log_fd": log.extra_fd(), "control_fd": control.fileno(),
                  "host_peers_unmapped": userns_fd is not None},
            tag=f"overlay-boot[{config.name}]",  # as cli/boot.supervise sets it
            handover=self.handover,
            notify_socket=os.environ.get("NOTIFY_SOCKET", ""),
            run_dir=str(state.RUN_DIR),
            lock_fd=self.lock_fd,
            netns_dir=str(netns.NETNS_DIR),
        )
        hooks_env = {"CONFIG": str(config.path)}

        self._status("Starting PID 1")
        # Everything loaded so far is shared copy-on-write with PID 1 while it builds the tree
        # (until it execs its own interpreter): keep the collector from copying those objects.
        gc.freeze()
        read_fd, write_fd = os.pipe()
        try:
            self.pid1, self.pid1_fd = boot.spawn_pid1(
                config,
                netns_path,
                write_fd,
                pid1,
                hooks_env,
                keep_fds=(control.fileno(),),
                hidden=neighbours.other_subhost_dirs(config),
                userns_fd=userns_fd,
            )
        finally:
            os.close(write_fd)
            control.close()  # PID 1 has it; state.remove() unlinks the path at teardown
        leader_start = state.start_time(self.pid1)
        self.record = state.Runtime(
            name=config.name,
            config=str(config.path),
            supervisor_pid=os.getpid(),
            leader_pid=self.pid1,
            root=str(config.live),
            interfaces=config.interfaces,
            supervisor_start=state.start_time(os.getpid()),
            leader_start=leader_start,
            boot_id=state.boot_id(),
            dropin=self.dropin,
            userns="" if config.userns is None else str(config.userns),
        )
        self._write_record()
        if self.handover and machined.wanted():
            # machined works while PID 1 builds the tree; answered before the hand-over.
            self.registered = True
            self.registration = machined.start(config.name, self.pid1, str(config.live),
                                               config.interfaces)
        if self.stop_requested:
            state.send_signal(self.pid1_fd, signal.SIGTERM)
        error = self._follow_status(read_fd)
        if self.handed_over:
            self._forget_pid1()
            return 0
        status = self._wait_pid1()
        if error:
            raise SubhostError(f"subhost {config.name} failed to start: {error}")
        log.info(f"subhost {config.name} stopped (PID 1 {wait_status_words(status)})")
        return 0 if status == 0 else 1

    def _follow_status(self, read_fd: int) -> str | None:
        """Relay PID 1's status lines until it closes the pipe; returns an ERROR message."""
        error = None
        try:
            for raw in self._status_lines(read_fd):
                message = self._on_status_line(raw.decode("utf-8", "replace"))
                if message is not None and error is None:
                    error = message
                if self.handed_over:
                    break
        finally:
            os.close(read_fd)
            self._flush_record()
        return error

    def _status_lines(self, read_fd: int):
        """The lines of the status pipe, each at most MAX_STATUS_LINE bytes (the rest of a
        longer line is dropped). Between reads, a record change held back is written."""
        buffer = bytearray()
        dropping = False  # inside a line that was too long: skip to its newline
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        while True:
            if self.record_dirty:
                wait = RECORD_INTERVAL - (time.monotonic() - self.record_written)
                if wait <= 0 or not poller.poll(max(1, int(wait * 1000))):
                    self._flush_record()
                    continue
            try:
                chunk = os.read(read_fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                return
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:min(end, MAX_STATUS_LINE + 1)])
                del buffer[:end + 1]
                if not dropping and len(line) <= MAX_STATUS_LINE:
                    yield line
                elif not dropping:
                    self._too_long()
                dropping = False
            if len(buffer) > MAX_STATUS_LINE:
                if not dropping:
                    self._too_long()
                dropping = True
                buffer.clear()

    def _too_long(self) -> None:
        if not self.too_long_logged:
            self.too_long_logged = True
            log.warning(f"subhost {self.config.name}: a status line of PID 1 longer than "
                        f"{MAX_STATUS_LINE} bytes ignored (and any later ones)")

    def _on_status_line(self, line: str) -> str | None:
        """Act on one line of PID 1's; returns the message of an ERROR line."""
        kind, text, state = status_wire.parse(line)
        if kind == "READY":
            if not self.ready_seen:
                self.ready_seen = True
                self._mark_running()
            else:  # again after a reboot of the subhost: only the state
                self._set_record(state="running")
        elif kind == "STATUS":
            text = printable(text, MAX_STATUS_TEXT)
            self._status(text)
            self._set_record(state=text.partition(" ")[0])
        elif kind == "SERVICE":
            if text in self.config.start and state in status_wire.SERVICE_STATES:
                self._set_record(word=text, service=state)
            else:
                self._unknown(line)
        elif kind == "ERROR":
            text = printable(text, MAX_ERROR_TEXT)
            log.error(text)
            return text
        else:
            self._unknown(line)
        return None

    def _unknown(self, line: str) -> None:
        if not self.unknown_logged:
            self.unknown_logged = True
            log.warning(f"subhost {self.config.name}: unexpected status line from PID 1 "
                        f"ignored (and any later ones): {printable(line, 80)!r}")

    def _mark_running(self) -> None:
        if self.handover and self.pid1 is not None and self.record is not None:
            self._hand_over()
            return
        self._set_record(state="running")
        self._flush_record()  # before anyone is told it runs
        log.info(f"subhost {self.config.name} is running (PID 1 is {self.pid1})")
        self._ready()
        if not self.registered and self.pid1 is not None:
            self.registered = True  # once: PID 1 stays the leader across reboots
            if machined.wanted():
                machined.register_in_background(
                    self.config.name, self.pid1, str(self.config.live), self.config.interfaces)

    def _hand_over(self) -> None:
        """Make PID 1 the unit's main process and be done: the record names PID 1 as the
        process to signal, machined gets PID 1 as leader, systemd gets ``MAINPID=`` (accepted
        from the main process with ``NotifyAccess=main``), then PID 1 talks to systemd."""
        assert self.pid1 is not None and self.record is not None
        self.record = replace(self.record, state="running", supervisor_pid=self.record.leader_pid,
                              supervisor_start=self.record.leader_start)
        self._write_record()
        # One line for a clean start: each costs the journal (100 starts at once, issue #13).
        log.info(f"subhost {self.config.name} is running (PID 1 is {self.pid1}, the unit's "
                 "main process from now on)")
        self._finish_registration()
        hand_over_to(self.pid1, f"Running subhost {self.config.name}")
        self.handed_over = True
        if self.ready_callback:
            self.ready_callback(None)

    def _finish_registration(self) -> None:
        """Wait for machined's answer to the registration started with PID 1, if any."""
        registration, self.registration = self.registration, None
        if registration is not None:
            registration.finish()

    def _set_record(self, **changes: str) -> None:
        """Update the runtime record: the subhost's state (from READY and PID 1's STATUS
        lines: starting/stopping …) or a START word's state (SERVICE lines, for D-Bus)."""
        if self.record is None:
            return
        if changes.get("state", "running") not in SUBHOST_STATES:
            return
        record = self.record
        if "word" in changes:
            services = dict(record.services)
            services[changes["word"]] = changes["service"]
            record = replace(record, services=tuple(services.items()))
        if "state" in changes:
            record = replace(record, state=changes["state"])
        if record != self.record:
            self.record = record
            self.record_dirty = True
            if time.monotonic() - self.record_written >= RECORD_INTERVAL:
                self._flush_record()

    def _flush_record(self) -> None:
        if self.record_dirty:
            self._write_record()

    def _write_record(self) -> None:
        assert self.record is not None
        state.write(self.record)
        self.record_dirty = False
        self.record_written = time.monotonic()

    def _forget_pid1(self) -> None:
        """After the hand-over: PID 1 is systemd's to reap and signal, not ours."""
        self.pid1 = None
        pidfd, self.pid1_fd = self.pid1_fd, None
        if pidfd is not None:
            os.close(pidfd)

    def _wait_pid1(self) -> int:
        """Reap PID 1; from then on its PID is never signalled again (it may be reused).

        With the hand-over prepared, PID 1 is not our child (boot._spawn_orphan): we wait on
        its pidfd, and its exit status is unknown: 0 when a stop was asked for, else 1."""
        assert self.pid1 is not None and self.pid1_fd is not None
        if self.handover:
            try:
                select.select([self.pid1_fd], [], [])
            finally:
                self._forget_pid1()
            return 0 if self.stop_asked else 1 << 8
        try:
            while True:
                try:
                    _, status = os.waitpid(self.pid1, 0)
                    return status
                except InterruptedError:
                    continue
                except ChildProcessError:
                    return 0
        finally:
            self._forget_pid1()


BARRIER_TIMEOUT = 5.0  # seconds systemd may take to read our notifications


def hand_over_to(pid: int, status: str) -> bool:
    """``MAINPID=PID``, ``READY=1`` and STATUS to systemd, then wait until systemd has read
    them (``BARRIER=1``, sd_notify_barrier(3)): once we exit, systemd would no longer know
    whose message it was. False when systemd could not be told."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    message = f"MAINPID={pid}\nREADY=1\nSTATUS={' '.join(status.splitlines())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(address)
        sock.send(message.encode("utf-8", "replace"))
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            socket.send_fds(sock, [b"BARRIER=1"], [write_fd])
            os.close(write_fd)
            write_fd = -1
            poller = select.poll()
            poller.register(read_fd, select.POLLHUP)
            poller.poll(int(BARRIER_TIMEOUT * 1000))
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
    except OSError as exc:
        log.warning(f"cannot hand the unit over to PID {pid}: {exc.strerror}")
        return False
    finally:
        sock.close()
    return True


def open_control_socket(name: str) -> socket.socket:
    """The listening control socket PID 1 inherits, at ``/run/overlay-boot/NAME.ctl`` (0600)."""
    path = state.control_path(name)
    try:
        path.unlink()  # left by a crash
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    return sock


def printable(text: str, limit: int) -> str:
    """TEXT without control characters (NUL included), at most LIMIT characters."""
    return "".join(c for c in text[:limit * 4] if c.isprintable())[:limit]


def run_init_command(config: Config) -> str:
    """Run the INIT command on the host; its output is the subhost's start-up script.

    The same runner as `!` values: bounded output, a timeout, killed with the supervisor.
    A non-zero exit is a warning: 1.6.4 ran whatever INIT printed (``$($INIT | sed …)``).
    """
    assert config.init is not None
    try:
        out, err, status = run_shell_status(config.init, config=config.path,
                                            cwd=str(config.base), timeout=60)
    except CommandFailed as exc:
        raise SubhostError(f"INIT: {exc}") from None
    if status != 0:
        log.warning(f"INIT: {failure_text(config.init, status, err)}; its output is the "
                    "start-up script all the same, as in 1.6.4")
    return out.decode("utf-8", "replace")


def open_log(path: Path | None) -> None:
    """Open the LOG= file for appending; every later message is copied there.

    Never through a symlink, and only below directories only root may change (`trust`):
    root appends to it."""
    if path is None:
        return
    from .trust import open_log_file

    log.configure(extra_fd=open_log_file(path))
