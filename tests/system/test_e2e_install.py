"""`make install` then `make uninstall` in a booted box leaves nothing of the install
(issue 14, item 7): the box's upper layer — every change made to the box's files — is the
same afterwards, but for logs and systemd's own state."""

from __future__ import annotations

import pytest

from .box import SystemdBox
from .subhosts import REPO

pytestmark = pytest.mark.system


def test_uninstall_leaves_nothing_of_the_install(systemd_box: SystemdBox) -> None:
    box = systemd_box
    before = box.changed_files()
    box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    box.systemctl("daemon-reload")
    installed = set(box.changed_files()) - set(before)
    assert "usr/local/sbin/overlay-boot" in installed
    assert "etc/dbus-1/system.d/org.overlayboot.OverlayBoot1.conf" in installed
    # the shared services run from the install, as they do for an admin
    box.systemctl("start", "overlay-boot-net.socket", "overlay-boot-bus.service", timeout=60)
    box.run("make", "-s", "-C", str(REPO), "uninstall", timeout=180)
    box.systemctl("daemon-reload")
    after = box.changed_files()
    left = sorted(p for p, kind in after.items() if before.get(p) != kind)
    assert not left, f"make uninstall left: {left}"
    gone = sorted(p for p in before if p not in after)
    assert not gone, f"make install/uninstall removed: {gone}"
