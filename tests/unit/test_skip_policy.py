"""The suite's skip policy (tests/conftest.py), run for real: a small test file is given to an
inner pytest with the suite's rules as a plugin, and the inner run's outcome is asserted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel_features import FEATURES, missing

REPO = Path(__file__).resolve().parents[2]

#: name -> the inner test file; under OVERLAY_BOOT_NO_SKIP every one of them must fail the run
HOLES = {
    "skip": "import pytest\ndef test_x():\n    pytest.skip('not here')\n",
    "skip-marker": "import pytest\n@pytest.mark.skip(reason='later')\ndef test_x():\n    pass\n",
    "skipif-marker": "import pytest\n@pytest.mark.skipif(True, reason='no')\ndef test_x():\n"
                     "    pass\n",
    "xfail-marker": "import pytest\n@pytest.mark.xfail(reason='known')\ndef test_x():\n"
                    "    assert False\n",
    "xpass": "import pytest\n@pytest.mark.xfail(reason='known')\ndef test_x():\n    pass\n",
    "xfail-call": "import pytest\ndef test_x():\n    pytest.xfail('known')\n",
    "module-skip": "import pytest\npytest.skip('gone', allow_module_level=True)\n"
                   "def test_x():\n    pass\n",
    "module-pytestmark": "import pytest\npytestmark = pytest.mark.skipif(True, reason='no')\n"
                         "def test_x():\n    pass\n",
    "importorskip": "import pytest\npytest.importorskip('no_such_module_here')\n"
                    "def test_x():\n    pass\n",
    "class-skip": "import pytest\n@pytest.mark.skip(reason='later')\nclass TestX:\n"
                  "    def test_x(self):\n        pass\n",
}


def inner_pytest(directory: Path, *args: str, no_skip: bool, plugin: bool = True,
                 extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """pytest on DIRECTORY's files with tests/conftest.py as a plugin (DIRECTORY is outside the
    checkout, so no other conftest applies; PLUGIN false: DIRECTORY is a copy of the checkout,
    whose own tests/conftest.py applies)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OVERLAY_BOOT_NO_SKIP", "CI", "OVERLAY_BOOT_RELIABILITY_LOG",
                        "OVERLAY_BOOT_REGEN", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(REPO)
    if no_skip:
        env["OVERLAY_BOOT_NO_SKIP"] = "1"
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", *(["-p", "tests.conftest"] if plugin else []),
         "-p", "no:cacheprovider", "-q", "-rA", *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("hole", sorted(HOLES))
def test_a_skip_or_xfail_fails_the_run(tmp_path: Path, hole: str) -> None:
    (tmp_path / "test_inner.py").write_text(HOLES[hole])
    result = inner_pytest(tmp_path, "test_inner.py", no_skip=True)
    assert result.returncode != 0, result.stdout
    assert "fail the run here" in result.stdout or "not allowed here" in result.stdout, \
        result.stdout
    assert " passed" not in result.stdout.splitlines()[-1], result.stdout


@pytest.mark.parametrize("hole", ["skip", "module-skip", "xfail-marker"])
def test_outside_make_check_a_skip_is_only_reported(tmp_path: Path, hole: str) -> None:
    """The same files without OVERLAY_BOOT_NO_SKIP: the rule, not the file, made them fail."""
    (tmp_path / "test_inner.py").write_text(HOLES[hole])
    result = inner_pytest(tmp_path, "test_inner.py", no_skip=False)
    assert result.returncode in (0, 5), result.stdout  # 5: nothing ran (the module skipped)
    assert "skipped" in result.stdout or "xfailed" in result.stdout, result.stdout


def test_a_missing_feature_is_listed_not_verified_and_the_run_succeeds(tmp_path: Path) -> None:
    lacking = next(name for name in FEATURES if missing(name))  # 8021q or no-8021q: one is
    (tmp_path / "test_inner.py").write_text(
        f"import pytest\n@pytest.mark.needs({lacking!r})\ndef test_feature():\n"
        "    assert False\ndef test_plain():\n    pass\n")
    result = inner_pytest(tmp_path, "test_inner.py", no_skip=True)
    assert result.returncode == 0, result.stdout
    assert "not verified here" in result.stdout, result.stdout
    assert f"test_inner.py::test_feature: needs {missing(lacking)}" in result.stdout
    assert "1 passed, 1 deselected" in result.stdout, result.stdout


def test_golden_regeneration_is_refused_where_skips_fail(tmp_path: Path) -> None:
    """OVERLAY_BOOT_REGEN rewrites tests/generator's goldens and would then compare the output
    with itself: under make check/CI the test fails and writes nothing. Run on a copy."""
    copy = tmp_path / "repo"
    for part in ("overlay_boot", "tests", "generator", "units"):
        shutil.copytree(REPO / part, copy / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    case = sorted(p.name for p in (copy / "tests" / "generator").iterdir()
                  if (p / "input").is_dir())[0]
    golden = copy / "tests" / "generator" / case / "expected.stderr"
    golden.write_text("tampered\n")
    result = inner_pytest(copy, f"tests/unit/test_generator.py::test_golden[{case}]",
                          no_skip=True, plugin=False, extra_env={"OVERLAY_BOOT_REGEN": "1",
                                                   "PYTHONPATH": str(copy)})
    assert result.returncode != 0, result.stdout
    assert "OVERLAY_BOOT_REGEN" in result.stdout, result.stdout
    assert golden.read_text() == "tampered\n"
