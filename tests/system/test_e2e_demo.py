"""`make demo` leaves the host as it found it (issue 14, item 9), run for real in a booted box:
the box's files are the same before and after the demo (its upper layer says what changed),
and a local install that was there before is kept and named at the end with its remove
command."""

from __future__ import annotations

import subprocess

import pytest

from .box import SystemdBox
from .subhosts import REPO

pytestmark = pytest.mark.system

DEMO = str(REPO / "demo" / "demo.sh")


def run_demo(box: SystemdBox, env: dict[str, str] | None = None,
             status: int = 0) -> subprocess.CompletedProcess:
    # BASE on the scratch directory: an overlay upper can't be on the box's overlay root
    result = box.run(DEMO, env={"DEMO_BASE": str(box.scratch / "demo"), **(env or {})},
                     check=False, timeout=300)
    assert (result.returncode == 0) == (status == 0), result.stdout + result.stderr
    return result


def running_units(box: SystemdBox) -> list[str]:
    out = box.systemctl("list-units", "--plain", "--no-legend", "overlay-boot*").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["systemd", "no systemd"])
def test_the_demo_leaves_the_box_as_it_found_it(systemd_box: SystemdBox, how: str) -> None:
    """Under systemd the subhost is its unit; without (as on a host without systemd) the
    supervisor runs it directly and logs to /var/log/overlay-boot/NAME.log."""
    box = systemd_box
    logs = "/var/log/overlay-boot"  # the host may have it (the box shows the host's /var)
    logs_before = box.run("ls", "-A", logs, check=False).stdout
    before = box.changed_files()
    env = {"OVERLAY_BOOT_NO_SYSTEMD": "1"} if how == "no systemd" else {}
    out = run_demo(box, env).stdout
    assert "\nobdemo\n" in out  # hostname inside
    assert "\n200\n" in out  # the START service answered on the subhost's loopback
    assert "left behind: netns no, link no" in out
    assert "the host is as the demo found it." in out
    after = box.changed_files()
    left = sorted(p for p, kind in after.items() if before.get(p) != kind)
    assert not left, f"the demo left: {left}"
    assert sorted(p for p in before if p not in after) == []
    assert not (box.scratch / "demo").exists()
    assert box.run("ls", "-A", logs, check=False).stdout == logs_before
    assert running_units(box) == []
    assert box.systemctl("cat", "overlay-boot@.service", check=False).returncode != 0
    assert box.failed_units() == []


def test_an_install_from_before_the_demo_is_kept_and_named(systemd_box: SystemdBox) -> None:
    box = systemd_box
    box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    try:
        before = box.changed_files()
        out = run_demo(box).stdout
        assert "overlay-boot was installed in /usr/local before the demo: kept" in out
        assert f"To remove it: make -C {REPO} uninstall PREFIX=/usr/local" in out
        after = box.changed_files()
        assert sorted(p for p, kind in after.items() if before.get(p) != kind) == []
        assert box.run("test", "-x", "/usr/local/sbin/overlay-boot").returncode == 0
    finally:
        box.run("make", "-s", "-C", str(REPO), "uninstall", timeout=180)
        box.systemctl("daemon-reload")


def test_a_failed_demo_cleans_up_too(systemd_box: SystemdBox) -> None:
    """The subhost's start fails (a NAME with a blank is refused): the demo fails, and still
    removes what it installed."""
    box = systemd_box
    before = box.changed_files()
    result = run_demo(box, {"DEMO_NAME": "bad name"}, status=1)
    assert "removed what the demo installed: make uninstall PREFIX=/usr/local" in result.stdout
    assert "the host is as the demo found it." in result.stdout
    after = box.changed_files()
    assert sorted(p for p, kind in after.items() if before.get(p) != kind) == []
    assert running_units(box) == []
