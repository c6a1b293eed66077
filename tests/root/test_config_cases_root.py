"""The bad configs of tests/cases/ that need root to set up (mounts, chown)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cases"))
from casefile import Case, load_cases  # noqa: E402
from test_config_cases import check_case  # noqa: E402

ROOT_CASES = [c for c in load_cases() if c.needs_root]


def test_there_are_root_cases() -> None:
    assert ROOT_CASES


@pytest.mark.root
@pytest.mark.parametrize("case", ROOT_CASES, ids=lambda c: c.name)
def test_bad_config_is_refused_root(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)
