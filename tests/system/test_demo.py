"""`make demo`'s script, run for real inside a booted systemd box (so the host stays clean)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .box import SystemdBox

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_and_leaves_nothing(systemd_box: SystemdBox) -> None:
    base = systemd_box.scratch / "demo"
    result = systemd_box.run(
        str(REPO / "demo" / "demo.sh"), env={"DEMO_BASE": str(base)}, check=False, timeout=300
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "\nobdemo\n" in out  # hostname inside
    assert "\n200\n" in out  # the START service answered on the subhost's loopback
    assert "on the host, /etc/demo-marker exists: no" in out
    assert "in the subhost's upper layer: written inside" in out
    assert "left behind: netns no, link no" in out
    # Under systemd, `overlay-boot CONF` ran it as the unit.
    assert "overlay-boot@obdemo.service" in systemd_box.journal("overlay-boot@obdemo.service")
