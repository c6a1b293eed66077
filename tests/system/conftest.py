"""Fixtures of the end-to-end tests: a real systemd booted in a box (see box.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .box import SystemdBox
from .subhosts import Subhosts


def _finish(box: SystemdBox) -> None:
    """Power off (kill if that fails), delete the state; fail on anything left on the host."""
    box.destroy()
    if left := box.leftovers():
        pytest.fail(f"the test box left on the host: {left}")


@pytest.fixture(scope="module")
def systemd_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdBox]:
    """A booted box shared by the tests of one module; fresh state for every module."""
    box = SystemdBox(tmp_path_factory.mktemp("box") / "state")
    try:
        box.boot()
        yield box
    finally:
        _finish(box)


@pytest.fixture
def new_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdBox]:
    """A box of the test's own, not booted yet (for tests of boot, poweroff, reboot)."""
    box = SystemdBox(tmp_path_factory.mktemp("box") / "state")
    try:
        yield box
    finally:
        _finish(box)


@pytest.fixture
def subhosts(box: SystemdBox) -> Iterator[Subhosts]:
    """Subhosts made in the requesting module's installed ``box``; stopped at the end."""
    made = Subhosts(box)
    yield made
    made.stop_all()
