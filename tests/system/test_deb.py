"""The Debian package in a booted systemd: installed with apt (Debian's python3-* packages,
not PyPI's), a subhost started as overlay-boot@NAME, entered and stopped; a reinstall leaves a
running subhost alone; `man` works; purge leaves no file behind. And the upgrade from Debian's
own overlay-boot 1.6.4 package keeps /etc/subhosts.conf and its subhosts working."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debbuild import build_deb

from .box import SystemdBox

pytestmark = pytest.mark.system

# Debian's overlay-boot 1.6.4 (the shell scripts; in Debian unstable), for the upgrade test.
# Debian's overlay-boot 1.6.4, downloaded by .ci/setup (or named by OVERLAY_BOOT_OLD_DEB).
REFERENCE_DIR = Path("/var/cache/overlay-boot-tests")
OLD_DEB = Path(os.environ.get("OVERLAY_BOOT_OLD_DEB") or next(
    iter(sorted(REFERENCE_DIR.glob("overlay-boot_1.6.4-*_*.deb"))),
    REFERENCE_DIR / "overlay-boot_1.6.4-1_all.deb"))
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
DEPENDENCIES = {"pyroute2": "python3-pyroute2", "dbus_next": "python3-dbus-next",
                "pystemd": "python3-pystemd", "overlay_boot": "overlay-boot"}


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture
def box(new_box: SystemdBox) -> Iterator[SystemdBox]:
    """A freshly booted box per test: each test installs and purges on its own dpkg state."""
    new_box.boot()
    # A `make install` on the host (/usr/local) would shadow the package inside the box.
    new_box.run("sh", "-c", "rm -rf /usr/local/sbin/overlay-* "
                "/usr/local/lib/python3*/dist-packages/overlay_boot")
    yield new_box


def copy_in(box: SystemdBox, path: Path) -> str:
    """PATH copied to the box's scratch directory (the same path inside the box)."""
    target = box.scratch / path.name
    shutil.copy2(path, target)
    return str(target)


def make_subhost(box: SystemdBox, name: str) -> Path:
    """A subhost directory on the scratch filesystem, 1.6.4 style: NAME.conf with BASE=."""
    base = box.scratch / name
    for sub in ("root", "work", "live"):
        (base / sub).mkdir(parents=True)
    (base / f"{name}.conf").write_text("BASE=.\nSTART=none\n")
    return base / f"{name}.conf"


def package_files(box: SystemdBox) -> list[str]:
    """What dpkg installed for overlay-boot, directories left out."""
    listed = box.run("dpkg", "-L", "overlay-boot").stdout.split("\n")
    out = box.run("sh", "-c", 'for p; do [ -d "$p" ] && [ ! -L "$p" ] || echo "$p"; done',
                  "-", *[p for p in listed if p.startswith("/")]).stdout
    return out.split()


def run_scenario(box: SystemdBox, name: str) -> None:
    """start / overlay-go NAME -- hostname / stop, as with the source install."""
    unit = f"overlay-boot@{name}.service"
    box.systemctl("start", unit, timeout=120)
    assert box.systemctl("is-active", unit).stdout.strip() == "active"
    assert box.run("/usr/sbin/overlay-go", name, "--", "hostname").stdout.strip() == name
    assert name in box.run("/usr/sbin/overlay-go").stdout
    box.systemctl("stop", unit, timeout=120)
    assert box.systemctl("is-active", unit, check=False).stdout.strip() == "inactive"
    assert box.run("test", "-e", f"/run/netns/{name}", check=False).returncode == 1


def assert_purged(box: SystemdBox, files: list[str]) -> None:
    left = box.run("sh", "-c", 'for p; do [ ! -e "$p" ] && [ ! -L "$p" ] || echo "$p"; done',
                   "-", *files).stdout.split()
    assert left == [], f"purge left files of the package: {left}"
    status = box.run("dpkg-query", "-W", "-f", "${db:Status-Status}", "overlay-boot",
                     check=False)
    assert status.returncode != 0 or status.stdout in ("", "not-installed")
    left_dirs = box.run("sh", "-c", "ls -d /etc/overlay-boot /usr/lib/python3/dist-packages/"
                        "overlay_boot /var/log/overlay-boot 2>/dev/null", check=False).stdout
    assert left_dirs == ""
    assert box.systemctl("cat", "overlay-boot@.service", check=False).returncode != 0


