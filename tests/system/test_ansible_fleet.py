"""A fleet: two booted systemd boxes as two hosts, reached over SSH on a bridge of the test's
own, and one playbook across both (the subhost module through Ansible's ssh connection, the
overlay_go connection plugin over SSH into the subhosts), then the inventory plugin listing
both hosts' subhosts over SSH and a play on what it found.

Everything network is the test's: a network namespace with a bridge (the controller runs
there), a veth from it into each box, addresses from 192.0.2.0/24 (TEST-NET-1); sshd runs only
inside the boxes, with host keys, a client key and known_hosts made here."""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ansible_runs import PLAYBOOKS, environment, recap

from .box import DEFAULT_MASK, SystemdBox
from .conftest import _finish
from .subhosts import install

pytestmark = pytest.mark.system

SUBNET = "192.0.2"
WHICH = "pypi"  # the box integration test runs both ansible-core versions; this one the newest


@dataclass
class Host:
    name: str
    box: SystemdBox
    address: str


@dataclass
class Fleet:
    hosts: list[Host]
    netns: str
    ssh_options: str  # for ssh, Ansible's ssh connection, overlay_go and the inventory plugin
    workdir: Path

    def controller(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """ARGV run in the bridge's network namespace (the controller's), on the host."""
        env = {**environment(WHICH), "HOME": str(Path.home()), "ANSIBLE_SSH_ARGS": self.ssh_options,
               "ANSIBLE_HOST_KEY_CHECKING": "True"}
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], env=env,
                              capture_output=True, text=True, timeout=timeout,
                              cwd=str(PLAYBOOKS), stdin=subprocess.DEVNULL)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True)
    return (path.with_suffix(".pub")).read_text().strip()


def start_sshd(host: Host, client_key: str) -> str:
    """sshd inside HOST's box on its test address only; returns its public host key."""
    keys = host.box.scratch / "ssh"
    keys.mkdir(mode=0o700)
    host_key = keygen(keys / "host_key")
    (keys / "authorized_keys").write_text(client_key + "\n")
    (keys / "sshd_config").write_text(
        f"ListenAddress {host.address}\nHostKey {keys}/host_key\n"
        f"AuthorizedKeysFile {keys}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPidFile none\nAllowTcpForwarding no\nX11Forwarding no\n"
        "Subsystem sftp internal-sftp\n")
    host.box.run("mkdir", "-p", "-m", "0755", "/run/sshd")
    host.box.run("systemd-run", "--unit=fleet-sshd", "--quiet", "/usr/sbin/sshd", "-D", "-e",
                 "-f", f"{keys}/sshd_config")
    deadline = time.monotonic() + 20
    while not host.box.run("ss", "-Hltn", f"src {host.address}:22").stdout.strip():
        assert time.monotonic() < deadline, host.box.journal("fleet-sshd.service")
        time.sleep(0.1)
    return host_key


@contextlib.contextmanager
def bridge_netns() -> Iterator[str]:
    name = f"obfleet-{secrets.token_hex(3)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "br0", "type", "bridge")
        ip("-n", name, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "set", "br0", "up")
        yield name
    finally:
        ip("netns", "del", name)
        assert not Path(f"/run/netns/{name}").exists()


def cable(netns: str, host: Host, index: int) -> None:
    """A veth from the bridge into HOST's box, with HOST's address on the box's end."""
    outside = f"fl{index}-{secrets.token_hex(2)}"
    ip("-n", netns, "link", "add", outside, "type", "veth", "peer", "name", "fleet0",
       "netns", str(host.box.pid))
    ip("-n", netns, "link", "set", outside, "master", "br0", "up")
    host.box.run("ip", "addr", "add", f"{host.address}/24", "dev", "fleet0")
    host.box.run("ip", "link", "set", "fleet0", "up")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("fleet")
    # The host's own ssh service (openssh-server is installed) stays off: only the test's sshd.
    mask = (*DEFAULT_MASK, "ssh.service", "ssh.socket", "sshd.service")
    boxes = [SystemdBox(tmp_path_factory.mktemp(f"box{i}") / "state", hostname=f"fleet{i}",
                        mask=mask) for i in (1, 2)]
    with contextlib.ExitStack() as stack:
        for box in boxes:
            stack.callback(_finish, box)
        netns = stack.enter_context(bridge_netns())
        hosts = [Host(f"fleet{i}", box, f"{SUBNET}.{10 + i}") for i, box in enumerate(boxes, 1)]
        client_key = keygen(workdir / "client_key")
        known = []
        for index, host in enumerate(hosts):
            host.box.boot()
            install(host.box)
            cable(netns, host, index)
            known.append(f"{host.address} {start_sshd(host, client_key)}")
        (workdir / "known_hosts").write_text("\n".join(known) + "\n")
        options = (f"-F /dev/null -i {workdir}/client_key -o IdentitiesOnly=yes "
                   f"-o UserKnownHostsFile={workdir}/known_hosts -o StrictHostKeyChecking=yes "
                   "-o BatchMode=yes -o ControlMaster=no -o ConnectTimeout=10")
        yield Fleet(hosts, netns, options, workdir)


