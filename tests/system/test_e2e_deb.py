"""The Debian package warns when a /usr/local install of the project (make install) shadows
its units, generator and commands (issue 14, item 9): one line, with the command that removes
that install; after it, the package's own units and commands are the ones used."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.debbuild import build_deb

from .box import SystemdBox
from .subhosts import REPO

pytestmark = pytest.mark.system

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
WARNING = "overlay-boot: warning: an install in /usr/local (make install) shadows"
REMOVE = "; remove it with: "


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb"))


def local_files(box: SystemdBox) -> list[str]:
    """What of the project the box has in /usr/local and /etc/dbus-1 (its own changes)."""
    return sorted(p for p in box.changed_files()
                  if p.startswith(("usr/local/", "etc/dbus-1/"))
                  and ("overlay" in p or "OverlayBoot" in p))


def test_a_local_install_shadowing_the_package_is_named_once(systemd_box: SystemdBox,
                                                             deb: Path) -> None:
    box = systemd_box
    assert local_files(box) == []  # the box hides the host's own /usr/local
    box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    box.systemctl("daemon-reload")
    assert "usr/local/sbin/overlay-boot" in local_files(box)
    shutil.copy2(deb, box.scratch / deb.name)
    package = str(box.scratch / deb.name)

    installed = box.run("apt-get", "install", "-y", "-q", "--no-install-recommends", package,
                        env=APT_ENV, timeout=300)
    lines = [line for line in (installed.stdout + installed.stderr).splitlines()
             if "overlay-boot: warning" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(WARNING) and REMOVE in line, line
    removal = line.split(REMOVE, 1)[1]
    for shadowing in ("/usr/local/lib/systemd/system/overlay-boot@.service",
                      "/usr/local/lib/systemd/system-generators/overlay-boot-generator",
                      "/usr/local/sbin/overlay-boot", "/usr/local/sbin/overlay-go"):
        assert f" {shadowing} " in removal, removal
    # while it is there, systemd takes the /usr/local unit
    fragment = box.systemctl("show", "-P", "FragmentPath", "overlay-boot@x.service").stdout
    assert fragment.startswith("/usr/local/lib/systemd/system/"), fragment

    # the command it gives removes the whole local install and nothing else
    box.run("sh", "-c", removal, timeout=60)
    assert local_files(box) == []
    fragment = box.systemctl("show", "-P", "FragmentPath", "overlay-boot@x.service").stdout
    # the package's (Debian 12 merged /usr: systemd names it by /lib)
    assert fragment.strip() in ("/lib/systemd/system/overlay-boot@.service",
                                "/usr/lib/systemd/system/overlay-boot@.service"), fragment
    assert box.run("sh", "-c", "command -v overlay-go").stdout.strip() == "/usr/sbin/overlay-go"

    # the package works on its own, and says nothing more when reinstalled
    name = "t" + secrets.token_hex(3)
    base = box.scratch / name
    for sub in ("root", "work", "live"):
        (base / sub).mkdir(parents=True)
    (base / f"{name}.conf").write_text("BASE=.\nSTART=none\n")
    box.run("overlay-boot", str(base / f"{name}.conf"), timeout=120)
    try:
        assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
    finally:
        box.run("overlay-stop", name, timeout=120)
    again = box.run("dpkg", "-i", package, env=APT_ENV, timeout=300)
    assert "overlay-boot: warning" not in again.stdout + again.stderr
    box.run("apt-get", "purge", "-y", "-q", "overlay-boot", env=APT_ENV, timeout=300)
    assert box.failed_units() == []
