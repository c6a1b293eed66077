"""Process helpers: wait statuses in words, a forked child's signal reset, running a function
in a forked child that reports its failure through a pipe, and the runner of the configuration's
shell commands (``!`` values, INIT) with its watchdog and bounded output.

The long-lived supervisor imports this: the module itself needs only ``os`` and ``signal``;
``subprocess``, ``select`` and ``time`` are imported by the functions that run commands.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from overlay_boot.errors import SubhostError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    import subprocess

ACTION = "overlay-boot"  # 1.6.4 exported ACTION (its command's name) to everything it ran
OUTPUT_LIMIT = 1 << 20  # bytes of a command's stdout kept; the first line is what counts
STDERR_LIMIT = 4096  # bytes of its stderr kept, the end, for the message
_BLANKS = " \t\r\f\v"
_MESSAGE_MAX = 4000  # bytes of a child's failure passed back through its pipe


# ---------------------------------------------------------------------------------------------
# wait statuses


def exit_words(returncode: int) -> str:
    """An exit code as `subprocess` gives it (negative: killed by that signal), in words:
    ``exit status 3``, ``killed by signal 9 (SIGKILL)``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    number = -returncode
    try:
        return f"killed by signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"killed by signal {number}"


def wait_status_words(status: int) -> str:
    """A wait status as `os.waitpid` gives it, in words (see `exit_words`)."""
    return exit_words(os.waitstatus_to_exitcode(status))


# ---------------------------------------------------------------------------------------------
# forked children


def reset_signals() -> None:
    """In a forked child: run none of the parent's Python signal handlers and leave its
    wakeup fd alone; SIGTERM, SIGINT, SIGHUP and SIGCHLD get their default action."""
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    defaults = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
    for sig in range(1, signal.NSIG):
        try:
            if sig in defaults or callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError):  # SIGKILL, SIGSTOP, numbers libc keeps for itself
            pass


def spawn_quiet(argv: list[str], err_fd: int | None = None) -> int:
    """Start the host command ARGV (argv[0] searched in PATH) and return its PID, without a
    fork of this process (posix_spawn: no copy of its memory, no `subprocess` import): stdin and
    stdout /dev/null, stderr ERR_FD (or /dev/null), no signal blocked, and the signals Python
    ignores (SIGPIPE, SIGXFSZ) back to their default, as subprocess does. OSError when it
    cannot start."""
    null = os.devnull
    stderr = (os.POSIX_SPAWN_DUP2, 1 if err_fd is None else err_fd, 2)
    return os.posix_spawnp(
        argv[0], argv, os.environ,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
                      (os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0), stderr],
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ), setsigmask=())


