"""A bridged cable at boot (issue 14, item 7): a subhost of the boot list whose cable joins a
bridge that a unit of the host makes during boot. The subhost's unit is ordered after the
host's network set-up (network.target) and after the bridge's device unit (the generator's
drop-in), so the bridge exists when the cable is plugged in."""

from __future__ import annotations

import secrets
import time

import pytest

from .box import SystemdBox
from .subhosts import REPO, Subhosts

pytestmark = pytest.mark.system


def bridge_unit(bridge: str) -> str:
    """A unit making BRIDGE like the host's network set-up does (ifupdown's networking.service,
    systemd-networkd): before network.target. It takes its time, so that a subhost started
    without waiting for it would find no bridge and fail."""
    return (
        "[Unit]\n"
        f"Description=the bridge {bridge}\n"
        "Wants=network.target\n"
        "Before=network.target\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStartPre=/bin/sleep 2\n"
        f"ExecStart=/sbin/ip link add {bridge} type bridge\n"
        f"ExecStart=/sbin/ip link set {bridge} up\n"
        f"ExecStop=/sbin/ip link delete {bridge}\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def monotonic(box: SystemdBox, unit: str, prop: str) -> int:
    return int(box.systemctl("show", "-P", prop, unit).stdout.strip() or 0)


def wait_active(box: SystemdBox, made: Subhosts, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while made.state(name) not in ("active", "failed"):
        assert time.monotonic() < deadline, box.journal(made.unit(name))
        time.sleep(0.1)
    assert made.state(name) == "active", box.journal(made.unit(name))


def test_bridged_subhost_of_the_boot_list_waits_for_its_bridge(new_box: SystemdBox) -> None:
    box = new_box
    box.boot()
    box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    tag = secrets.token_hex(3)
    bridge, bridge_service = f"e2ebr{tag}", f"e2e-bridge-{tag}.service"
    made = Subhosts(box)
    name, path = made.make(f"START=none\nCABLES={bridge}=\n", link=False)
    unit = made.unit(name)
    box.write_file(f"/etc/systemd/system/{bridge_service}", bridge_unit(bridge))
    box.write_file("/etc/subhosts.conf", f"{path}\n")
    try:
        box.systemctl("daemon-reload")
        box.systemctl("enable", bridge_service)
        # what the generator made of it: started at boot, after the bridge and the network
        assert unit in box.systemctl("show", "-P", "Wants", "multi-user.target").stdout.split()
        after = box.systemctl("show", "-P", "After", unit).stdout.split()
        device = box.run("systemd-escape", "--path", "--suffix=device",
                         f"/sys/subsystem/net/devices/{bridge}").stdout.strip()
        assert device in after and "network.target" in after

        box.poweroff()
        assert box.leftovers() == []
        box.boot()  # a new network namespace: no bridge until its unit makes it
        wait_active(box, made, name)
        link = box.run("ip", "-o", "link", "show", f"{name}0").stdout
        assert f" master {bridge} " in link, link
        assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
        # the bridge's unit had finished before the subhost's started
        bridge_up = monotonic(box, bridge_service, "ActiveEnterTimestampMonotonic")
        subhost_start = monotonic(box, unit, "InactiveExitTimestampMonotonic")
        assert 0 < bridge_up <= subhost_start
        box.systemctl("stop", unit, timeout=120)
        assert made.leftovers(name) == []
    finally:
        box.run("rm", "-f", "/etc/subhosts.conf")
        box.systemctl("disable", "--now", bridge_service, check=False)
        box.systemctl("daemon-reload")