def test_install_run_upgrade_purge(box: SystemdBox, deb: Path) -> None:
    path = copy_in(box, deb)
    box.run("apt-get", "install", "-y", "-q", "--no-install-recommends", path,
            env=APT_ENV, timeout=300)

    # the commands run on Debian's python3 with Debian's packages
    probe = ("import importlib, sys\nfor m in sys.argv[1:]: "
             "print(importlib.import_module(m).__file__)")
    files = box.run("/usr/bin/python3", "-I", "-c", probe, *DEPENDENCIES).stdout.split()
    for module, file in zip(DEPENDENCIES, files, strict=True):
        assert file.startswith("/usr/lib/python3/dist-packages/"), (module, file)
        owner = box.run("dpkg", "-S", file).stdout.split(":")[0]
        assert owner == DEPENDENCIES[module], (module, file, owner)

    installed = package_files(box)
    assert "/usr/sbin/overlay-boot" in installed

    page = box.run("man", "overlay-boot", env={"MANPAGER": "cat", "MANWIDTH": "80"}).stdout
    assert "overlay-boot" in page and "SYNOPSIS" in page
    conf_page = box.run("man", "5", "overlay-boot.conf", env={"MANPAGER": "cat"}).stdout
    assert "CABLES" in conf_page

    name = "t" + secrets.token_hex(3)
    config = make_subhost(box, name)
    box.run("ln", "-s", str(config), f"/etc/overlay-boot/{name}.conf")
    box.systemctl("daemon-reload")
    run_scenario(box, name)

    # A running subhost survives an upgrade (here: a reinstall) of the package.
    unit = f"overlay-boot@{name}.service"
    box.systemctl("start", unit, timeout=120)
    main_pid = box.systemctl("show", "-p", "MainPID", "--value", unit).stdout.strip()
    box.run("dpkg", "-i", path, env=APT_ENV, timeout=300)
    assert box.systemctl("show", "-p", "MainPID", "--value", unit).stdout.strip() == main_pid
    assert box.systemctl("is-active", unit).stdout.strip() == "active"
    assert box.run("/usr/sbin/overlay-go", name, "--", "hostname").stdout.strip() == name
    box.systemctl("stop", unit, timeout=120)

    box.run("rm", f"/etc/overlay-boot/{name}.conf")
    box.run("apt-get", "purge", "-y", "-q", "overlay-boot", env=APT_ENV, timeout=300)
    assert_purged(box, installed)
    assert box.failed_units() == []


def test_upgrade_from_1_6_4(box: SystemdBox, deb: Path) -> None:
    if not OLD_DEB.is_file():
        pytest.fail(f"Debian's overlay-boot 1.6.4 package is needed at {OLD_DEB} "
                    "(or OVERLAY_BOOT_OLD_DEB)")
    box.run("dpkg", "-i", copy_in(box, OLD_DEB), env=APT_ENV, timeout=300)
    assert box.run("sh", "-c", "ls /etc/rc2.d/S*subhosts").returncode == 0

    # The admin's 1.6.4 set-up: a subhost listed in the boot list.
    name = "t" + secrets.token_hex(3)
    config = make_subhost(box, name)
    box.run("sh", "-c", f"echo {config} >> /etc/subhosts.conf")
    boot_list = box.run("cat", "/etc/subhosts.conf").stdout

    box.run("apt-get", "install", "-y", "-q", "--no-install-recommends", copy_in(box, deb),
            env=APT_ENV, timeout=300)
    assert box.run("dpkg-query", "-W", "-f", "${Version}", "overlay-boot").stdout == "2.0.0-1"

    # the boot list is kept as it was, without a prompt or a .dpkg-dist beside it
    assert box.run("cat", "/etc/subhosts.conf").stdout == boot_list
    assert box.run("sh", "-c", "ls /etc/subhosts.conf.*", check=False).stdout == ""
    # the old init script, its rc.d links, subhosts@.service and the scripts are gone
    gone = box.run("sh", "-c", "ls -d /etc/init.d/subhosts* /etc/rc?.d/*subhosts "
                   "/usr/lib/systemd/system/subhosts@.service /var/lib/overlay-boot "
                   "2>/dev/null", check=False).stdout
    assert gone == ""
    assert box.systemctl("cat", "subhosts.service", check=False).returncode != 0
    # the generator turned the boot list into a unit that is started at boot
    unit = f"overlay-boot@{name}.service"
    wants = box.systemctl("show", "-p", "Wants", "--value", "multi-user.target").stdout
    assert unit in wants.split()
    run_scenario(box, name)

    installed = package_files(box)
    box.run("apt-get", "purge", "-y", "-q", "overlay-boot", env=APT_ENV, timeout=300)
    assert_purged(box, installed + ["/etc/subhosts.conf"])
    assert box.failed_units() == []


