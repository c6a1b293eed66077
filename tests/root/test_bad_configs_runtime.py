"""Every bad config of tests/cases, given to the real `overlay-boot` command.

Each must give one clear message naming the problem, exit status 78, and leave nothing behind:
no netns, no link, no mount, no process, no runtime file.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

from tests.leaks import run_command, snapshot, wait_clean

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cases"))
from casefile import load_cases, prepared  # noqa: E402

pytestmark = pytest.mark.root

CASES = load_cases()
STDERR_MAX = 4000  # a few clear lines, whatever the hostile input was


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60


def _limit_memory(limit: int | None):
    if limit is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_config_exits_78_and_leaves_nothing(case, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    before = snapshot()
    with prepared(case, tmp_path) as conf:
        env = {}
        if case.command_timeout is not None:
            env["OVERLAY_BOOT_COMMAND_TIMEOUT"] = str(case.command_timeout)
        for mode in ((), ("--foreground",)):
            result = run_command("boot", *mode, str(conf), env=env, timeout=120,
                                 preexec_fn=_limit_memory(case.memory_limit))
            if result.returncode == 0:  # wrongly accepted: don't leave it running
                run_command("stop", str(conf))
            assert result.returncode == 78, (mode, result.stdout, result.stderr[-2000:])
            assert "Traceback" not in result.stderr
            assert len(result.stderr) <= STDERR_MAX, (len(result.stderr), result.stderr[-500:])
            assert "\x1b" not in result.stderr, "a terminal escape reached the terminal"
            if case.expect_variable:
                assert f"{case.expect_variable}:" in result.stderr, result.stderr
            for message in case.expect_messages:
                assert message in result.stderr, result.stderr
            assert str(conf.name) in result.stderr or str(conf) in result.stderr, result.stderr
        name = conf.stem
    problems = wait_clean(before, name, timeout=1.0)
    assert not problems, problems
