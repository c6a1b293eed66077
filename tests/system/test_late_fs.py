"""A subhost whose config lies on a file system mounted after the generators ran (a separate
/srv or /opt, as the seed README's /opt/mta): its unit waits for that mount and reads the
config when it starts (the security review's M3)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from .box import SystemdBox
from .subhosts import Subhosts, install

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    yield systemd_box


def test_config_on_a_later_file_system_is_started_at_boot(box: SystemdBox,
                                                          subhosts: Subhosts) -> None:
    name = "t" + secrets.token_hex(3)
    source = box.scratch / f"late-{name}"  # what the mount unit brings in at /srv/late
    for sub in ("live", "root", "work"):
        (source / name / sub).mkdir(parents=True)
    (source / name / f"{name}.conf").write_text("BASE=.\nSTART=none\n")
    mount_unit = "srv-late.mount"
    box.write_file(f"/etc/systemd/system/{mount_unit}",
                   f"[Mount]\nWhat={source}\nWhere=/srv/late\nType=none\nOptions=bind\n")
    box.write_file("/etc/subhosts.conf", f"/srv/late/{name}/{name}.conf\n")
    subhosts.names.append(name)
    unit = subhosts.unit(name)
    try:
        box.run("systemctl", "daemon-reload")  # the generator runs: /srv/late is not mounted
        assert box.run("systemctl", "is-active", mount_unit, check=False).stdout.strip() \
            != "active"
        cat = box.run("systemctl", "cat", unit).stdout
        assert f"RequiresMountsFor=/srv/late/{name}/{name}.conf" in cat
        wants = box.run("systemctl", "show", "-P", "Wants", "multi-user.target").stdout
        assert unit in wants.split()  # started at boot
        # What boot does: start the wanted unit; it pulls the mount in first.
        box.run("systemctl", "start", unit, timeout=60)
        assert box.run("systemctl", "is-active", mount_unit).stdout.strip() == "active"
        assert subhosts.state(name) == "active"
        assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
    finally:
        box.run("systemctl", "stop", unit, check=False)
        box.run("systemctl", "stop", mount_unit, check=False)
        box.run("rm", "-f", "/etc/subhosts.conf", f"/etc/systemd/system/{mount_unit}")
        box.run("systemctl", "daemon-reload")
