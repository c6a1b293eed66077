"""Relay the local terminal to a pty master (overlay-go's interactive shell), or to pipes.

The local terminal is put in raw mode so that every key — Ctrl-C, Ctrl-Z, Ctrl-D — reaches the
pty inside, whose line discipline turns it into signals for the shell's foreground job. The
terminal's settings are restored on every way out (also errors and SIGTERM/SIGHUP); window size
changes (SIGWINCH) are copied to the pty.

When only some of overlay-go's stdin/stdout/stderr are terminals, those are replaced by pipes
(``StdioPipes``) that ``relay_pipes`` copies: the terminal itself stays on the host's side.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from . import control

_WATCHED = (signal.SIGWINCH, signal.SIGCONT, signal.SIGTERM, signal.SIGHUP, signal.SIGINT,
            signal.SIGQUIT)
_ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
_DRAIN_IDLE = 0.2  # seconds of silence on the pty after the exit message: nothing more comes
_EXIT_WAIT = 5.0  # after the pty closed: how long to wait for the exit message
_BACKLOG = 65536  # bytes read from our stdin, not yet taken by the other side: stop reading
_BACKGROUND_POLL = 0.5  # seconds: how often a background job looks whether it is in front


class _Ended(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def window_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal FD; (24, 80) when it has none."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return 24, 80
    rows, cols = int.from_bytes(packed[0:2], "little"), int.from_bytes(packed[2:4], "little")
    return rows or 24, cols or 80


def job_control_stops_us(fd: int) -> bool:
    """Would reading the terminal FD, or changing its mode, stop us (SIGTTIN/SIGTTOU)? Only
    when it is our controlling terminal and our process group is not in its foreground (a job
    started with ``&``)."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:  # not our controlling terminal: no job control on it
        return False


