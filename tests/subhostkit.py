"""Subhosts for root tests driven through the real commands (CLI path, no systemd).

`Lab` makes bases and configs under a scratch directory, starts subhosts in the background
(``overlay-boot CONF`` as a child the test can wait for), finds their processes, and at the end
stops every one it started and checks that nothing is left (tests/leaks.py).

`Gate` is a hook that blocks at a named stage of the start until the test opens it, so a fault
can be injected at a known point: ``PREMOUNT``/``POSTMOUNT`` commands and ``START`` services
run the gate script, which writes ``at-STAGE`` (its PID) and, while ``block-STAGE`` exists,
waits reading the FIFO ``fifo-STAGE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from tests.leaks import (
    REPO,
    HostState,
    Scope,
    command,
    leftovers,
    new_things,
    run_command,
    snapshot,
)

GATE_SCRIPT = """#!/bin/sh
# gate STAGE [start|stop]: a START service gets start/stop; hooks get paths.
dir=$(dirname "$0")
stage=$(basename "$0")
case "$1" in stop) exit 0 ;; esac
# The PID as /proc shows it (the shell itself opens /proc/self): $$ would be the PID inside a
# PID namespace (a `!` command runs in one of its own).
read -r pid rest < /proc/self/stat
echo "$pid" > "$dir/at-$stage"
if [ -e "$dir/block-$stage" ]; then read x < "$dir/fifo-$stage"; fi
exit 0
"""


class Gate:
    """Blocking hooks in ``directory`` (shared with the subhost so START can see it)."""

    STAGES = ("premount", "postmount", "service")

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        script = directory / "gate.sh"
        script.write_text(GATE_SCRIPT)
        script.chmod(0o755)
        for stage in self.STAGES:
            (directory / stage).symlink_to("gate.sh")
            os.mkfifo(directory / f"fifo-{stage}")

    def path(self, stage: str) -> str:
        return str(self.dir / stage)

    def block(self, stage: str) -> None:
        (self.dir / f"block-{stage}").touch()

    def open(self, stage: str) -> None:
        """Let a waiting gate go on (and later ones pass)."""
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"block-{stage}").unlink()
        # Opening the FIFO for writing would hang without a reader: O_NONBLOCK.
        with contextlib.suppress(OSError):
            fd = os.open(self.dir / f"fifo-{stage}", os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)

    def reached(self, stage: str) -> bool:
        return (self.dir / f"at-{stage}").exists()

    def wait(self, stage: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.reached(stage):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the start never reached {stage}")
            time.sleep(0.01)

    def reset(self) -> None:
        for stage in self.STAGES:
            self.open(stage)
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f"at-{stage}").unlink()


def env() -> dict[str, str]:
    return dict(os.environ, OVERLAY_BOOT_NO_SYSTEMD="1", PYTHONPATH=str(REPO))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0)
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Lab:
    """Subhosts of one test; see the module docstring."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.started: dict[str, Path] = {}
        self.before: HostState = snapshot()
        self.children: list[subprocess.Popen[str]] = []

    def name(self) -> str:
        return "t" + secrets.token_hex(3)

    def config(self, text: str, name: str | None = None, base: Path | None = None) -> Path:
        name = name or self.name()
        base = base or self.scratch / name
        for sub in ("live", "root", "work"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        conf = base / f"{name}.conf"
        conf.write_text(f"BASE=.\nLOG={base}/subhost.log\n{text}")
        conf.chmod(0o644)
        self.started.setdefault(name, conf)
        return conf

    def start(self, conf: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run_command("boot", *extra, str(conf), timeout=timeout)

    def start_async(self, conf: Path, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*command("boot"), *extra, str(conf)], env=env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO))
        self.children.append(proc)
        return proc

    def stop(self, target: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run_command("stop", target, timeout=timeout)

    def go(self, name: str, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
        return run_command("go", name, "--", *cmd, **kwargs)

    def record(self, name: str, timeout: float = 30, state: str | None = None) -> dict:
        """The runtime record of NAME once it exists (and has STATE, when given)."""
        path = Path(f"/run/overlay-boot/{name}.json")
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                data = json.loads(path.read_text())
                if state is None or data.get("state") == state:
                    return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"no runtime record of {name} (state {state})")
            time.sleep(0.01)

    def leftovers(self, name: str, timeout: float = 5) -> list[str]:
        """What NAME left (tests/leaks.py: by identity, named after NAME or the scratch
        directory, or descending from what is). Other tests' objects on the host don't count."""
        deadline = time.monotonic() + timeout
        while True:
            problems = leftovers(self.before, name, paths=(str(self.scratch),))
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(0.05)

    def cleanup(self, name: str) -> subprocess.CompletedProcess:
        """`overlay-stop --cleanup NAME`, as the unit's ExecStopPost= runs it after a crash."""
        return run_command("stop", "--cleanup", name)

    def finish(self) -> list[str]:
        """Stop everything started; what is left on the host (empty when clean)."""
        for proc in self.children:
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=60)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        problems = []
        for name in self.started:
            self.stop(name)
            problems += self.leftovers(name)
        # and any process the test's commands started that still runs, whoever its parent
        # (given the moment to exit that the leftovers above get)
        deadline = time.monotonic() + 5
        while (strays := [p for p in new_things(self.before, snapshot(), Scope(marked=True))
                          if p not in problems]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return problems + strays


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
