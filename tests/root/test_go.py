"""overlay-go on the real kernel: a shell on a real pseudo-terminal, commands with their stdio,
all started by the subhost's PID 1 through its control socket."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import select
import shlex
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leaks import REPO, command, run_command
from tests.root.subhosts import Subhost, inside, own_subhost, sub, wait_inside

__all__ = ["own_subhost", "sub"]  # fixtures

pytestmark = pytest.mark.root

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "uts")


def _env() -> dict[str, str]:
    return dict(os.environ, OVERLAY_BOOT_NO_SYSTEMD="1", PYTHONPATH=str(REPO), TERM="dumb")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


# --- a real terminal around overlay-go -----------------------------------------------------


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """overlay-go with a new pseudo-terminal as its controlling terminal; we hold the master."""

    def __init__(self, args: list[str], rows: int = 30, cols: int = 100) -> None:
        self.master, self.slave = os.openpty()
        set_size(self.slave, rows, cols)
        self.settings = termios.tcgetattr(self.slave)
        self.output = b""
        self.proc = subprocess.Popen(
            [*command("go"), *args], stdin=self.slave, stdout=self.slave, stderr=self.slave,
            start_new_session=True, preexec_fn=_take_terminal, env=_env(), cwd=str(REPO),
        )

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[bytes]:
        """Read until PATTERN (a regex) shows up; consume the output up to its end."""
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output)
            if match:
                self.output = self.output[match.end():]
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.master], [], [], remaining)[0]:
                raise AssertionError(f"{pattern!r} not seen; got {self.output[-2000:]!r}")
            try:
                self.output += os.read(self.master, 65536)
            except OSError as exc:
                raise AssertionError(f"terminal closed; got {self.output[-2000:]!r}") from exc

    def run(self, line: str, timeout: float = 10.0) -> bytes:
        """Type LINE, return its output (up to a marker echoed after it)."""
        marker = secrets.token_hex(4)
        self.send(f"{line}; echo E{marker}-$((6*7))\r")
        return self.expect(f"(?s)^(.*)E{marker}-42", timeout).group(1)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    try:
        yield opened
    finally:
        for term in opened:
            term.close()


COUNT_SLEEPS = "grep -lx sleep /proc/[0-9]*/comm 2>/dev/null | wc -l"


# --- the interactive shell -------------------------------------------------------------------


def test_interactive_shell(sub: Subhost, terminals: list[Terminal]) -> None:
    term = Terminal([sub.name], rows=30, cols=100)
    terminals.append(term)
    assert sub.name.encode() in term.run("hostname")
    # The shell is a child of the subhost's PID 1 and a login shell.
    assert b"PPid:1" in term.run("grep PPid /proc/$$/status | tr -d ' \\t'")
    assert re.search(rb"\n-\w+", term.run("echo $0"))
    # Its terminal has the size of ours, and follows when ours is resized.
    assert b"30 100" in term.run("stty size")
    set_size(term.master, 40, 120)
    term.proc.send_signal(signal.SIGWINCH)
    assert b"40 120" in term.run("stty size")
    # Ctrl-C reaches the foreground job through the pty's line discipline.
    term.send("sleep 300\r")
    wait_inside(sub, COUNT_SLEEPS, "1")
    term.send("\x03")
    # the sleep is gone: without the Ctrl-C the echo would run only after 300 s
    assert b"N0N" in term.run(f"echo N$({COUNT_SLEEPS})N", timeout=60)
    # Ctrl-Z stops it: job control works.
    term.send("sleep 31\r")
    wait_inside(sub, COUNT_SLEEPS, "1")
    term.send("\x1a")
    assert b"Stopped" in term.run("jobs")
    term.run("kill -9 %1")
    wait_inside(sub, COUNT_SLEEPS, "0")
    # exit N is overlay-go's status; our terminal is as it was.
    term.send("exit 5\r")
    assert term.wait() == 5
    assert termios.tcgetattr(term.slave) == term.settings


def test_terminal_restored_when_overlay_go_is_terminated(
    sub: Subhost, terminals: list[Terminal]
) -> None:
    term = Terminal([sub.name])
    terminals.append(term)
    shell = int(re.search(rb"P(\d+)P", term.run("echo P$$P")).group(1))
    assert termios.tcgetattr(term.slave) != term.settings  # raw while it runs
    term.proc.send_signal(signal.SIGTERM)
    assert term.wait() == 128 + signal.SIGTERM
    assert termios.tcgetattr(term.slave) == term.settings
    # The shell lost its terminal (SIGHUP) and went.
    wait_inside(sub, f"test -e /proc/{shell} && echo running || echo gone", "gone")


def test_shell_without_a_terminal(sub: Subhost) -> None:
    result = run_command("go", sub.name, input="hostname\necho $0\nexit 3\n")
    assert result.returncode == 3, result.stderr
    name, arg0 = result.stdout.split()
    assert name == sub.name
    assert arg0.startswith("-")


# --- commands -----------------------------------------------------------------------------


def test_command_stdio_and_exit_status(sub: Subhost) -> None:
    result = run_command("go", sub.name, "--", "cat", input="passed\nthrough\n")
    assert (result.returncode, result.stdout) == (0, "passed\nthrough\n")
    result = run_command("go", sub.name, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    result = run_command("go", sub.name, "--", "sh", "-c", "kill -TERM $$")
    assert result.returncode == 128 + signal.SIGTERM
    result = run_command("go", sub.name, "--", "sh", "-c", "kill -KILL $$")
    assert result.returncode == 128 + signal.SIGKILL
    result = run_command("go", sub.name, "--", f"no-such-command-{sub.name}")
    assert result.returncode == 127
    assert "cannot run" in result.stderr and "No such file" in result.stderr
    # The environment: root's, a sane PATH, the caller's TERM, nothing else of ours.
    result = run_command("go", sub.name, "--", "env", env={"TERM": "vt220", "SECRET": "x"})
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert env["TERM"] == "vt220" and env["HOME"] == "/root" and env["USER"] == "root"
    assert "/usr/bin" in env["PATH"] and "SECRET" not in env
    assert inside(sub, "pwd").strip() == "/root"
    # Started in the directory asked for; PID 1 itself stays in "/".
    cwd, root = (os.stat(f"/proc/{sub.leader}/{link}") for link in ("cwd", "root"))
    assert (cwd.st_dev, cwd.st_ino) == (root.st_dev, root.st_ino)
    # Nothing of PID 1's signal state is inherited: no signal ignored or blocked (but the C
    # library's own, between 31 and SIGRTMIN: posix_spawn leaves them ignored).
    status = dict(line.split(":\t", 1) for line in inside(sub, "cat /proc/self/status")
                  .splitlines() if line.startswith(("SigIgn", "SigBlk")))
    ignored = {n for n in range(1, 65) if int(status["SigIgn"], 16) >> (n - 1) & 1}
    assert ignored - set(range(32, signal.SIGRTMIN)) == set(), status
    assert int(status["SigBlk"], 16) == 0, status
    # A file that is not executable: 126, as a shell says.
    plain = f"/tmp/plain-{sub.name}"
    inside(sub, f"echo echo run > {plain}; chmod 644 {plain}")
    result = run_command("go", sub.name, "--", plain)
    assert result.returncode == 126 and "Permission denied" in result.stderr, result.stderr


# Loaded by `overlay-go NAME -- CMD` they were most of its time (issue #13: its budget).
HEAVY_FOR_GO = ("dataclasses", "inspect", "pathlib", "typing", "subprocess", "argparse",
                "ctypes", "ipaddress", "tty", "termios", "json", "re", "overlay_boot.state",
                "overlay_boot.config", "overlay_boot.terminal")


def test_command_run_loads_only_light_modules(sub: Subhost) -> None:
    """`overlay-go NAME -- true` run as installed (`python3 -IS`), its modules listed at exit."""
    code = (f"import sys; sys.path.append({str(REPO)!r})\n"
            "from overlay_boot.cli.go import main\n"
            f"status = main([{sub.name!r}, '--', 'true'])\n"
            "print(status, ' '.join(sorted(sys.modules)))\n")
    result = subprocess.run(["/usr/bin/python3", "-IS", "-c", code], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, cwd="/", timeout=60)
    status, _, listed = result.stdout.partition(" ")
    assert (result.returncode, status, result.stderr) == (0, "0", "")
    modules = set(listed.split())
    assert "overlay_boot.control" in modules
    assert not modules & set(HEAVY_FOR_GO), sorted(modules & set(HEAVY_FOR_GO))


def test_command_is_a_child_of_pid1_in_its_namespaces(sub: Subhost) -> None:
    proc = subprocess.Popen([*command("go"), sub.name, "--", "sleep", "60"], env=_env(),
                            cwd=str(REPO), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        while not (children := _children(sub.leader, "sleep")):
            assert time.monotonic() < deadline, "the sleep did not start"
            time.sleep(0.05)
        (pid,) = children
        for ns in NAMESPACES:
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(
                f"/proc/{sub.leader}/ns/{ns}"), ns
        assert _read(Path(f"/proc/{pid}/cgroup")) == _read(Path(f"/proc/{sub.leader}/cgroup"))
        # Inside, its parent is PID 1; it leads its own session.
        status = _read(Path(f"/proc/{pid}/status"))
        assert re.search(r"^NSpid:\s+\d+\s+(\d+)$", status, re.M)
        stat = _read(Path(f"/proc/{pid}/stat")).rsplit(")", 1)[1].split()
        assert int(stat[1]) == sub.leader  # ppid, as the host sees it
        assert int(stat[3]) == int(stat[2])  # session id == its group: a session of its own
        # A signal to overlay-go reaches the command.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 128 + signal.SIGTERM
        assert not _children(sub.leader, "sleep")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(parent: int, comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1: stat.rindex(")")]
            if name == comm and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


# --- our terminal never crosses into the subhost ----------------------------------------------

# Run inside: tries TIOCSTI on each of its stdio fds, and reports what they are.
PROBE = r"""
import fcntl, json, os, sys, termios
marker = sys.argv[1]
report = {"pts": os.stat("/dev/pts/ptmx").st_dev}
for fd in (0, 1, 2):
    st = os.fstat(fd)
    report[fd] = {"tty": os.isatty(fd), "target": os.readlink(f"/proc/self/fd/{fd}"),
                  "dev": st.st_dev, "rdev": st.st_rdev}
    try:
        for c in marker + "\n":
            fcntl.ioctl(fd, termios.TIOCSTI, c.encode())
        report[fd]["injected"] = True
    except OSError as exc:
        report[fd]["injected"] = exc.errno
