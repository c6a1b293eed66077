"""Every bad config in tests/cases/ is refused with the expected problem (no root needed)."""

from __future__ import annotations

import resource
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cases"))
from casefile import Case, load_cases, prepared  # noqa: E402

from overlay_boot.config import load_config  # noqa: E402
from overlay_boot.errors import ConfigError  # noqa: E402
from overlay_boot.proc import run_command  # noqa: E402
from overlay_boot.validate import require_valid  # noqa: E402

CASES = load_cases()
MESSAGE_MAX = 1000  # one clear message: a hostile value is cut, not repeated in full


@contextmanager
def memory_limit(extra: int | None):
    """RLIMIT_AS of this process raised by only ``extra`` bytes over what it uses now."""
    if extra is None:
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (in_use + extra, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def check_case(case: Case, tmp_path: Path) -> None:
    """Load and validate the case; assert a ConfigError with the expected problem."""
    assert case.expect_messages, f"{case.name}: no expect-message header"
    with prepared(case, tmp_path) as conf:
        kwargs = {}
        if case.command_timeout is not None:
            kwargs["command_timeout"] = case.command_timeout
        with pytest.raises(ConfigError) as info, memory_limit(case.memory_limit):
            require_valid(load_config(conf, run=run_command, **kwargs))
    problems = info.value.problems
    assert problems, case.name
    for p in problems:
        assert len(p.message) <= MESSAGE_MAX, f"{case.name}: a {len(p.message)}-character message"
    for p in problems:
        assert p.path == str(conf), p
    candidates = [p for p in problems
                  if case.expect_variable is None or p.variable == case.expect_variable]
    assert candidates, f"{case.name}: no problem names {case.expect_variable}: {problems}"
    for text in case.expect_messages:
        assert any(text in p.message for p in candidates), (
            f"{case.name}: no problem says {text!r}: {[str(p) for p in problems]}"
        )
    if case.expect_variable is not None:
        # Messages name the file, the line when known, and the variable.
        assert any(str(p).startswith(f"{conf}:") or str(p).startswith(f"{conf}: ")
                   for p in candidates)


def test_corpus_is_big_enough_and_well_formed() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert case.expect_messages, case.name


@pytest.mark.parametrize("case", [c for c in CASES if not c.needs_root], ids=lambda c: c.name)
def test_bad_config_is_refused(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)