def inventory(fleet: Fleet) -> Path:
    lines = ["[fleet]"]
    lines += [f"{h.name} ansible_host={h.address} scratch={h.box.scratch}" for h in fleet.hosts]
    lines += ["[fleet:vars]", "ansible_user=root", "ansible_python_interpreter=/usr/bin/python3"]
    path = fleet.workdir / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def plugin_source(fleet: Fleet) -> Path:
    path = fleet.workdir / "fleet.subhosts.yml"
    path.write_text(json.dumps({
        "plugin": "overlayboot.subhosts.subhosts",
        "hosts": [{"name": h.name, "address": h.address} for h in fleet.hosts],
        "ssh_args": fleet.ssh_options,
    }))
    return path


def test_fleet(fleet: Fleet) -> None:
    # The controller reaches both hosts only through the test's bridge.
    for host in fleet.hosts:
        result = fleet.controller("ssh", *shlex.split(fleet.ssh_options), f"root@{host.address}",
                                  "hostname")
        assert result.stdout.strip() == host.name, result.stderr
    sub = "w" + secrets.token_hex(3)
    fetched = fleet.workdir / "fetched"
    variables = json.dumps({"sub": sub, "fetched": str(fetched),
                            "overlay_go_ssh_args": fleet.ssh_options})
    hosts = str(inventory(fleet))
    try:
        run = fleet.controller("ansible-playbook", "-i", hosts, "fleet.yml", "-e", variables)
        assert run.returncode == 0, run.stdout + run.stderr
        first = recap(run.stdout)
        for host in fleet.hosts:
            member = f"{sub}@{host.name}"
            assert first[host.name]["changed"] == 1 and first[member]["changed"] == 2, first
            # In that host's subhost, not in the host itself nor in the other host.
            assert (host.box.scratch / sub / "root/etc/fleet-member").read_text() \
                == f"{member}\n"
            assert (fetched / member).read_text() == f"{member}\n"
            assert host.box.systemctl("is-enabled", f"overlay-boot@{sub}.service").stdout \
                .strip() == "enabled"
        again = fleet.controller("ansible-playbook", "-i", hosts, "fleet.yml", "-e", variables)
        assert again.returncode == 0, again.stdout + again.stderr
        assert all(h["changed"] == 0 for h in recap(again.stdout).values()), again.stdout

        listed = fleet.controller("ansible-inventory", "-i", str(plugin_source(fleet)), "--list")
        assert listed.returncode == 0, listed.stderr
        groups = json.loads(listed.stdout)
        for host in fleet.hosts:
            assert f"{sub}@{host.name}" in groups[f"subhosts_on_{host.name}"]["hosts"]
        found = fleet.controller("ansible-playbook", "-i", str(plugin_source(fleet)),
                                 "fleet-inventory.yml")
        assert found.returncode == 0, found.stdout + found.stderr
        assert {f"{sub}@{h.name}" for h in fleet.hosts} <= set(recap(found.stdout)), found.stdout
    finally:
        gone = fleet.controller("ansible-playbook", "-i", hosts, "fleet-absent.yml",
                                "-e", variables)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    for host in fleet.hosts:
        assert not (host.box.scratch / sub).exists()
        assert host.box.systemctl("is-active", f"overlay-boot@{sub}.service",
                                  check=False).stdout.strip() == "inactive"
