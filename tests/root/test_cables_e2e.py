"""Cables of a running subhost, end to end: bridge + MAC with a real ping, unbridged + ifup.

Traffic only flows between the subhost's netns and a netns this test creates itself (its
"peer"), through a bridge this test creates; nothing else is ever a target.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests.leaks import REPO, command, run_command, snapshot, wait_clean

pytestmark = pytest.mark.root


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


@pytest.fixture
def net_lab():
    """A bridge on the host with a test-owned peer netns plugged into it (address 10.231.7.1)."""
    tag = secrets.token_hex(2)
    bridge, peer_ns, veth = f"tbr{tag}", f"tpeer{tag}", f"tpv{tag}"
    made_bridge = made_ns = False
    try:
        ip("link", "add", bridge, "type", "bridge")
        made_bridge = True
        ip("link", "set", bridge, "up")
        ip("netns", "add", peer_ns)
        made_ns = True
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth9", "netns", peer_ns)
        ip("link", "set", veth, "master", bridge, "up")
        ip("-n", peer_ns, "addr", "add", "10.231.7.1/24", "dev", "eth9")
        ip("-n", peer_ns, "link", "set", "eth9", "up")
        ip("-n", peer_ns, "link", "set", "lo", "up")
        yield bridge, peer_ns
    finally:
        if made_ns:
            subprocess.run(["ip", "netns", "del", peer_ns], check=False)
        subprocess.run(["ip", "link", "del", veth], check=False, stderr=subprocess.DEVNULL)
        if made_bridge:
            subprocess.run(["ip", "link", "del", bridge], check=False)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    for sub in ("live", "root", "work"):
        (tmp_path / sub).mkdir()
    return tmp_path


def test_bridged_cable_with_mac_carries_traffic(net_lab, base: Path) -> None:
    bridge, peer_ns = net_lab
    name = "t" + secrets.token_hex(3)
    conf = base / f"{name}.conf"
    conf.write_text(f"BASE=.\nSTART=none\nLOG={base}/log\nCABLES={bridge}=02:31:07:00:00:02\n")
    before = snapshot()
    started = run_command("boot", str(conf))
    try:
        assert started.returncode == 0, started.stderr
        host_end = Path(f"/sys/class/net/{name}0")
        assert (host_end / "master").resolve().name == bridge
        assert int((host_end / "flags").read_text(), 16) & 1, "host end is not up"
        inside = run_command("go", name, "--", "cat", "/sys/class/net/eth0/address")
        assert inside.stdout.strip() == "02:31:07:00:00:02"
        setup = run_command(
            "go", name, "--", "sh", "-c",
            "ip link set eth0 up && ip addr add 10.231.7.2/24 dev eth0",
        )
        assert setup.returncode == 0, setup.stderr
        ping = run_command("go", name, "--", "ping", "-c1", "-W2", "10.231.7.1")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # And the other way round, from the test's own peer namespace.
        back = subprocess.run(
            ["ip", "netns", "exec", peer_ns, "ping", "-c1", "-W2", "10.231.7.2"],
            capture_output=True, text=True,
        )
        assert back.returncode == 0, back.stdout
    finally:
        stopped = run_command("stop", str(conf))
    assert stopped.returncode == 0, stopped.stderr
    assert not wait_clean(before, name)


def test_unbridged_cable_is_up_and_ifup_configures_it(base: Path, tmp_path: Path) -> None:
    """ifupdown on the host knows the host end: overlay-boot ifup's it, and ifdown's it at stop.

    The test runs overlay-boot in a mount namespace of its own where /etc/network/interfaces
    is the test's file, so the host's real ifupdown configuration is never touched.
    """
    name = "t" + secrets.token_hex(3)
    interfaces = tmp_path / "interfaces"
    interfaces.write_text(f"iface {name}0 inet static\n    address 10.231.8.1/30\n")
    conf = base / f"{name}.conf"
    conf.write_text(f"BASE=.\nSTART=none\nLOG={base}/log\nCABLES= =\n")
    before = snapshot()
    script = (
        f"mount --bind {interfaces} /etc/network/interfaces && "
        f"exec {' '.join(command('boot'))} --foreground {conf}"
    )
    env = {
        "PYTHONPATH": str(REPO),
        "OVERLAY_BOOT_NO_SYSTEMD": "1",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        record = Path(f"/run/overlay-boot/{name}.json")
        for _ in range(400):
            if record.exists() and '"running"' in record.read_text():
                break
            if proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"])
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        addrs = subprocess.run(["ip", "-o", "addr", "show", "dev", f"{name}0"],
                               capture_output=True, text=True).stdout
        assert "10.231.8.1/30" in addrs
        assert ifupdown_state(name + "0") == name + "0"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        state_file = Path(f"/run/network/ifstate.{name}0")
        stale = ifupdown_state(name + "0")
        state_file.unlink(missing_ok=True)
    assert proc.returncode == 0, out
    assert stale == "", "ifupdown still thinks the host end is configured"
    assert not wait_clean(before, name)


def ifupdown_state(ifname: str) -> str:
    """What ifupdown records for IFNAME: its name while configured, empty when not."""
    try:
        return Path(f"/run/network/ifstate.{ifname}").read_text().strip()
    except FileNotFoundError:
        return ""