def call_in_fork(func: Callable[..., object], *args: object, what: str) -> None:
    """Run FUNC(*ARGS) in a forked child and wait for it; its failure is raised here as
    SubhostError("WHAT: reason"). The child never returns into the caller's code."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(read_fd)
            reset_signals()
            func(*args)
            status = 0
        except BaseException as exc:
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, (OSError, SubhostError)):
                import traceback  # only on this error path: it costs every supervisor memory

                message = "".join(traceback.format_exception_only(exc)).strip()
            try:
                os.write(write_fd, message.encode("utf-8", "replace")[:_MESSAGE_MAX])
            except BaseException:
                pass
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        chunks = []
        while chunk := os.read(read_fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    message = b"".join(chunks).decode("utf-8", "replace")
    try:
        _, wstatus = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(wstatus)
    except ChildProcessError:  # someone else reaped it; trust the pipe
        code = 1 if message else 0
    if code != 0 or message:
        raise SubhostError(f"{what}: {message or exit_words(code)}")


def call_detached(func: Callable[..., object], *args: object) -> bool:
    """Run FUNC(*ARGS) in a grandchild, reset as `reset_signals` does, and return at once
    (the child between is reaped here, so nothing is left to wait for). FUNC must end with
    ``os._exit``; if it returns or raises, the grandchild exits. False if fork failed."""
    try:
        child = os.fork()
    except OSError:
        return False
    if child == 0:
        status = 1
        try:
            if os.fork() == 0:
                try:
                    reset_signals()
                    func(*args)
                finally:
                    os._exit(1)
            status = 0
        finally:
            os._exit(status)
    while True:
        try:
            os.waitpid(child, 0)
            return True
        except InterruptedError:
            continue
        except ChildProcessError:
            return True


# ---------------------------------------------------------------------------------------------
# the configuration's shell commands


class CommandFailed(SubhostError):
    """A command of the configuration (a `!` value, INIT) failed."""


def _tail(data: bytes, limit: int = 300) -> str:
    text = data.decode("utf-8", "replace").strip()
    if len(text) > limit:
        text = "…" + text[-limit:]
    return text.replace("\n", " | ")


def failure_text(command: str, returncode: int, err: bytes) -> str:
    """Why COMMAND failed: its exit in words and the end of its stderr."""
    detail = _tail(err)
    return (f"command {command!r} failed ({exit_words(returncode)})"
            + (f": {detail}" if detail else ""))


def run_shell(command: str, *, config: Path, cwd: str, timeout: float) -> tuple[bytes, bytes]:
    """Run COMMAND (see `run_shell_status`); raises CommandFailed on a non-zero exit."""
    out, err, returncode = run_shell_status(command, config=config, cwd=cwd, timeout=timeout)
    if returncode != 0:
        raise CommandFailed(failure_text(command, returncode, err))
    return out, err


def run_shell_status(command: str, *, config: Path, cwd: str,
                     timeout: float) -> tuple[bytes, bytes, int]:
    """Run COMMAND with ``/bin/sh -c`` (env CONFIG and ACTION=overlay-boot, cwd CWD); returns
    its stdout, stderr and exit status (negative: killed by that signal).

    The command runs in a process group of its own, killed as a whole on timeout, or by a
    watchdog when the caller dies (a ``kill -9`` of the supervisor) while it runs: the
    watchdog leads that group and is armed before the command exists, so there is no moment
    in which the command runs unwatched. What it
    leaves running in a session of its own after it has finished (a daemon, e.g. a FUSE
    mount's) is left alone, as 1.6.4 did. Output is bounded (OUTPUT_LIMIT). Raises
    CommandFailed on a timeout.
    """
    import subprocess

    env = dict(os.environ, CONFIG=str(config), ACTION=ACTION)
    watchdog = _watch_group()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=watchdog,
        )
    except OSError as e:
        _end_watchdog(watchdog)
        raise CommandFailed(f"cannot run {command!r} in {cwd}: {e.strerror or e}") from None
    try:
        out, err = _bounded_output(proc, timeout)
    except TimeoutError:
        _kill_group(proc, watchdog)
        raise CommandFailed(
            f"command {command!r} did not finish within {timeout:g} s (killed)"
        ) from None
    finally:
        _end_watchdog(watchdog)
    return out, err, proc.returncode


def run_command(command: str, *, config: Path, cwd: str, timeout: float) -> str:
    """Run a ``!`` command (see run_shell); returns the first line of its output, stripped.

    This is the runner `config.load_config` takes as ``run=``.
    """
    out, err = run_shell(command, config=config, cwd=cwd, timeout=timeout)
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandFailed(f"command {command!r} printed invalid UTF-8") from None
    first = text.split("\n", 1)[0].strip(_BLANKS)
    if "\0" in first:
        raise CommandFailed(f"command {command!r} printed a NUL byte")
    if not first:
        what = "printed an empty first line" if text.strip() else "printed nothing"
        detail = _tail(err)
        raise CommandFailed(
            f"command {command!r} {what}" + (f" (stderr: {detail})" if detail else "")
        )
    return first


def _watch_group() -> int:
    """Fork a watchdog that leads a new process group and kills that group (the command
    joins it) if this process dies first; returns its PID, the group's ID, once it is armed.

    A parent-death signal on the command alone would not reach what it started.
    """
    from overlay_boot.linux import libc

    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        try:
            armed = os.read(ready_r, 1)
        finally:
            os.close(ready_r)
        if not armed:
            _end_watchdog(pid)
            raise CommandFailed("cannot start the watchdog of a command")
        return pid
    try:
        os.close(ready_r)
        reset_signals()
        os.setpgid(0, 0)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        libc.set_pdeathsig(signal.SIGUSR1)
        if os.getppid() == parent:  # else the caller is already gone
            os.write(ready_w, b"1")
            os.close(ready_w)
            signal.sigwait({signal.SIGUSR1})
        os.killpg(0, signal.SIGKILL)
    except BaseException:  # noqa: BLE001 - a forked child must never return into the caller
        pass
    os._exit(0)


def _end_watchdog(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _bounded_output(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes]:
    """Read PROC's stdout and stderr until both close and it exits, within TIMEOUT seconds.

    Keeps the first OUTPUT_LIMIT bytes of stdout and the last STDERR_LIMIT bytes of stderr,
    discarding the rest, so a command that prints endlessly cannot fill the memory.
    """
    import select
    import subprocess
    import time

    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    while streams:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        for fd, _event in poller.poll(left * 1000):
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                del streams[fd]
            elif streams[fd] is out:
                out += chunk[: max(0, OUTPUT_LIMIT - len(out))]
            else:
                err += chunk
                del err[:-STDERR_LIMIT]
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise TimeoutError from None
    return bytes(out), bytes(err)


def _kill_group(proc: subprocess.Popen[bytes], pgid: int) -> None:
    import subprocess

    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        # Something outside the group still holds the pipes: stop waiting for it.
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()