if len(sys.argv) > 2:
    sys.stdout.write(sys.stdin.read())
sys.stderr.write("PROBE" + json.dumps(report) + "END\n")
sys.exit(7)
"""


def _report(text: str | bytes) -> dict:
    raw = text if isinstance(text, str) else text.decode(errors="replace")
    match = re.search(r"PROBE(\{.*\})END", raw.replace("\r", ""))
    assert match, raw
    data = json.loads(match.group(1))
    return {int(k) if k.isdigit() else k: v for k, v in data.items()}


def _pending_input(fd: int) -> bytes:
    """What is waiting to be read on the terminal FD (a slave): typed, or injected."""
    os.set_blocking(fd, False)
    got = b""
    try:
        while select.select([fd], [], [], 0.3)[0]:
            got += os.read(fd, 4096)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    return got


def _slave_of_subhost(report: dict, fd: int, host_slave: int) -> None:
    """FD (inside) is a pty slave of the subhost's own devpts, not our terminal."""
    entry = report[fd]
    assert entry["tty"], entry
    assert os.major(entry["rdev"]) in range(136, 144), entry  # UNIX98 pty slaves
    assert entry["dev"] == report["pts"], entry
    assert entry["target"].startswith("/dev/pts/"), entry
    host = os.fstat(host_slave)
    assert (entry["dev"], entry["rdev"]) != (host.st_dev, host.st_rdev)