# The last commit whose subhosts run as a supervisor and a forked PID 1 (two processes each).
TWO_PROCESS_MODEL = "8dca7f1"


@pytest.fixture(scope="module")
def two_process_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb-old"), commit=TWO_PROCESS_MODEL)


def _record(box: SystemdBox, name: str) -> dict:
    return json.loads(box.run("cat", f"/run/overlay-boot/{name}.json").stdout)


def test_upgrade_from_the_two_process_model(box: SystemdBox, deb: Path,
                                            two_process_deb: Path) -> None:
    """A subhost started by the old package (its supervisor stays, PID 1 is forked from it)
    keeps running through the upgrade, is entered and stopped by the new package's
    commands and unit (the new ExecStopPost= after daemon-reload), and leaves nothing; the
    next start is the new model."""
    new = copy_in(box, deb)
    old = str(box.scratch / f"old-{two_process_deb.name}")  # the same version: another name
    shutil.copy2(two_process_deb, old)
    box.run("apt-get", "install", "-y", "-q", "--no-install-recommends", old, env=APT_ENV,
            timeout=300)
    name = "t" + secrets.token_hex(3)
    config = make_subhost(box, name)
    box.run("ln", "-s", str(config), f"/etc/overlay-boot/{name}.conf")
    box.systemctl("daemon-reload")
    unit = f"overlay-boot@{name}.service"
    box.systemctl("start", unit, timeout=120)
    main_pid = int(box.systemctl("show", "-p", "MainPID", "--value", unit).stdout)
    record = _record(box, name)
    assert record["supervisor_pid"] == main_pid != record["leader_pid"]  # the old model

    box.run("dpkg", "-i", new, env=APT_ENV, timeout=300)
    box.systemctl("daemon-reload")
    assert int(box.systemctl("show", "-p", "MainPID", "--value", unit).stdout) == main_pid
    assert box.systemctl("is-active", unit).stdout.strip() == "active"
    assert box.run("/usr/sbin/overlay-go", name, "--", "hostname").stdout.strip() == name
    box.systemctl("stop", unit, timeout=120)
    assert box.systemctl("is-active", unit, check=False).stdout.strip() == "inactive"
    left = box.run("sh", "-c", f"ls -d /run/netns/{name} /run/overlay-boot/{name}.* "
                   f"/sys/class/net/{name}* 2>/dev/null", check=False).stdout.split()
    assert left == []

    box.systemctl("start", unit, timeout=120)
    main_pid = int(box.systemctl("show", "-p", "MainPID", "--value", unit).stdout)
    record = _record(box, name)
    assert record["supervisor_pid"] == record["leader_pid"] == main_pid  # the new model
    box.systemctl("stop", unit, timeout=120)
    assert box.systemctl("is-active", unit, check=False).stdout.strip() == "inactive"
    box.run("rm", f"/etc/overlay-boot/{name}.conf")
    box.run("apt-get", "purge", "-y", "-q", "overlay-boot", env=APT_ENV, timeout=300)
    assert box.failed_units() == []
