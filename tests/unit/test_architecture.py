"""docs/ARCHITECTURE.md describes the code: every module of overlay_boot/ has a row in its
module table, and every module the page names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs/ARCHITECTURE.md").read_text()


def _modules() -> set[str]:
    package = REPO / "overlay_boot"
    return {str(p.relative_to(package)) for p in package.rglob("*.py")
            if p.name != "__init__.py" and "__pycache__" not in p.parts}


def test_every_module_has_a_row() -> None:
    rows = set(re.findall(r"^\| `([a-z_/]+\.py)` \|", PAGE, re.M))
    missing = _modules() - rows
    assert not missing, f"modules without a row in docs/ARCHITECTURE.md: {sorted(missing)}"


def test_every_module_named_exists() -> None:
    named = {m for m in re.findall(r"`(?:overlay_boot/)?([a-z_]+(?:/[a-z_]+)*\.py)`", PAGE)}
    gone = named - _modules()
    assert not gone, f"docs/ARCHITECTURE.md names modules that do not exist: {sorted(gone)}"
