"""PID 1 (overlay_boot.linux.init) as PID 1 of real PID namespaces.

Each test starts ``python -m tests.init_main`` (init on its own) under util-linux
``unshare --pid --fork --mount-proc --kill-child`` with service scripts written here, talks to it
through the status pipe and signals, and reads the namespace's processes from the host's /proc.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SIGPOWEROFF = signal.SIGRTMIN + 4


class Subhost:
    """One init running as PID 1 of a new PID (and mount) namespace."""

    def __init__(
        self,
        tmp: Path,
        start: str = "",
        *,
        script: str | None = None,
        grace: float = 5.0,
        stop_timeout: float = 30.0,
        setup: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.stderr_path = tmp / "init.stderr"
        argv = [sys.executable, "-m", "tests.init_main", "--name", "t" + tmp.name[-6:]]
        argv += ["--start", start, "--grace", str(grace), "--stop-timeout", str(stop_timeout)]
        if script is not None:
            script_path = tmp / "init-script"
            script_path.write_text(script)
            argv += ["--script", str(script_path)]
        self.status_r, status_w = os.pipe()
        argv += ["--status-fd", str(status_w)]
        if setup:  # commands run inside the new mount namespace before init takes over
            argv = ["/bin/sh", "-ec", setup + '\nexec "$@"', "sh", *argv]
        self.buffer = b""
        self.services: list[str] = []  # the SERVICE lines, which read_status() passes over
        self.pid1: int | None = None
        child_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv],
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(status_w,),
                env=child_env,
            )
        os.close(status_w)
        deadline = time.monotonic() + 10
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while self.pid1 is None and time.monotonic() < deadline:
            pids = children.read_text().split() if children.exists() else []
            self.pid1 = int(pids[0]) if pids else None
            if self.pid1 is None:
                time.sleep(0.01)
        assert self.pid1, "PID 1 did not appear"

    def read_status(self, timeout: float = 15.0) -> str | None:
        """The next status line but SERVICE lines (kept in ``services``); None at EOF."""
        while (line := self._read_line(timeout)) is not None and line.startswith("SERVICE "):
            self.services.append(line)
        return line

    def _read_line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no status line; stderr:\n{self.stderr()}"
            ready, _, _ = select.select([self.status_r], [], [], remaining)
            if ready:
                chunk = os.read(self.status_r, 4096)
                if not chunk:
                    return None
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def until_ready(self) -> list[str]:
        lines = []
        while (line := self.read_status()) != "READY":
            assert line is not None, f"EOF before READY; stderr:\n{self.stderr()}"
            lines.append(line)
        return lines

    def kill(self, sig: int) -> None:
        assert self.pid1
        os.kill(self.pid1, sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def processes(self) -> list[tuple[int, int, str, str]]:
        """(pid, ppid, state, cmdline) of every process of the namespace but PID 1, host PIDs."""
        assert self.pid1
        ns = os.readlink(f"/proc/{self.pid1}/ns/pid")
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pid1:
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                    continue
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            found.append((int(entry), int(fields[1]), fields[0], cmd.strip()))
        return found

    def close(self) -> None:
        """Kill what is left (by PID: PID 1 takes its namespace with it), close the pipe."""
        if self.proc.poll() is None:
            if self.pid1:
                try:
                    os.kill(self.pid1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.close(self.status_r)


@pytest.fixture
def subhost(tmp_path: Path) -> Iterator:
    started: list[Subhost] = []

    def start(*args, **kwargs) -> Subhost:
        s = Subhost(tmp_path, *args, **kwargs)
        started.append(s)
        return s

    try:
        yield start
    finally:
        for s in started:
            s.close()


def service(
    tmp: Path,
    name: str,
    *,
    start: str = "",
    stop: str = "",
    code: int = 0,
    directory: Path | None = None,
) -> Path:
    """A service script appending ``start NAME``/``stop NAME`` to tmp/log, with a daemon."""
    path = (directory or tmp) / name
    path.write_text(
        f"""#!/bin/sh
case "$1" in
start)
    echo "start {name}" >> {tmp}/log
    {start or ":"}
    setsid sleep 1000 </dev/null >/dev/null 2>&1 &
    echo $! > {tmp}/{name}.pid
    echo "hello from {name}"
    echo "started {name}" >> {tmp}/log
    exit {code}
    ;;
