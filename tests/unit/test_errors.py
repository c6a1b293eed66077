"""errors.Problem: a plain immutable value (not a dataclass: every command imports it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from overlay_boot.errors import MESSAGE_LIMIT, ConfigError, Problem
from tests.leaks import REPO


def test_a_problem_is_a_value() -> None:
    problem = Problem("/etc/a.conf", "not a number", "CPUS", 3)
    assert (problem.path, problem.message, problem.variable, problem.line) == (
        "/etc/a.conf", "not a number", "CPUS", 3)
    assert str(problem) == "/etc/a.conf:3: CPUS: not a number"
    assert str(Problem("/etc/a.conf", "cannot read")) == "/etc/a.conf: cannot read"
    same = Problem("/etc/a.conf", "not a number", variable="CPUS", line=3)
    assert problem == same and hash(problem) == hash(same) and len({problem, same}) == 1
    assert problem != Problem("/etc/a.conf", "not a number", "CPUS", 4)
    assert problem != ("/etc/a.conf", "not a number", "CPUS", 3)
    assert repr(problem) == ("Problem(path='/etc/a.conf', message='not a number', "
                             "variable='CPUS', line=3)")
    assert ConfigError(problem).problems == [same]


def test_a_problem_cannot_be_changed() -> None:
    problem = Problem("/etc/a.conf", "bad")
    with pytest.raises(AttributeError):
        problem.message = "good"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del problem.path
    with pytest.raises(AttributeError):
        problem.extra = 1  # type: ignore[attr-defined]
    assert problem.message == "bad"


def test_what_a_problem_quotes_stays_one_readable_line() -> None:
    problem = Problem("/etc/a\nb.conf", "\x1b[31m" + "x" * 100_000)
    assert "\n" not in str(problem) and "\x1b" not in str(problem)
    assert problem.path == "/etc/a\\nb.conf"
    assert len(problem.message) <= MESSAGE_LIMIT


def test_errors_import_no_dataclasses() -> None:
    # -I -S: no site (an editable install's finder imports modules of its own).
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import overlay_boot.errors; "
            "print('dataclasses' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
