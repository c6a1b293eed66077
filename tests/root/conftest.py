"""Fixtures shared by the root tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.subhostkit import Lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Subhosts made under ``tmp_path``; at the end, stopped and checked for leftovers."""
    tmp_path.chmod(0o755)
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        problems = lab.finish()
    assert not problems, problems
