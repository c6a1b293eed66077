"""Drift in a booted box: a subhost copies up a file of a Debian package, the host upgrades the
package with apt, the apt hook reports the shadowed file in the journal, and the D-Bus method
Subhost.Diff (and overlay-diff) show it as shadowed; overlay-reset refuses the running subhost."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from .box import SystemdBox
from .busnames import BUS, NOBODY, SUBHOST_IFACE
from .subhosts import REPO, Subhosts, install

pytestmark = pytest.mark.system

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
HOOK = "/etc/apt/apt.conf.d/50overlay-boot"


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    # the package's apt hook, for the /usr/local install
    systemd_box.run("make", "-s", "-C", str(REPO), "install", "APT_HOOK=yes", timeout=180)
    yield systemd_box
    systemd_box.run("rm", "-f", HOOK)


def path_of(name: str) -> str:
    return f"/org/overlayboot/OverlayBoot1/subhost/{name}"


def build_package(box: SystemdBox, package: str, version: str, content: str) -> str:
    """A .deb of PACKAGE shipping /var/lib/PACKAGE/file with CONTENT, built in the box."""
    tree = box.scratch / f"{package}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: test <test@example.org>\nDescription: overlay-diff test package\n")
    (tree / f"var/lib/{package}").mkdir(parents=True)
    (tree / f"var/lib/{package}/file").write_text(content)
    deb = f"{tree}.deb"
    box.run("dpkg-deb", "--root-owner-group", "--build", str(tree), deb)
    return deb


def diff_call(box: SystemdBox, name: str, shadowed_only: bool) -> list[list]:
    out = box.run("busctl", "--json=short", "call", BUS, path_of(name), SUBHOST_IFACE, "Diff",
                  "b", "true" if shadowed_only else "false").stdout
    return json.loads(out)["data"][0]


def test_upgrade_drift_hook_diff_and_reset(box: SystemdBox, subhosts: Subhosts) -> None:
    package = "obdiff" + secrets.token_hex(2)
    shipped = f"/var/lib/{package}/file"
    box.run("dpkg", "-i", build_package(box, package, "1.0", "v1\n"), env=APT_ENV)
    try:
        name, _ = subhosts.make("START=none\n")
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "start", subhosts.unit(name), timeout=60)
        box.run("/usr/local/sbin/overlay-go", name, "--", "sh", "-c",
                f"chmod 600 {shipped}; echo mine > /root/{name}-added; rm -f /etc/motd")
        rows = diff_call(box, name, False)
        assert [shipped, "modified", "file", False, 3] in rows, rows
        assert [f"/root/{name}-added", "added", "file", False, 5] in rows
        assert diff_call(box, name, True) == []
        time.sleep(0.05)
        # the host upgrades the package through apt: the hook reports in the journal
        upgrade = box.run("apt-get", "install", "-y", "-q",
                          build_package(box, package, "2.0", "v2 upgraded\n"),
                          env=APT_ENV, timeout=300)
        assert f"subhost(s) {name} shadow files of the changed packages" in upgrade.stderr
        box.run("journalctl", "--sync")
        journal = box.run("journalctl", "-t", "overlay-boot-dpkg", "--no-pager", "-o",
                          "cat").stdout
        assert (f"subhost {name} shadows 1 file(s) of the just changed package {package}: "
                f"{shipped}") in journal, journal
        # Subhost.Diff and the command agree: the copy now shadows the upgraded file
        assert diff_call(box, name, True) == [[shipped, "modified", "file", True, 3]]
        out = box.run("/usr/local/sbin/overlay-diff", "--json", "--shadowed", name).stdout
        assert [json.loads(line)["path"] for line in out.splitlines()] == [shipped]
        packages = box.run("/usr/local/sbin/overlay-diff", "--packages", name, shipped).stdout
        assert f"{package}  files: {shipped} (shadowed)" in packages
        # root only: the policy refuses others
        refused = box.run(*NOBODY, "busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Diff",
                          "b", "false", check=False)
        assert refused.returncode != 0 and "Access denied" in refused.stderr
        # a running subhost is not reset; once stopped it is, and the upgrade shows
        r = box.run("/usr/local/sbin/overlay-reset", "--no-backup", name, "--shadowed",
                    check=False)
        assert r.returncode == 1 and "is running" in r.stderr
        box.run("systemctl", "stop", subhosts.unit(name), timeout=60)
        r = box.run("/usr/local/sbin/overlay-reset", name, "--shadowed")
        assert f"removed {shipped} (1 upper entries)" in r.stdout
        assert "backup: /var/backups/overlay-boot/" in r.stdout
        box.run("systemctl", "start", subhosts.unit(name), timeout=60)
        seen = box.run("/usr/local/sbin/overlay-go", name, "--", "cat", shipped).stdout
        assert seen == "v2 upgraded\n"
    finally:
        box.run("dpkg", "--purge", package, env=APT_ENV, check=False)
        box.run("rm", "-rf", "/var/backups/overlay-boot", check=False)
