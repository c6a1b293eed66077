"""neighbours.other_subhost_dirs: which of the other subhosts' directories are masked inside a
subhost (pure logic over given neighbours; the directories are real, for their devices)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlay_boot import knownlist, neighbours, state
from overlay_boot.config import load_config


def _neighbour(name: str, base: Path, **dirs: Path) -> tuple[knownlist.Neighbour, Path]:
    return knownlist.Neighbour(name, str(base), str(dirs.get("upper", base / "root")),
                               str(dirs.get("work", base / "work")),
                               str(dirs.get("live", base / "live")), None), base / f"{name}.conf"


def _record(name: str, root: str) -> state.Runtime:
    return state.Runtime(name=name, config=f"/nonexistent/{name}.conf", supervisor_pid=0,
                         leader_pid=0, root=root, started=1.0)


@pytest.fixture
def srv(tmp_path: Path) -> Path:
    for d in ("srv/a/root", "srv/a/work", "srv/a/live", "srv/b/root", "srv/b/work",
              "srv/b-x/live", "srv/c", "elsewhere/live", "srv/e"):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path / "srv"


def _dirs(monkeypatch: pytest.MonkeyPatch, srv: Path, lower: str,
          configs: list[tuple[knownlist.Neighbour, Path]],
          records: tuple[state.Runtime, ...] = ()) -> tuple[Path, ...]:
    config = load_config(srv / "a.conf", text=f"BASE={srv}/a\nLOWER={lower}\n")
    monkeypatch.setattr(neighbours, "others",
                        lambda c: neighbours.Others(tuple(configs), records))
    return neighbours.other_subhost_dirs(config)


def test_one_mask_per_base_and_none_on_our_own_tree(srv: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    configs = [
        _neighbour("b", srv / "b"),  # its UPPER and WORK are inside BASE: one mask
        _neighbour("bx", srv / "b-x"),  # a name that merely starts like b's
        _neighbour("c", srv / "c", live=srv.parent / "elsewhere/live"),
        _neighbour("holds", srv),  # holds our BASE: never masked
        _neighbour("same", srv / "x", live=srv / "a/live"),  # our LIVE: never masked
        _neighbour("gone", srv / "missing"),  # does not exist: nothing to mask
    ]
    records = (_record("e", f"{srv}/e/"), _record("p", "/proc/self"), _record("r", "relative"))
    assert _dirs(monkeypatch, srv, "/", configs, records) == (
        srv.parent / "elsewhere/live", srv / "b", srv / "b-x", srv / "c", srv / "e")


def test_paths_inside_a_lower_layer_other_than_root(srv: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    configs = [_neighbour("b", srv / "b"), _neighbour("c", srv / "c"),
               _neighbour("o", srv.parent / "elsewhere")]  # not below the layer
    assert _dirs(monkeypatch, srv, str(srv), configs) == (Path("/b"), Path("/c"))


def test_the_layer_itself_masks_everything_below_it(srv: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    configs = [_neighbour("b", srv / "b"), _neighbour("whole", srv / "b", live=srv / "b")]
    assert _dirs(monkeypatch, srv, str(srv / "b"), configs) == (Path("/"),)
