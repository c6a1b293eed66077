"""netns.py, net.py and pyroute_cables.py on the real kernel, with both interpreters the
project supports: the venv's (PyPI pyroute2 0.9.x) and Debian's /usr/bin/python3
(python3-pyroute2 0.7.2).

Each test runs the code under test in a subprocess of the interpreter. Cables are built from
inside a second namespace the test makes (``ip netns exec HOSTNS …``), standing in for the
host: the bridge, the "host" ends and all traffic stay in the test's own namespaces.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import subprocess
from pathlib import Path

import pytest

from overlay_boot import netns
from overlay_boot.config import Cable, Vlan

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
INTERPRETERS = {
    "venv": (str(REPO / ".venv/bin/python"), "0.9."),
    "debian": ("/usr/bin/python3", "0.7."),
}
PRELUDE = """\
import json, sys
from overlay_boot import net, netns, pyroute_cables
from overlay_boot.config import Cable, Vlan
from overlay_boot.errors import SubhostError
"""


def _unique(prefix: str, length: int = 5) -> str:
    return prefix + "".join(secrets.choice(string.ascii_lowercase + string.digits)
                            for _ in range(length))


@pytest.fixture(params=sorted(INTERPRETERS))
def python(request) -> str:
    """The interpreter under test, checked to carry the expected pyroute2 version."""
    interpreter, version = INTERPRETERS[request.param]
    found = subprocess.run(
        [interpreter, "-c", "import importlib.metadata as m; print(m.version('pyroute2'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert found.startswith(version), f"{interpreter} has pyroute2 {found}"
    return interpreter


def run_py(python: str, code: str, in_netns: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [python, "-c", PRELUDE + code]
    if in_netns:
        command = ["ip", "netns", "exec", in_netns, *command]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    return result


def ip(*args: str, in_netns: str | None = None, check: bool = True) -> str:
    command = ["ip", *args] if in_netns is None else ["ip", "-n", in_netns, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
    return result.stdout


def link(ifname: str, in_netns: str) -> dict:
    return json.loads(ip("-j", "-d", "link", "show", "dev", ifname, in_netns=in_netns))[0]


def links(in_netns: str) -> list[str]:
    return [entry["ifname"] for entry in json.loads(ip("-j", "link", in_netns=in_netns))]


def is_up(ifname: str, in_netns: str) -> bool:
    return "UP" in link(ifname, in_netns)["flags"]


@pytest.fixture
def spaces():
    """(subhost netns, stand-in host netns), both removed afterwards whatever happened."""
    sub, host = _unique("t"), _unique("t")
    try:
        netns.create(sub)
        netns.create(host)
        yield sub, host
    finally:
        netns.remove(sub)
        netns.remove(host)


# The supervisor's call (plain cables in-process with stdlib rtnetlink, VLANs through the
# service or a forked child) and the pyroute2 builder the service and that child run.
BUILDERS = {"net": "net.build_cables", "pyroute2": "pyroute_cables.build"}


@pytest.fixture(params=sorted(BUILDERS))
def builder(request) -> str:
    return request.param


def build(python: str, sub: str, host: str, cables, vlans=(), check: bool = True,
          builder: str = "net"):
    """BUILDERS[BUILDER] run by PYTHON inside HOST; only "pyroute2" may import pyroute2."""
    code = (f"try:\n"
            f"    {BUILDERS[builder]}({sub!r}, {list(cables)!r}, {list(vlans)!r})\n"
            f"except SubhostError as exc:\n"
            f"    print('ERROR', exc)\n"
            f"    sys.exit(3)\n"
            f"print('pyroute2 in parent:', any(m.startswith('pyroute2') for m in sys.modules))\n")
    result = run_py(python, code, in_netns=host, check=False)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"pyroute2 in parent: {builder == 'pyroute2'}" in result.stdout
    return result


def vlan_supported(host: str) -> bool:
    """Whether this kernel has 802.1Q (probed in the test's own netns)."""
    ip("link", "add", "tprobe0", "type", "veth", "peer", "name", "tprobe1", in_netns=host)
    try:
        ip("link", "add", "link", "tprobe0", "name", "tprobe0.9", "type", "vlan", "id", "9",
           in_netns=host, check=False)
        return "tprobe0.9" in links(host)
    finally:
        ip("link", "del", "tprobe0", in_netns=host, check=False)


# -- netns.py -----------------------------------------------------------------------------

def test_create_like_ip_netns_add(python):
    name = _unique("t")
    try:
        out = run_py(python, f"print(netns.create({name!r}))").stdout.strip()
        assert out == f"/run/netns/{name}"
        assert name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True, check=True).stdout.split()
        shown = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "link"],
                               capture_output=True, text=True, check=True).stdout
        assert [line.split(":")[1].strip() for line in shown.splitlines()] == ["lo"]
        assert is_up("lo", name)
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        run_dir = [line for line in mountinfo if line.split()[4] == "/run/netns"]
        assert run_dir and "shared:" in run_dir[-1], "/run/netns must be a shared mount"
        assert any(line.split()[4] == f"/run/netns/{name}" for line in mountinfo)
        again = run_py(python, f"netns.create({name!r})", check=False)
        assert again.returncode != 0 and "exists already" in again.stderr
    finally:
        netns.remove(name)