def test_command_on_a_terminal_gets_a_terminal_inside(
    sub: Subhost, terminals: list[Terminal]
) -> None:
    """H5: overlay-go NAME -- CMD on a terminal: CMD gets a pty of the subhost, ours is
    relayed; what it injects with TIOCSTI stays inside."""
    marker = f"INJECTED-{secrets.token_hex(4)}"
    term = Terminal([sub.name, "--", "python3", "-c", PROBE, marker], rows=33, cols=101)
    terminals.append(term)
    report = _report(term.expect(r"PROBE\{.*\}END").group(0))
    assert term.wait() == 7
    assert report[0]["injected"] is True  # it could: into its own terminal, inside
    assert marker.encode() not in _pending_input(term.slave)
    for fd in (0, 1, 2):
        _slave_of_subhost(report, fd, term.slave)
    assert termios.tcgetattr(term.slave) == term.settings


def test_command_on_a_terminal_size_signals_and_status(
    sub: Subhost, terminals: list[Terminal]
) -> None:
    term = Terminal([sub.name, "--", "sh", "-c", "stty size; read line; echo got:$line; exit 4"],
                    rows=27, cols=91)
    terminals.append(term)
    term.expect("27 91")
    term.send("typed\r")
    term.expect("got:typed")
    assert term.wait() == 4
    assert termios.tcgetattr(term.slave) == term.settings
    # Ctrl-C goes through the pty inside; signals sent to overlay-go are passed on.
    term = Terminal([sub.name, "--", "sleep", "60"])
    terminals.append(term)
    wait_inside(sub, COUNT_SLEEPS, "1")
    term.send("\x03")
    assert term.wait() == 128 + signal.SIGINT
    term = Terminal([sub.name, "--", "sleep", "61"])
    terminals.append(term)
    wait_inside(sub, COUNT_SLEEPS, "1")
    term.proc.send_signal(signal.SIGTERM)
    assert term.wait() == 128 + signal.SIGTERM
    assert termios.tcgetattr(term.slave) == term.settings
    wait_inside(sub, COUNT_SLEEPS, "0")