def copy_window_size(source: int, target: int) -> None:
    try:
        fcntl.ioctl(target, termios.TIOCSWINSZ, fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass


def interactive(master: int, conn: socket.socket, stdin: int = 0, stdout: int = 1,
                forward: Callable[[int], None] | None = None) -> int:
    """Relay STDIN → MASTER → STDOUT until the process on CONN exits; returns its status.

    Closes MASTER. SIGTERM/SIGHUP/SIGINT/SIGQUIT to us end the relay (status 128+signal): the
    process inside then loses its terminal and gets SIGHUP from the kernel. With FORWARD, they
    are given to FORWARD instead (to pass them on) and the relay goes on until the exit.
    """
    saved = termios.tcgetattr(stdin)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_handlers = {sig: signal.signal(sig, _noop) for sig in _WATCHED}
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        tty.setraw(stdin, termios.TCSADRAIN)
        copy_window_size(stdin, master)
        return _relay(master, conn, stdin, stdout, wake_r, forward)
    except _Ended as ended:
        return 128 + ended.signum
    finally:
        try:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        except termios.error:
            pass  # the terminal hung up
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        for fd in (wake_r, wake_w, master):
            os.close(fd)


def _relay(master: int, conn: socket.socket, stdin: int, stdout: int, wake_r: int,
           forward: Callable[[int], None] | None) -> int:
    os.set_blocking(master, False)
    pending = bytearray()  # typed, not yet taken by the pty
    stdin_open = True
    while True:
        readable = [wake_r, conn, master]
        if stdin_open and len(pending) < 65536:
            readable.append(stdin)
        ready, writable, _ = select.select(readable, [master] if pending else [], [])
        if wake_r in ready:
            _signals(wake_r, stdin, master, forward)
        if master in ready and not _copy_out(master, stdout):
            return _await_exit(conn)  # the pty closed: the shell is gone
        if stdin in ready:
            try:
                data = os.read(stdin, 65536)
            except OSError:  # EIO: our terminal hung up
                data = b""
            if data:
                pending += data
            else:
                stdin_open = False  # our terminal hung up; the exit will follow
        if master in writable:
            try:
                del pending[: os.write(master, pending)]
            except BlockingIOError:
                pass
            except OSError:
                pending.clear()
        if conn in ready:
            code = control.exit_message(conn)
            if code is not None:
                _drain(master, stdout)
                return code


def _signals(wake_r: int, stdin: int, master: int,
             forward: Callable[[int], None] | None) -> None:
    try:
        data = os.read(wake_r, 256)
    except BlockingIOError:
        return
    for signum in data:
        if signum == signal.SIGWINCH:
            copy_window_size(stdin, master)
        elif signum == signal.SIGCONT:  # after a stop, the outer shell may have reset the mode
            try:
                tty.setraw(stdin, termios.TCSADRAIN)
            except termios.error:
                pass
            copy_window_size(stdin, master)
        elif signum in _ENDING:
            if forward is None:
                raise _Ended(signum)
            forward(signum)


def _copy_out(master: int, stdout: int) -> bool:
    """Copy what the pty has to STDOUT; False once it is closed (EIO: no slave left)."""
    try:
        data = os.read(master, 65536)
    except BlockingIOError:
        return True
    except OSError:
        return False
    if not data:
        return False
    try:
        _write_all(stdout, data)
    except OSError:
        pass  # our side hung up: what the process writes goes nowhere, its exit still counts
    return True


def _drain(master: int, stdout: int) -> None:
    """After the exit: copy the rest until the pty closes or stays quiet (a background job
    may hold it open)."""
    while select.select([master], [], [], _DRAIN_IDLE)[0]:
        if not _copy_out(master, stdout):
            return


def _await_exit(conn: socket.socket) -> int:
    conn.settimeout(_EXIT_WAIT)
    while True:
        code = control.exit_message(conn)
        if code is not None:
            return code


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


# --- pipes in place of some terminals ---------------------------------------------------------


@dataclass
class StdioPipes:
    """A pipe for each of some of our stdio descriptors (0, 1, 2): the subhost's side gets one
    end, we keep the other and copy between it and our descriptor."""

    ours: dict[int, int] = field(default_factory=dict)  # our fd -> our end of its pipe
    others: dict[int, int] = field(default_factory=dict)  # our fd -> the end passed on

    @classmethod
    def around(cls, fds: tuple[int, ...]) -> StdioPipes:
        pipes = cls()
        try:
            for fd in fds:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                if fd == 0:
                    pipes.ours[fd], pipes.others[fd] = write_end, read_end
                else:
                    pipes.ours[fd], pipes.others[fd] = read_end, write_end
        except BaseException:
            pipes.close()
            raise
        return pipes

    def theirs(self) -> tuple[int, int, int]:
        """What the other side gets as stdin, stdout, stderr: a pipe or our own descriptor."""
        return self.others.get(0, 0), self.others.get(1, 1), self.others.get(2, 2)

    def close_theirs(self) -> None:
        for fd in self.others.values():
            os.close(fd)
        self.others.clear()

    def close_ours(self, fd: int) -> None:
        """Close our end of the pipe standing for our descriptor FD."""
        end = self.ours.pop(fd, None)
        if end is not None:
            os.close(end)

    def close(self) -> None:
        self.close_theirs()
        for fd in list(self.ours):
            self.close_ours(fd)


def relay_pipes(pipes: StdioPipes, conn: socket.socket) -> int:
    """Copy our stdin into its pipe and the other pipes to our stdout/stderr until the process
    started on CONN exits; returns its status. Closes PIPES.

    Our stdin is read only while the process runs, and a terminal only while we are in its
    foreground (a job started with ``&`` is not stopped for it); its end (Ctrl-D on a
    terminal) closes the pipe. After the exit, what is left in the output pipes is copied until
    they close or stay quiet (a background job may hold them).
    """
    try:
        return _PipeRelay(pipes).run(conn)
    finally:
        pipes.close()


class _PipeRelay:
    def __init__(self, pipes: StdioPipes) -> None:
        self.pipes = pipes
        self.pending = bytearray()  # read from our stdin, not yet taken by the pipe
        self.reading = 0 in pipes.ours
        for end in pipes.ours.values():
            os.set_blocking(end, False)

    def run(self, conn: socket.socket) -> int:
        while True:
            readable: list[socket.socket | int] = [conn, *self._outputs()]
            timeout = None
            if self.reading and len(self.pending) < _BACKLOG:
                if job_control_stops_us(0):
                    timeout = _BACKGROUND_POLL  # a background job: look again later (fg)
                else:
                    readable.append(0)
            writable = [self.pipes.ours[0]] if self.pending else []
            ready, can_write, _ = select.select(readable, writable, [], timeout)
            for fd in self._outputs():
                if self.pipes.ours[fd] in ready:
                    self._copy_output(fd)
            if 0 in ready:
                self._read_stdin()
            if can_write:
                self._feed()
            if conn in ready:
                code = control.exit_message(conn)
                if code is not None:
                    self._drain()
                    return code

    def _outputs(self) -> list[int]:
        return [fd for fd in (1, 2) if fd in self.pipes.ours]

    def _read_stdin(self) -> None:
        try:
            data = os.read(0, 65536)
        except OSError:  # EIO: our terminal hung up
            data = b""
        if data:
            self.pending += data
            return
        self.reading = False  # end of input: the pipe closes once the rest is taken
        if not self.pending:
            self.pipes.close_ours(0)

    def _feed(self) -> None:
        try:
            del self.pending[: os.write(self.pipes.ours[0], self.pending)]
        except BlockingIOError:
            return
        except OSError:  # the process closed its stdin: leave ours alone from now on
            self.pending.clear()
            self.reading = False
        if not self.pending and not self.reading:
            self.pipes.close_ours(0)

    def _copy_output(self, fd: int) -> bool:
        """Copy what the pipe standing for FD has to FD; False (and closed) at its end, or when
        FD can't be written any more (the process then gets EPIPE, as it would have)."""
        try:
            data = os.read(self.pipes.ours[fd], 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if data:
            try:
                _write_all(fd, data)
                return True
            except OSError:
                pass
        self.pipes.close_ours(fd)
        return False

    def _drain(self) -> None:
        while self._outputs():
            ends = {self.pipes.ours[fd]: fd for fd in self._outputs()}
            ready = select.select(list(ends), [], [], _DRAIN_IDLE)[0]
            if not ready:
                return
            for end in ready:
                self._copy_output(ends[end])


def _noop(signum: int, frame: object) -> None:
    """Signals are handled in the loop, woken through the wakeup fd."""
