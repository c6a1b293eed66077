"""Configs as overlay-boot 1.6.4 read them (reviews/compat.md, class (c)): each case in
tests/cases/compat/ gives the value 1.6.4 made of a variable, or the documented refusal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cases"))
from casefile import CASES_DIR, Case, load_cases, prepared  # noqa: E402

from overlay_boot.config import Config, load_config  # noqa: E402
from overlay_boot.errors import ConfigError  # noqa: E402
from overlay_boot.proc import run_command  # noqa: E402
from overlay_boot.validate import require_valid  # noqa: E402

CASES = load_cases(CASES_DIR / "compat")
PATHS = ("BASE", "LIVE", "UPPER", "WORK")


def shown(config: Config, var: str) -> str:
    """VAR of CONFIG as a case writes it. Paths: where the kernel finds them (realpath)."""
    if var in PATHS:
        path = getattr(config, var.lower())
        return os.fsdecode(os.path.realpath(path))
    if var == "START":
        return " ".join(config.start) or "none"
    if var == "SHARE":
        return " ".join(f"{os.path.realpath(s.source)}:{s.target}" for s in config.shares)
    if var == "RAM_SIZE":
        return config.ram_size or "none"
    return str(getattr(config, var.lower()))


def test_every_class_c_kind_has_a_case() -> None:
    kinds = {case.value("compat").split()[0] for case in CASES}
    assert kinds >= {f"c{i}" for i in range(1, 14)}
    for case in CASES:
        assert case.expected_values or case.expect_messages, case.name


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_read_as_1_6_4_read_it(case: Case, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERLAY_BOOT_CONFIG_DIR", str(tmp_path / "no-config-dir"))
    base = tmp_path / "base"
    with prepared(case, tmp_path) as conf:
        if case.expect_messages:
            with pytest.raises(ConfigError) as info:
                require_valid(load_config(conf, run=run_command))
            problems = [p for p in info.value.problems
                        if case.expect_variable in (None, p.variable)]
            for text in case.expect_messages:
                assert any(text in p.message for p in problems), (text, info.value.problems)
            return
        config = load_config(conf, run=run_command)
        for var, value in case.expected_values.items():
            if var == "STATUS":
                assert value == "ok"
                require_valid(config)
                continue
            expected = value.replace("@BASE@", str(base))
            if var in PATHS:
                expected = os.path.realpath(expected)
            assert shown(config, var) == expected, var
        for text in case.values("expect-warning"):
            assert any(text in w for w in config.warnings), config.warnings
