"""Start and stop throw-away subhosts with the CLI, for the tests of what runs inside them."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.leaks import run_command, snapshot, wait_clean


@dataclass(frozen=True)
class Subhost:
    name: str
    conf: Path
    leader: int


def make_base(root: Path, name: str, text: str) -> Path:
    base = root / name
    for sub in ("live", "root", "work"):
        (base / sub).mkdir(parents=True)
    conf = base / f"{name}.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    return conf


def start_subhost(scratch: Path, extra: str = "") -> Subhost:
    """Start a START=none subhost under SCRATCH (which must be 0755) with overlay-boot."""
    name = "t" + secrets.token_hex(3)
    log = scratch / f"{name}.log"
    conf = make_base(scratch, name, f"LOG={log}\nBASE=.\nSTART=none\n{extra}")
    result = run_command("boot", str(conf))
    assert result.returncode == 0, (result.stderr, log.read_text() if log.exists() else "")
    record = Path(f"/run/overlay-boot/{name}.json").read_text()
    leader = int(re.search(r'"leader_pid": (\d+)', record).group(1))
    return Subhost(name, conf, leader)


def stop_subhost(sub: Subhost, before) -> None:
    """Stop SUB and check that nothing of it is left (BEFORE: a leaks.snapshot())."""
    run_command("stop", str(sub.conf))
    problems = wait_clean(before, sub.name)
    if Path(f"/run/overlay-boot/{sub.name}.ctl").exists():
        problems.append("control socket left")
    assert not problems, problems


def inside(sub: Subhost, script: str) -> str:
    """Output of a shell SCRIPT run inside SUB with overlay-go (which must succeed)."""
    result = run_command("go", sub.name, "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_inside(sub: Subhost, script: str, expected: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (out := inside(sub, script).strip()) != expected:
        assert time.monotonic() < deadline, f"{script!r} says {out!r}, not {expected!r}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sub(tmp_path_factory) -> Iterator[Subhost]:
    """One subhost shared by a module's tests that only use it (import this fixture)."""
    scratch = tmp_path_factory.mktemp("sub")
    scratch.chmod(0o755)
    before = snapshot()
    subhost = start_subhost(scratch)
    try:
        yield subhost
    finally:
        stop_subhost(subhost, before)


@pytest.fixture
def own_subhost(tmp_path: Path) -> Iterator[Subhost]:
    """A subhost for a test that stops it or disturbs it."""
    tmp_path.chmod(0o755)
    before = snapshot()
    subhost = start_subhost(tmp_path)
    try:
        yield subhost
    finally:
        stop_subhost(subhost, before)
