"""The runtime drop-in of `overlay-boot CONF` (review L5): the end of a run removes the drop-in
it was started with, never one a newer start wrote meanwhile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from overlay_boot import state


@pytest.fixture
def unit_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "RUNTIME_UNIT_DIR", tmp_path)
    return tmp_path


def _write(name: str, text: str) -> Path:
    dropin = state.runtime_dropin(name)
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(text)
    return dropin


def test_the_drop_in_a_run_started_with_is_removed(unit_dir: Path) -> None:
    dropin = _write("web", "[Service]\n")
    stamp = state.dropin_stamp("web")
    assert stamp
    state.remove_runtime_dropin("web", stamp)
    assert not dropin.exists() and not dropin.parent.exists()


def test_a_newer_drop_in_is_left(unit_dir: Path) -> None:
    dropin = _write("web", "[Service]\nEnvironment=OVERLAY_BOOT_CONFIG=/old.conf\n")
    stamp = state.dropin_stamp("web")
    os.utime(dropin, ns=(1, 1))  # a change of the file: its ctime moves on
    _write("web", "[Service]\nEnvironment=OVERLAY_BOOT_CONFIG=/new.conf\n")
    assert state.dropin_stamp("web") != stamp
    state.remove_runtime_dropin("web", stamp)
    assert "/new.conf" in dropin.read_text()


def test_a_run_that_found_no_drop_in_removes_none(unit_dir: Path) -> None:
    dropin = _write("web", "[Service]\n")
    state.remove_runtime_dropin("web", "")
    assert dropin.exists()
    state.remove_runtime_dropin("web")  # without a stamp (overlay-boot CONF itself): removed
    assert not dropin.exists()