def test_terminal_stderr_is_relayed_through_a_pipe(sub: Subhost, tmp_path: Path) -> None:
    """Only stderr is a terminal: the command gets a pipe for it (relayed), stdin and stdout
    as they are: binary data passes unchanged."""
    master, slave = os.openpty()
    data = bytes(range(256)) * 64
    source, out = tmp_path / "in", tmp_path / "out"
    source.write_bytes(data)
    marker = f"INJECTED-{secrets.token_hex(4)}"
    try:
        with source.open("rb") as stdin, out.open("wb") as stdout:
            proc = subprocess.Popen([*command("go"), sub.name, "--", "python3", "-c", PROBE,
                                     marker, "copy"], stdin=stdin, stdout=stdout, stderr=slave,
                                    env=_env(), cwd=str(REPO), start_new_session=True)
            assert proc.wait(timeout=30) == 7
        seen = b""
        while select.select([master], [], [], 0.5)[0]:
            seen += os.read(master, 65536)
        report = _report(seen)
        assert report[2]["tty"] is False and report[2]["target"].startswith("pipe:"), report
        assert report[2]["injected"] == errno.ENOTTY
        assert not report[0]["tty"] and not report[1]["tty"]
        assert out.read_bytes() == data
        assert marker.encode() not in _pending_input(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_terminal_stdin_is_relayed_through_a_pipe(sub: Subhost, terminals: list[Terminal],
                                                  tmp_path: Path) -> None:
    """stdin is our terminal, stdout a file: the command reads our lines through a pipe, up to
    Ctrl-D; it cannot inject into our terminal."""
    out = tmp_path / "out"
    marker = f"INJECTED-{secrets.token_hex(4)}"
    master, slave = os.openpty()
    try:
        with out.open("wb") as stdout:
            proc = subprocess.Popen([*command("go"), sub.name, "--", "python3", "-c", PROBE,
                                     marker, "copy"], stdin=slave, stdout=stdout,
                                    stderr=stdout, env=_env(), cwd=str(REPO),
                                    start_new_session=True, preexec_fn=_take_terminal)
            try:
                os.write(master, b"first line\nsecond line\n")
                os.write(master, b"\x04")  # end of input
                assert proc.wait(timeout=30) == 7
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        text = out.read_text()
        assert "first line\nsecond line\n" in text, text
        report = _report(text)
        assert report[0]["tty"] is False and report[0]["target"].startswith("pipe:"), report
        assert report[0]["injected"] == errno.ENOTTY
        assert marker.encode() not in _pending_input(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_background_job_on_a_terminal_is_not_stopped(sub: Subhost) -> None:
    """overlay-go NAME -- CMD & from an interactive shell: no raw mode (which would stop it,
    SIGTTOU) nor reading the terminal (SIGTTIN); the terminal is still not handed over."""
    master, slave = os.openpty()
    go = " ".join(shlex.quote(a) for a in command("go"))
    script = (f"{go} {sub.name} -- sh -c 'readlink /proc/self/fd/0 /proc/self/fd/1' & "
              "echo pid=$!; wait $!; echo rc=$?")
    proc = subprocess.Popen(["bash", "-m", "-c", script], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, preexec_fn=_take_terminal,
                            env=_env(), cwd=str(REPO))
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while b"rc=" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        assert re.search(rb"rc=0\b", seen), seen
        assert seen.count(b"pipe:") == 2, seen
    finally:
        match = re.search(rb"pid=(\d+)", seen)
        if match and b"rc=" not in seen:  # overlay-go stopped, or still running: end it
            os.kill(int(match.group(1)), signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)


def test_login_shell_without_terminal_input_relays_its_output(sub: Subhost) -> None:
    """overlay-go NAME with commands piped in and output on a terminal: the output comes
    through a pipe of ours, the terminal stays outside."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([*command("go"), sub.name], stdin=subprocess.PIPE,
                                stdout=slave, stderr=slave, env=_env(), cwd=str(REPO),
                                start_new_session=True)
        proc.communicate(b"readlink /proc/self/fd/1; test -t 1 || echo not-a-tty; exit 6\n",
                         timeout=30)
        assert proc.returncode == 6
        seen = b""
        while select.select([master], [], [], 0.5)[0]:
            seen += os.read(master, 65536)
        assert b"pipe:" in seen and b"not-a-tty" in seen, seen
    finally:
        os.close(master)
        os.close(slave)


# --- refusals ------------------------------------------------------------------------------


def test_non_root_is_refused(sub: Subhost) -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result = subprocess.run([*nobody, *command("go"), sub.name, "--", "true"], env=_env(),
                            cwd="/", capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "root" in result.stderr
    ctl = Path(f"/run/overlay-boot/{sub.name}.ctl")
    assert ctl.stat().st_mode & 0o777 == 0o600
    probe = (
        "import sys\n"
        "from overlay_boot import control\n"
        "try:\n"
        f"    control.run({sub.name!r}, ['true'])\n"
        "except control.SubhostError as exc:\n"
        "    print(exc); sys.exit(1)\n"
    )
    # The socket's mode keeps others out…
    result = subprocess.run([*nobody, "/usr/bin/python3", "-c", probe], env=_env(), cwd="/",
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "cannot reach" in result.stdout and "Permission denied" in result.stdout
    # …and PID 1 checks the peer's uid as well (the directory, root's alone, opened up too).
    ctl.chmod(0o666)
    ctl.parent.chmod(0o711)
    try:
        result = subprocess.run([*nobody, "/usr/bin/python3", "-c", probe], env=_env(),
                                cwd="/", capture_output=True, text=True, timeout=30)
    finally:
        ctl.parent.chmod(0o700)
        ctl.chmod(0o600)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "permission denied: only root" in result.stdout


def test_subhost_not_running(tmp_path: Path) -> None:
    name = "t" + secrets.token_hex(3)
    for args in ([name, "--", "true"], [name]):
        result = run_command("go", *args, input="")
        assert result.returncode == 1
        assert f"subhost {name} is not running" in result.stderr


def test_list(sub: Subhost) -> None:
    result = run_command("go")
    assert result.returncode == 0
    line = next(li for li in result.stdout.splitlines() if li.startswith(sub.name + " "))
    assert line.split()[1:3] == ["running", str(sub.leader)]


def test_stop_ends_the_commands_it_started(
    own_subhost: Subhost, terminals: list[Terminal]
) -> None:
    term = Terminal([own_subhost.name])  # an interactive shell ignores SIGTERM
    terminals.append(term)
    term.run("true")
    proc = subprocess.Popen([*command("go"), own_subhost.name, "--", "sleep", "300"],
                            env=_env(), cwd=str(REPO))
    try:
        deadline = time.monotonic() + 5
        while not _children(own_subhost.leader, "sleep"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert run_command("stop", own_subhost.name).returncode == 0
        # PID 1 hangs them up (SIGHUP) with the TERM: they end by SIGHUP, not by the SIGKILL
        # after the grace period (how fast: make bench)
        assert proc.wait(timeout=10) == 128 + signal.SIGHUP
        assert term.wait() == 128 + signal.SIGHUP
        assert termios.tcgetattr(term.slave) == term.settings
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_control_socket_is_refused(own_subhost: Subhost, tmp_path: Path) -> None:
    """No control socket: a clear error, and nothing enters the namespaces of a PID taken from
    a record (it may be stale, and its PID reused)."""
    ctl = Path(f"/run/overlay-boot/{own_subhost.name}.ctl")
    saved = tmp_path / "ctl"
    ctl.rename(saved)
    marker = f"/tmp/entered-{secrets.token_hex(4)}"
    try:
        result = run_command("go", own_subhost.name, "--", "touch", marker)
        shell = run_command("go", own_subhost.name, input=f"touch {marker}\n")
    finally:
        saved.rename(ctl)
    for outcome in (result, shell):
        assert outcome.returncode == 1, outcome.stderr
        assert f"subhost {own_subhost.name} runs but has no control socket" in outcome.stderr
        assert "cannot be entered" in outcome.stderr
    assert inside(own_subhost, f"test -e {marker} && echo entered || echo no") == "no\n"


def test_cleanup_removes_a_stale_control_socket() -> None:
    name = "t" + secrets.token_hex(3)
    ctl = Path(f"/run/overlay-boot/{name}.ctl")
    ctl.parent.mkdir(parents=True, exist_ok=True)
    ctl.touch()
    try:
        result = run_command("stop", "--cleanup", name)
        assert result.returncode == 0, result.stderr
        assert not ctl.exists()
    finally:
        ctl.unlink(missing_ok=True)
