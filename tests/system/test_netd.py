"""Cables in a really booted systemd: plain ones made by the supervisor (no cable service on
the start path, cold or warm), and the socket-activated cable service overlay-boot-net, which
subhosts with VLANs use, through its lifetime: activated by a request, idle exit, activated
again by the next one.

This box's kernel has no 802.1Q, so a VLAN subhost is refused before its start (test_sandbox);
the service is driven here the way such a subhost's supervisor drives it:
``net.build_through_service`` run by Debian's /usr/bin/python3 from the installed tree.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from ..root.test_netd import wait_for
from .box import SystemdBox
from .subhosts import Subhosts, install

pytestmark = pytest.mark.system

NET = "overlay-boot-net.service"
SOCKET = "overlay-boot-net.socket"
IDLE_DROPIN = "/run/systemd/system/overlay-boot-net.service.d/idle.conf"
# What a VLAN subhost's supervisor does for its cables: ask the service (a child if none).
ASK = """\
import sys
from overlay_boot import net
from overlay_boot.config import Cable
name, index = sys.argv[1], int(sys.argv[2])
net.build_through_service(name, [Cable(index, f"{name}{index}", f"eth{index}", None, None)])
print("pyroute2 in client:", any(m.startswith("pyroute2") for m in sys.modules))
"""


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    yield systemd_box


def state(box: SystemdBox, unit: str) -> str:
    return box.run("systemctl", "is-active", unit, check=False).stdout.strip()


def ask_service(box: SystemdBox, name: str, index: int) -> str:
    """Cable INDEX of running subhost NAME, asked for as a VLAN subhost's supervisor asks."""
    return box.run("/usr/bin/python3", "-I", "-c", ASK, name, str(index), timeout=60).stdout


def test_plain_cables_cold_start_without_the_service(box: SystemdBox,
                                                     subhosts: Subhosts) -> None:
    """The first start after the service went idle (or after boot): the supervisor makes the
    bridged cable with its MAC itself; the service is not started for it."""
    bridge = "tbr" + secrets.token_hex(2)
    box.run("ip", "link", "add", bridge, "type", "bridge")
    try:
        name, _ = subhosts.make(f"START=none\nCABLES={bridge}=02:31:07:00:00:09 =\n")
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "stop", NET)
        assert state(box, NET) == "inactive"
        box.run("systemctl", "start", subhosts.unit(name))
        assert subhosts.state(name) == "active"
        assert state(box, SOCKET) == "active"  # the unit still wants it, for VLANs
        assert state(box, NET) == "inactive"
        assert f"subhost {name} built" not in box.journal(NET)
        host = json.loads(box.run("ip", "-j", "-d", "link", "show", "dev", f"{name}0").stdout)[0]
        assert host["master"] == bridge and "UP" in host["flags"]
        assert host["ifalias"] == f"overlay-boot:{name}"
        assert "UP" in json.loads(box.run("ip", "-j", "link", "show", "dev",
                                          f"{name}1").stdout)[0]["flags"]
        inside = box.run("overlay-go", name, "--", "cat", "/sys/class/net/eth0/address",
                         "/sys/class/net/eth1/operstate").stdout.split()
        assert inside == ["02:31:07:00:00:09", "down"]  # the subhost brings its ends up
        box.run("systemctl", "stop", subhosts.unit(name))
        assert subhosts.leftovers(name) == []
    finally:
        box.run("ip", "link", "del", bridge, check=False)


def test_plain_cables_with_the_socket_masked(box: SystemdBox, subhosts: Subhosts) -> None:
    """No cable service at all (socket masked): plain cables are made all the same."""
    name, _ = subhosts.make("START=none\nCABLES= =\n")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "stop", SOCKET, NET)
    box.run("systemctl", "mask", "--runtime", SOCKET)
    try:
        box.run("systemctl", "start", subhosts.unit(name))
        assert subhosts.state(name) == "active"
        assert box.run("cat", f"/sys/class/net/{name}0/operstate", check=False).returncode == 0
        box.run("systemctl", "stop", subhosts.unit(name))
        assert subhosts.leftovers(name) == []
    finally:
        box.run("systemctl", "unmask", "--runtime", SOCKET)
        box.run("systemctl", "start", SOCKET)


def test_service_lifetime_activated_idle_exit_activated_again(box: SystemdBox,
                                                              subhosts: Subhosts) -> None:
    """A request starts the service (cold), it builds the cable into the subhost's netns; it
    exits when idle and the socket stays; the next request starts it again."""
    box.write_file(IDLE_DROPIN, "[Service]\nExecStart=\n"
                                "ExecStart=/usr/bin/python3 -I -m overlay_boot.netd --idle 2\n")
    box.run("systemctl", "daemon-reload")
    name, _ = subhosts.make("START=none\n")
    box.run("systemctl", "daemon-reload")
    try:
        box.run("systemctl", "stop", NET)
        box.run("systemctl", "start", subhosts.unit(name))
        assert state(box, NET) == "inactive"

        assert "pyroute2 in client: False" in ask_service(box, name, 5)
        built = f"cables of subhost {name} built (1 cables, 0 VLANs)"
        assert built in box.journal(NET, built)
        inside = box.run("overlay-go", name, "--", "ls", "/sys/class/net").stdout.split()
        assert "eth5" in inside
        host = json.loads(box.run("ip", "-j", "-d", "link", "show", "dev", f"{name}5").stdout)[0]
        assert host["ifalias"] == f"overlay-boot:{name}" and "UP" in host["flags"]

        assert wait_for(lambda: state(box, NET) == "inactive", 30), "no idle exit"
        assert state(box, SOCKET) == "active"
        assert box.run("systemctl", "show", "-P", "Result", NET).stdout.strip() == "success"

        ask_service(box, name, 6)  # a cold start of the service, through its socket
        assert "eth6" in box.run("overlay-go", name, "--", "ls", "/sys/class/net").stdout.split()
        assert wait_for(lambda: box.journal(NET).count(built) == 2, 10), box.journal(NET)
        box.run("systemctl", "stop", subhosts.unit(name))
        # the cables the service made went with the netns (the kernel takes a moment)
        assert wait_for(lambda: subhosts.leftovers(name) == [], 10), subhosts.leftovers(name)
    finally:
        box.run("rm", "-f", IDLE_DROPIN)
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "stop", NET)
