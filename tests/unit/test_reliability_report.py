"""tests/reliability_report.py on a throw-away git repository holding this checkout's files:
the commit is the one checked out before the run, a dirty tree says so in the title, the
counts and the not-verified list are the run's, and the raw results JSON renders the same
document again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel_features import FEATURES, missing

REPO = Path(__file__).resolve().parents[2]
TINY = """import pytest

def test_one():
    assert 1 + 1 == 2

def test_two():
    assert "a" < "b"

@pytest.mark.needs({feature!r})
def test_needs_what_is_missing():
    assert False
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A git repository of this checkout's overlay_boot/ and tests/, committed: a clean tree."""
    repo = tmp_path / "repo"
    for part in ("overlay_boot", "tests"):
        shutil.copytree(REPO / part, repo / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "docs").mkdir()
    lacking = next(name for name in FEATURES if missing(name))
    (repo / "tests" / "unit" / "test_tiny_report.py").write_text(TINY.format(feature=lacking))
    (repo / ".gitignore").write_text("__pycache__/\n.hypothesis/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny")
    return repo


def generate(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OVERLAY_BOOT_RELIABILITY_LOG"}
    env["PYTHONPATH"] = str(repo)
    return subprocess.run([sys.executable, "-m", "tests.reliability_report", *args], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)


def run_tiny(repo: Path) -> tuple[str, dict]:
    result = generate(repo, "--suite", "tests/unit/test_tiny_report.py")
    assert result.returncode == 0, result.stdout + result.stderr
    return ((repo / "docs" / "RELIABILITY.md").read_text(),
            json.loads((repo / "docs" / "reliability.json").read_text()))


def test_a_clean_tree_names_its_commit_and_the_run_s_counts(clone: Path) -> None:
    head = git(clone, "rev-parse", "--short=12", "HEAD").strip()
    doc, data = run_tiny(clone)
    title = doc.splitlines()[0]
    assert title == "# Reliability and security", title
    assert f"commit {head} (taken before the run; tree clean)" in doc
    assert "- tests: 2 — 2 passed, 0 failed, 0 skipped; 1 not verified here" in doc
    assert "test_tiny_report.py::test_needs_what_is_missing`: needs" in doc
    assert data["meta"]["commit"] == head and data["meta"]["changed"] == []
    assert [t["outcome"] for t in data["tests"]] == ["passed", "passed"]
    # the document is a function of the committed JSON alone
    again = generate(clone, "--results", "docs/reliability.json", "--out", "again.md")
    assert again.returncode == 0, again.stderr
    assert (clone / "again.md").read_text() == doc


def test_a_dirty_tree_says_so_in_the_title(clone: Path) -> None:
    head = git(clone, "rev-parse", "--short=12", "HEAD").strip()
    path = clone / "overlay_boot" / "naming.py"
    path.write_text(path.read_text() + "\n# changed after the commit\n")
    (clone / "untracked.txt").write_text("new\n")
    doc, data = run_tiny(clone)
    title = doc.splitlines()[0]
    assert title.startswith("# Reliability and security — DIRTY TREE: 2 files differ from "
                            f"commit {head}"), title
    assert "tree NOT clean" in doc
    assert sorted(data["meta"]["changed"]) == ["overlay_boot/naming.py", "untracked.txt"]
