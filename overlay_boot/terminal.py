"""Relay the local terminal to a pty master (overlay-go's interactive shell).

The local terminal is put in raw mode so that every key — Ctrl-C, Ctrl-Z, Ctrl-D — reaches the
pty inside, whose line discipline turns it into signals for the shell's foreground job. The
terminal's settings are restored on every way out (also errors and SIGTERM/SIGHUP); window size
changes (SIGWINCH) are copied to the pty.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import termios
import tty

from . import control

_WATCHED = (signal.SIGWINCH, signal.SIGCONT, signal.SIGTERM, signal.SIGHUP, signal.SIGINT,
            signal.SIGQUIT)
_ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
_DRAIN_IDLE = 0.2  # seconds of silence on the pty after the exit message: nothing more comes
_EXIT_WAIT = 5.0  # after the pty closed: how long to wait for the exit message


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


def copy_window_size(source: int, target: int) -> None:
    try:
        fcntl.ioctl(target, termios.TIOCSWINSZ, fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass


def interactive(master: int, conn: socket.socket, stdin: int = 0, stdout: int = 1) -> int:
    """Relay STDIN → MASTER → STDOUT until the process on CONN exits; returns its status.

    Closes MASTER. SIGTERM/SIGHUP/SIGINT/SIGQUIT to us end the relay (status 128+signal): the
    process inside then loses its terminal and gets SIGHUP from the kernel.
    """
    saved = termios.tcgetattr(stdin)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_handlers = {sig: signal.signal(sig, _noop) for sig in _WATCHED}
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        tty.setraw(stdin, termios.TCSADRAIN)
        copy_window_size(stdin, master)
        return _relay(master, conn, stdin, stdout, wake_r)
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


def _relay(master: int, conn: socket.socket, stdin: int, stdout: int, wake_r: int) -> int:
    os.set_blocking(master, False)
    pending = bytearray()  # typed, not yet taken by the pty
    stdin_open = True
    while True:
        readable = [wake_r, conn, master]
        if stdin_open and len(pending) < 65536:
            readable.append(stdin)
        ready, writable, _ = select.select(readable, [master] if pending else [], [])
        if wake_r in ready:
            _signals(wake_r, stdin, master)
        if master in ready and not _copy_out(master, stdout):
            return _await_exit(conn)  # the pty closed: the shell is gone
        if stdin in ready:
            data = os.read(stdin, 65536)
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


def _signals(wake_r: int, stdin: int, master: int) -> None:
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
            raise _Ended(signum)


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
    _write_all(stdout, data)
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


def _noop(signum: int, frame: object) -> None:
    """Signals are handled in the loop, woken through the wakeup fd."""