stop)
    echo "stop {name}" >> {tmp}/log
    {stop or ":"}
    kill $(cat {tmp}/{name}.pid)
    echo "bye from {name}"
    ;;
esac
"""
    )
    path.chmod(0o755)
    return path


def eventually(check, timeout: float = 5.0) -> None:
    """Poll ``check()`` until it holds (forked children take a moment to exec)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def commands(s: Subhost) -> list[str]:
    return sorted(p[3] for p in s.processes())


def log_lines(tmp: Path) -> list[str]:
    path = tmp / "log"
    return path.read_text().splitlines() if path.exists() else []


def test_start_order_ready_relay_and_reverse_stop(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a")
    b = service(tmp_path, "b", start="sleep 0.5")
    c = service(tmp_path, "c")
    s = subhost(f"{a} {b} {c}")
    assert s.until_ready() == [
        f"STATUS starting {a}",
        f"STATUS starting {b}",
        f"STATUS starting {c}",
    ]
    # READY only once the last start command returned
    assert log_lines(tmp_path) == [
        "start a", "started a", "start b", "started b", "start c", "started c",
    ]  # fmt: skip
    eventually(lambda: commands(s) == ["sleep 1000"] * 3)
    daemons = s.processes()
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    assert log_lines(tmp_path)[6:] == ["stop c", "stop b", "stop a"]
    err = s.stderr()
    for name, path in (("a", a), ("b", b), ("c", c)):
        assert f"{path}: hello from {name}\n" in err
        assert f"{path}: bye from {name}\n" in err
        assert f"{path}: stop: done" in err
    for pid, *_ in daemons:
        assert not Path(f"/proc/{pid}").exists()


def test_failing_start_is_logged_and_next_still_tried(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a", code=3)
    b = service(tmp_path, "b", start="kill -9 $$")
    missing = tmp_path / "missing"
    c = service(tmp_path, "c")
    s = subhost(f"{a} {b} {missing} {c}")
    s.until_ready()
    assert [line for line in log_lines(tmp_path) if line.startswith("start ")] == [
        "start a",
        "start b",
        "start c",
    ]
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    err = s.stderr()
    assert f"{a}: start failed: exit status 3" in err
    assert f"{b}: start failed: killed by SIGKILL" in err
    assert f"{missing}: cannot run {missing} start: No such file or directory" in err
    assert f"{c}: start: done" in err


def test_environment_session_and_stdin(subhost, tmp_path: Path) -> None:
    probe = service(
        tmp_path,
        "probe",
        start=(
            f"env > {tmp_path}/env; readlink /proc/self/fd/0 > {tmp_path}/stdin; "
            f"echo $$ $(cut -d' ' -f6 /proc/$$/stat) > {tmp_path}/session"
        ),
    )
    s = subhost(str(probe), env={"NOTIFY_SOCKET": "/run/x", "TERM": "xterm-test", "FOO": "1"})
    s.until_ready()
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["TERM"] == "xterm-test"
    assert "NOTIFY_SOCKET" not in env and "FOO" not in env
    assert (tmp_path / "stdin").read_text().strip() == "/dev/null"
    pid, sid = (tmp_path / "session").read_text().split()
    assert pid == sid  # its own session
    s.kill(signal.SIGTERM)
    assert s.wait() == 0


def test_daemon_keeping_the_pipe_open_does_not_block(subhost, tmp_path: Path) -> None:
    """The daemon writes its line only once the test saw READY: READY did not wait for it."""
    go = tmp_path / "go"
    chatty = service(tmp_path, "chatty",
                     start=f"(while [ ! -e {go} ]; do sleep 0.05; done; echo late line; "
                           "sleep 1000) &")
    after = service(tmp_path, "after")
    s = subhost(f"{chatty} {after}")
    s.until_ready()
    assert f"{chatty}: late line" not in s.stderr()
    go.touch()
    deadline = time.monotonic() + 5
    while f"{chatty}: late line" not in s.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"{chatty}: late line" in s.stderr()
    s.kill(signal.SIGTERM)
    assert s.wait() == 0


def test_orphans_are_reaped(subhost, tmp_path: Path) -> None:
    forks = "for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.3 &); (setsid sh -c 'sleep 0.2' &); done"
    orphans = service(tmp_path, "orphans", start=forks)
    s = subhost(str(orphans))
    s.until_ready()
    assert any(p[1] == s.pid1 and p[3] == "sleep 0.3" for p in s.processes())
    time.sleep(1.0)
    left = s.processes()
    assert [p for p in left if p[2] == "Z"] == []
    assert sorted(p[3] for p in left) == ["sleep 1000"]
    s.kill(signal.SIGTERM)
    assert s.wait() == 0


def test_term_ignoring_daemon_is_killed_after_grace(subhost, tmp_path: Path) -> None:
    stubborn = service(
        tmp_path,
        "stubborn",
        start=(
            f"setsid sh -c 'trap \"\" TERM; touch {tmp_path}/trapped; while :; do sleep 0.1; done' "
            "</dev/null >/dev/null 2>&1 &"
        ),
    )
    s = subhost(str(stubborn), grace=1.0)
    s.until_ready()
    # The daemon ignores SIGTERM only once its trap is set: wait for that, not just READY.
    deadline = time.monotonic() + 5
    while not (tmp_path / "trapped").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    assert time.monotonic() - t0 >= 1.0  # not before the grace period (how long: make bench)
    assert "sending SIGKILL" in s.stderr()


def test_everything_gone_quickly_without_stragglers(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a")
    s = subhost(str(a), grace=60.0)
    s.until_ready()
    t0 = time.monotonic()
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    # nothing left after stop: the (long) grace period was not waited (how fast: make bench)
    assert time.monotonic() - t0 < 60.0
    assert "SIGKILL" not in s.stderr()


def test_stop_timeout_kills_a_hanging_stop(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a")
    hang = service(tmp_path, "hang", stop="sleep 100")
    s = subhost(f"{a} {hang}", stop_timeout=1.0, grace=1.0)
    s.until_ready()
    t0 = time.monotonic()
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    # the stop timeout, not the hanging `sleep 100` (how long exactly: make bench)
    assert 1.0 <= time.monotonic() - t0 < 100
    assert log_lines(tmp_path)[4:] == ["stop hang", "stop a"]
    assert f"{hang}: stop timed out, killed" in s.stderr()
    assert f"{a}: stop: done" in s.stderr()


def test_second_sigterm_during_stop_is_ignored(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a")
    slow = service(tmp_path, "slow", stop="sleep 1")
    s = subhost(f"{a} {slow}")
    s.until_ready()
    s.kill(signal.SIGTERM)
    time.sleep(0.3)
    s.kill(signal.SIGTERM)
    s.kill(signal.SIGINT)
    assert s.wait() == 0
    assert log_lines(tmp_path)[4:] == ["stop slow", "stop a"]
    assert f"{slow}: stop: done" in s.stderr()


def test_service_states_reach_the_status_pipe(subhost, tmp_path: Path) -> None:
    good = service(tmp_path, "good")
    bad = service(tmp_path, "bad", code=3)
    s = subhost(f"{good} {bad}")
    s.until_ready()
    assert s.services == [
        f"SERVICE {good} starting", f"SERVICE {good} started",
        f"SERVICE {bad} starting", f"SERVICE {bad} failed",
    ]  # fmt: skip
    s.kill(signal.SIGTERM)
    while s.read_status() is not None:
        pass
    assert s.wait() == 0
    assert s.services[4:] == [
        f"SERVICE {bad} stopping", f"SERVICE {bad} stopped",
        f"SERVICE {good} stopping", f"SERVICE {good} stopped",
    ]  # fmt: skip


def test_sigterm_during_start_stops_what_was_started(subhost, tmp_path: Path) -> None:
    slow = service(tmp_path, "slow", start="sleep 1")
    never = service(tmp_path, "never")
    s = subhost(f"{slow} {never}")
    assert s.read_status() == f"STATUS starting {slow}"
    time.sleep(0.3)
    s.kill(signal.SIGTERM)
    assert s.read_status() == f"STATUS stopping {slow}"  # no READY, "never" not started
    assert s.wait() == 0
    # The start command still running gets SIGTERM at once (as systemd does to a starting
    # service), so it never gets to "started"; what was tried is stopped.
    assert log_lines(tmp_path) == ["start slow", "stop slow"]


def test_poweroff_signal_stops(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a")
    s = subhost(str(a))
    s.until_ready()
    s.kill(SIGPOWEROFF)
    assert s.wait() == 0
    assert log_lines(tmp_path)[-1] == "stop a"


def test_nothing_to_start_stays_up_without_a_dummy(subhost, tmp_path: Path) -> None:
    s = subhost("", grace=60.0)
    assert s.until_ready() == []
    time.sleep(0.3)
    assert s.proc.poll() is None
    assert s.processes() == []  # no dummy process
    t0 = time.monotonic()
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    assert time.monotonic() - t0 < 60.0  # nothing to wait for: not the grace period


def test_init_override_script_runs_instead_of_start(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a")
    script = (
        f"echo 'init ran' >> {tmp_path}/log\n"
        "setsid sleep 1000 </dev/null >/dev/null 2>&1 &\n"
        "echo from the init script\n"
    )
    s = subhost(str(a), script=script)
    s.until_ready()
    assert log_lines(tmp_path) == ["init ran"]
    eventually(lambda: commands(s) == ["sleep 1000"])
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    assert log_lines(tmp_path) == ["init ran"]  # no START stop either
    assert "init: from the init script" in s.stderr()


def test_sigint_restarts_the_services(subhost, tmp_path: Path) -> None:
    a = service(tmp_path, "a")
    b = service(tmp_path, "b")
    s = subhost(f"{a} {b}", grace=1.0)
    s.until_ready()
    # a straggler that no stop command ends: the reboot's TERM phase ends it
    straggler = tmp_path / "straggler"
    straggler.write_text("#!/bin/sh\nsetsid sleep 1001 </dev/null >/dev/null 2>&1 &\n")
    straggler.chmod(0o755)
    subprocess.run(["nsenter", "-t", str(s.pid1), "-p", "-m", str(straggler)], check=True)
    eventually(lambda: commands(s) == ["sleep 1000", "sleep 1000", "sleep 1001"])
    s.kill(signal.SIGINT)
    assert s.until_ready() == [
        f"STATUS stopping {b}",
        f"STATUS stopping {a}",
        "STATUS stopping remaining processes",
        f"STATUS starting {a}",
        f"STATUS starting {b}",
    ]
    assert [line for line in log_lines(tmp_path) if not line.startswith("started")] == [
        "start a", "start b", "stop b", "stop a", "start a", "start b",
    ]  # fmt: skip
    eventually(lambda: commands(s) == ["sleep 1000", "sleep 1000"])
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    assert log_lines(tmp_path)[-2:] == ["stop b", "stop a"]


def _hide_service_command() -> str:
    """Shell lines hiding every ``service`` on the sane PATH (inside the mount namespace)."""
    return (
        "for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do\n"
        "  if [ -e $d/service ]; then mount --bind /dev/null $d/service; fi\n"
        "done\n"
    )


def test_sysv_name_without_service_command(subhost, tmp_path: Path) -> None:
    initd = tmp_path / "init.d"
    initd.mkdir()
    service(tmp_path, "foo", directory=initd)
    service(tmp_path, "bar", directory=initd)
    setup = _hide_service_command() + f"mount --bind {initd} /etc/init.d\n"
    s = subhost("foo bar", setup=setup)
    assert s.until_ready() == ["STATUS starting foo", "STATUS starting bar"]
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    assert [line for line in log_lines(tmp_path) if not line.startswith("started")] == [
        "start foo", "start bar", "stop bar", "stop foo",
    ]  # fmt: skip
    assert "foo: hello from foo" in s.stderr()


def test_sysv_name_with_service_command(subhost, tmp_path: Path) -> None:
    initd = tmp_path / "init.d"
    initd.mkdir()
    service(tmp_path, "foo", directory=initd)
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    fake = sbin / "service"
    fake.write_text(f'#!/bin/sh\necho "service $*" >> {tmp_path}/log\nexec /etc/init.d/$1 $2\n')
    fake.chmod(0o755)
    setup = f"mount --bind {sbin} /usr/local/sbin\nmount --bind {initd} /etc/init.d\n"
    s = subhost("foo", setup=setup)
    s.until_ready()
    s.kill(signal.SIGTERM)
    assert s.wait() == 0
    assert log_lines(tmp_path) == [
        "service foo start", "start foo", "started foo", "service foo stop", "stop foo",
    ]  # fmt: skip
