"""`make install` then `make uninstall` in a booted box leaves nothing of the install
(issue 14, item 7): the box's upper layer — every change made to the box's files — is the
same afterwards, but for logs and systemd's own state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .box import SystemdBox
from .subhosts import REPO

pytestmark = pytest.mark.system

# Written by the box's own services whatever the test does.
NOT_COUNTED = ("var/log", "var/lib/systemd", "var/tmp", "tmp")


def changes(upper: Path, host: Path = Path("/")) -> dict[str, str]:
    """What the box's files differ in from the host's: each path in UPPER with its kind (and
    size for a file); a directory that also exists on the host is no change (the overlay
    copies parents up when a file is made in them)."""
    found: dict[str, str] = {}
    for top, dirs, files in os.walk(upper):
        rel_top = os.path.relpath(top, upper)
        dirs[:] = [d for d in dirs
                   if os.path.normpath(os.path.join(rel_top, d)) not in NOT_COUNTED]
        for d in dirs:
            rel = os.path.normpath(os.path.join(rel_top, d))
            if not (host / rel).is_dir() or (host / rel).is_symlink():
                found[rel] = "directory"
        for f in files:
            rel = os.path.normpath(os.path.join(rel_top, f))
            st = os.lstat(upper / rel)
            found[rel] = "whiteout" if st.st_rdev == 0 and not st.st_size and \
                (st.st_mode & 0o170000) == 0o020000 else f"file of {st.st_size} bytes"
    return found


@pytest.fixture
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    yield systemd_box


def test_uninstall_leaves_nothing_of_the_install(box: SystemdBox) -> None:
    before = changes(box.upper)
    box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    box.systemctl("daemon-reload")
    installed = set(changes(box.upper)) - set(before)
    assert "usr/local/sbin/overlay-boot" in installed
    assert "etc/dbus-1/system.d/org.overlayboot.OverlayBoot1.conf" in installed
    # the shared services run from the install, as they do for an admin
    box.systemctl("start", "overlay-boot-net.socket", "overlay-boot-bus.service", timeout=60)
    box.run("make", "-s", "-C", str(REPO), "uninstall", timeout=180)
    box.systemctl("daemon-reload")
    after = changes(box.upper)
    left = sorted(p for p, kind in after.items() if before.get(p) != kind)
    assert not left, f"make uninstall left: {left}"
    gone = sorted(p for p in before if p not in after)
    assert not gone, f"make install/uninstall removed: {gone}"
