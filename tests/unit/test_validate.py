"""Host checks of a parsed config (validate.py) that need no root-only set-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlay_boot.config import load_config
from overlay_boot.errors import ConfigError
from overlay_boot.validate import check_host, require_valid


def make_base(base: Path, text: str, dirs: tuple[str, ...] = ("live", "root", "work")) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    for d in dirs:
        (base / d).mkdir()
    conf = base / "v.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    return conf


def messages(conf: Path) -> list[str]:
    return [str(p) for p in check_host(load_config(conf))]


def test_valid_config_passes(tmp_path: Path) -> None:
    (tmp_path / "b" / "data").mkdir(parents=True)
    for layer in ("top", "bottom"):
        (tmp_path / "layers" / layer).mkdir(parents=True)
    conf = make_base(tmp_path / "b", "BASE=.\nCABLES==02:00:00:00:00:01\nSHARE=data\n"
                                     "SHARE=/etc/hostname:/etc/host-name\n"
                                     f"LOWER={tmp_path}/layers/top:{tmp_path}/layers/bottom\n")
    assert messages(conf) == []
    require_valid(load_config(conf))


def test_nested_lower_layers_are_refused(tmp_path: Path) -> None:
    """overlayfs refuses lower layers nested on one filesystem (mount says ELOOP)."""
    conf = make_base(tmp_path / "b", "BASE=.\nLOWER=/usr:/\n")
    (problem,) = check_host(load_config(conf))
    assert problem.variable == "LOWER"
    assert "/usr and / are nested on one filesystem" in problem.message


def test_bind_and_premounted_variants_need_fewer_dirs(tmp_path: Path) -> None:
    conf = make_base(tmp_path / "b", "BASE=.\nUPPER=sys\nLOWER=sys\n", dirs=("live", "sys"))
    assert load_config(conf).variant == "bind"
    assert messages(conf) == []
    conf = make_base(tmp_path / "p", "BASE=.\nUPPER=sys\nLOWER=sys\nLIVE=sys\n", dirs=("sys",))
    assert load_config(conf).variant == "premounted"
    assert messages(conf) == []


def test_missing_dirs_all_reported(tmp_path: Path) -> None:
    conf = make_base(tmp_path / "b", "BASE=.\nLOWER=/nonexistent-1:/\n", dirs=())
    with pytest.raises(ConfigError) as info:
        require_valid(load_config(conf))
    variables = [p.variable for p in info.value.problems]
    assert variables == ["LIVE", "UPPER", "WORK", "LOWER"]
    # a default has no line; an assignment does
    assert str(info.value.problems[0]) == f"{conf}: LIVE: LIVE {tmp_path / 'b/live'} does not exist"
    assert str(info.value.problems[3]).startswith(f"{conf}:2: LOWER: LOWER /nonexistent-1 ")


def test_evaluate_false_config_checks_what_it_knows(tmp_path: Path) -> None:
    conf = make_base(tmp_path / "b", "BASE=!pwd\nLIVE=/nonexistent-live\n")
    c = load_config(conf, run=None)
    assert [p.variable for p in check_host(c)] == ["LIVE"]