def test_remove_is_clean_and_idempotent(python):
    name = _unique("t")
    run_py(python, f"netns.create({name!r}); assert netns.exists({name!r})")
    out = run_py(python, f"netns.remove({name!r}); netns.remove({name!r}); "
                         f"print(netns.exists({name!r}))").stdout
    assert out.strip() == "False"
    assert not os.path.lexists(f"/run/netns/{name}")
    assert f"/run/netns/{name} " not in Path("/proc/self/mountinfo").read_text()
    run_py(python, f"netns.remove({_unique('t')!r})")  # never existed: no error


# -- net.py -------------------------------------------------------------------------------

def test_child_imports_iproute_without_the_package_init(python):
    """The child's fast path really is taken (it saves ~50-100 ms) and yields IPRoute."""
    out = run_py(python, "cls = pyroute_cables.load_iproute()\n"
                         "print(cls.__name__, sorted({m.split('.')[1] for m in sys.modules\n"
                         "      if m.startswith('pyroute2.')} & {'ndb', 'ipdb', 'conntrack'}))"
                 ).stdout
    assert out.strip() == "IPRoute []"


def test_bridged_cable_with_mac_carries_traffic(python, builder, spaces):
    sub, host = spaces
    bridge = _unique("tbr", 4)
    ip("link", "add", bridge, "type", "bridge", in_netns=host)
    cables = [Cable(0, f"{sub}0", "eth0", bridge, "02:5e:10:21:32:43"),
              Cable(1, f"{sub}1", "eth1", None, None)]
    build(python, sub, host, cables, builder=builder)

    assert links(sub) == ["lo", "eth0", "eth1"]
    assert link("eth0", sub)["address"] == "02:5e:10:21:32:43"
    assert not is_up("eth0", sub) and not is_up("eth1", sub)  # the subhost brings them up
    assert link(f"{sub}0", host)["master"] == bridge
    assert is_up(f"{sub}0", host)
    assert is_up(f"{sub}1", host) and "master" not in link(f"{sub}1", host)

    net = f"10.213.{secrets.randbelow(250) + 1}"
    ip("addr", "add", f"{net}.1/24", "dev", bridge, in_netns=host)
    ip("link", "set", bridge, "up", in_netns=host)
    ip("addr", "add", f"{net}.2/24", "dev", "eth0", in_netns=sub)
    ip("link", "set", "eth0", "up", in_netns=sub)
    ping = subprocess.run(["ip", "netns", "exec", sub, "ping", "-c1", "-W1", f"{net}.1"],
                          capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr


@pytest.mark.needs("no-8021q")
def test_vlan_cable_refused_without_8021q(python, spaces):
    """On a kernel without 802.1Q (CONFIG_VLAN_8021Q) building a VLAN fails with a message
    naming the interface, and nothing is left behind."""
    sub, host = spaces
    cables = [Cable(0, f"{sub}0", "eth0", None, None)]
    vlans = [Vlan(0, 302, f"{sub}0.302", "eth0.302", None)]
    assert not vlan_supported(host)
    result = build(python, sub, host, cables, vlans, check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert re.search(rf"{sub}0\.302.*not supported", result.stdout), result.stdout
    assert links(host) == ["lo"] and links(sub) == ["lo"]


@pytest.mark.needs("8021q")
def test_vlan_cable(python, spaces):
    """A VLAN on the cable carries traffic."""
    sub, host = spaces
    cables = [Cable(0, f"{sub}0", "eth0", None, None)]
    vlans = [Vlan(0, 302, f"{sub}0.302", "eth0.302", None)]
    build(python, sub, host, cables, vlans)
    assert is_up(f"{sub}0.302", host)
    assert link(f"{sub}0.302", host)["linkinfo"]["info_data"]["id"] == 302
    assert link("eth0.302", sub)["linkinfo"]["info_data"]["id"] == 302
    net = f"10.213.{secrets.randbelow(250) + 1}"
    ip("addr", "add", f"{net}.1/24", "dev", f"{sub}0.302", in_netns=host)
    for ifname in ("eth0", "eth0.302"):
        ip("link", "set", ifname, "up", in_netns=sub)
    ip("addr", "add", f"{net}.2/24", "dev", "eth0.302", in_netns=sub)
    ping = subprocess.run(["ip", "netns", "exec", sub, "ping", "-c1", "-W1", f"{net}.1"],
                          capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_failure_names_the_interface_and_rolls_back(python, builder, spaces):
    sub, host = spaces
    cables = [Cable(0, f"{sub}0", "eth0", None, None),
              Cable(1, f"{sub}1", "eth1", "tnobr", None)]
    result = build(python, sub, host, cables, check=False, builder=builder)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"adding {sub}1 to bridge tnobr: bridge tnobr does not exist" in result.stdout
    assert links(host) == ["lo"] and links(sub) == ["lo"]


def test_an_existing_host_end_is_refused_and_rolled_back(python, builder, spaces):
    """The second cable's host end exists already (made by someone else): the start fails
    naming it, the first cable is removed again, the foreign link stays."""
    sub, host = spaces
    ip("link", "add", f"{sub}1", "type", "bridge", in_netns=host)
    cables = [Cable(0, f"{sub}0", "eth0", None, None),
              Cable(1, f"{sub}1", "eth1", None, None)]
    result = build(python, sub, host, cables, check=False, builder=builder)
    assert result.returncode == 3, result.stdout + result.stderr
    assert (f"creating veth pair {sub}1 / eth1 (in netns {sub}): File exists "
            "(the interface exists already)") in result.stdout
    assert links(host) == ["lo", f"{sub}1"] and links(sub) == ["lo"]


def test_removing_the_netns_removes_the_host_ends(python, spaces):
    sub, host = spaces
    ends = [f"{sub}0", f"{sub}1"]
    build(python, sub, host, [Cable(0, ends[0], "eth0", None, None),
                              Cable(1, ends[1], "eth1", None, None)])
    # /sys/class/net under `ip netns exec` shows the stand-in host's links.
    out = run_py(python, f"print(json.dumps(netns.host_links({ends + ['tnone0']!r})))\n"
                         f"netns.remove({sub!r})\n"
                         f"print(json.dumps(netns.wait_gone({ends!r}, 5.0)))",
                 in_netns=host).stdout.splitlines()
    assert json.loads(out[0]) == ends
    assert json.loads(out[1]) == []
    assert links(host) == ["lo"]


def test_delete_links(python, spaces):
    sub, host = spaces
    build(python, sub, host, [Cable(0, f"{sub}0", "eth0", None, None)], builder="pyroute2")
    assert links(sub) == ["lo", "eth0"]
    run_py(python, f"netns.delete_links([{sub + '0'!r}, 'tnone0'])\n"
                   f"netns.delete_links([{sub + '0'!r}])\n"
                   f"assert not any(m.startswith('pyroute2') for m in sys.modules)",
           in_netns=host)
    assert links(host) == ["lo"] and links(sub) == ["lo"]


def test_host_ends_are_tagged_and_cleanup_removes_only_tagged_ones(python, spaces):
    """Host ends carry the alias overlay-boot:NAME (review M2); cleanup.teardown deletes those
    and the netns netns.create marked, and leaves a foreign link with a cable's name."""
    sub, host = spaces
    ours, foreign = f"{sub}0", f"{sub}1"
    build(python, sub, host, [Cable(0, ours, "eth0", None, None)])
    assert link(ours, host)["ifalias"] == f"overlay-boot:{sub}"
    ip("link", "add", foreign, "type", "veth", "peer", "name", f"{sub}p", in_netns=host)
    run_py(python, f"from overlay_boot import cleanup\n"
                   f"assert netns.tagged({ours!r}, {sub!r}) and netns.ours({sub!r})\n"
                   f"assert not netns.tagged({foreign!r}, {sub!r})\n"
                   f"cleanup.teardown({sub!r}, [{ours!r}, {foreign!r}])",
           in_netns=host)
    assert sorted(links(host)) == sorted(["lo", foreign, f"{sub}p"])
    assert not netns.exists(sub)
