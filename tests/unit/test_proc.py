"""The process helpers (overlay_boot.proc): words for wait statuses, forked children."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from overlay_boot import proc
from overlay_boot.errors import SubhostError


def test_exit_words() -> None:
    assert proc.exit_words(0) == "exit status 0"
    assert proc.exit_words(3) == "exit status 3"
    assert proc.exit_words(-9) == "killed by signal 9 (SIGKILL)"
    assert proc.exit_words(-200) == "killed by signal 200"


def test_wait_status_words_of_real_children() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    assert proc.wait_status_words(os.waitpid(pid, 0)[1]) == "exit status 7"
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)
    assert proc.wait_status_words(os.waitpid(pid, 0)[1]) == "killed by signal 15 (SIGTERM)"


def test_failure_text_names_the_command_its_exit_and_its_stderr() -> None:
    text = proc.failure_text("false", 1, b"first\nlast\n")
    assert text == "command 'false' failed (exit status 1): first | last"
    assert proc.failure_text("x", -9, b"") == "command 'x' failed (killed by signal 9 (SIGKILL))"


def test_call_in_fork_runs_the_function_in_a_child(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    proc.call_in_fork(lambda: marker.write_text(str(os.getpid())), what="writing")
    assert int(marker.read_text()) != os.getpid()


def test_call_in_fork_reports_the_childs_failure() -> None:
    def fails() -> None:
        raise OSError(2, "no such thing")

    with pytest.raises(SubhostError, match=r"^doing it: \[Errno 2\] no such thing$"):
        proc.call_in_fork(fails, what="doing it")
    with pytest.raises(SubhostError, match=r"^dying: killed by signal 9 \(SIGKILL\)$"):
        proc.call_in_fork(lambda: os.kill(os.getpid(), signal.SIGKILL), what="dying")


def test_a_forked_child_runs_none_of_the_parents_handlers(tmp_path: Path) -> None:
    """The parent's Python handler for SIGTERM is not run in the child: SIGTERM kills it."""
    marker = tmp_path / "handled"
    previous = signal.signal(signal.SIGTERM, lambda *_: marker.write_text("parent's handler"))
    try:
        with pytest.raises(SubhostError, match="killed by signal 15"):
            proc.call_in_fork(lambda: os.kill(os.getpid(), signal.SIGTERM), what="terminated")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not marker.exists()


def test_call_detached_runs_in_a_grandchild_and_returns_at_once(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()

    def report() -> None:
        os.write(write_fd, f"{os.getpid()} {os.getppid()}".encode())
        os._exit(0)

    try:
        assert proc.call_detached(report)
        os.close(write_fd)
        write_fd = -1
        pid, parent = map(int, os.read(read_fd, 100).split())
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    assert pid != os.getpid() and parent != os.getpid()  # its parent was the child between


def test_spawn_quiet_gives_a_command_null_stdio_its_stderr_and_default_signals() -> None:
    """A real child: stdin reads nothing, stdout goes nowhere, stderr to the fd given (else
    nowhere), and SIGPIPE, which Python ignores, is back to its default."""
    script = ("read -r line && echo got-input >&2; echo out; echo err >&2; "
              "grep SigIgn /proc/$$/status >&2")
    read_fd, write_fd = os.pipe()
    try:
        pid = proc.spawn_quiet(["sh", "-c", script], err_fd=write_fd)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd) as err:
        text = err.read()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    lines = text.splitlines()
    assert lines[0] == "err" and "got-input" not in text and "out" not in lines
    ignored = int(lines[1].split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))
    quiet = proc.spawn_quiet(["sh", "-c", "echo nowhere >&2; exit 3"])
    assert os.waitstatus_to_exitcode(os.waitpid(quiet, 0)[1]) == 3
    with pytest.raises(OSError):
        proc.spawn_quiet(["/nonexistent/command"])
