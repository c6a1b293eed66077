"""The Ansible collection (ansible/) in a booted systemd box, with Debian 12's ansible-core 2.14
and the current one from PyPI: two subhosts made, started and enabled by the subhost module;
files copied, templated and fetched and commands run inside one through the overlay_go
connection plugin; a second run changes nothing; a bad configuration is refused without
touching the running subhost; check mode and diff; the inventory plugin; state=absent."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from tests.ansible_runs import PLAYBOOKS, environment, recap

from .box import SystemdBox
from .subhosts import install

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> SystemdBox:
    install(systemd_box)
    return systemd_box


def playbook(box: SystemdBox, which: str, name: str, variables: dict[str, str],
             *options: str, check: bool = True) -> subprocess.CompletedProcess:
    result = box.run("ansible-playbook", "-i", "localhost,", str(PLAYBOOKS / name),
                     "-e", json.dumps(variables), *options, env=environment(which),
                     check=False, timeout=600, cwd=str(PLAYBOOKS))
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("which", ["debian-2.14", "pypi"])
def test_playbooks(box: SystemdBox, which: str) -> None:
    a, b = "a" + secrets.token_hex(3), "b" + secrets.token_hex(3)
    scratch = box.scratch / which
    fetched = box.scratch / f"fetched-{which}"
    variables = {"a": a, "b": b, "scratch": str(scratch), "fetched": str(fetched)}
    try:
        first = recap(playbook(box, which, "site.yml", variables).stdout)
        assert first["localhost"]["changed"] == 1 and first[a]["changed"] == 3, first
        for name in (a, b):
            unit = f"overlay-boot@{name}.service"
            assert box.systemctl("is-active", unit, check=False).stdout.strip() == "active"
            assert box.systemctl("is-enabled", unit, check=False).stdout.strip() == "enabled"
            conf = box.run("stat", "-c", "%U %a %F", f"/etc/overlay-boot/{name}.conf").stdout
            assert conf.split() == ["root", "644", "regular", "file"], conf
        # Files landed in subhost a's own view (its upper layer), not in the box's /etc.
        assert (scratch / a / "root/etc/fleet-copied").read_text() == f"copied into {a}\n"
        assert box.run("test", "-e", "/etc/fleet-copied", check=False).returncode == 1
        assert (fetched / "greeting").read_text() == \
            f"Hello from {a}, templated by Ansible.\n"
        assert (scratch / a / "root/root/greeting").stat().st_mode & 0o777 == 0o600

        second = recap(playbook(box, which, "site.yml", variables).stdout)
        assert all(host["changed"] == 0 for host in second.values()), second

        config = box.run("cat", f"/etc/overlay-boot/{a}.conf").stdout
        leader = box.systemctl("show", "-P", "MainPID", f"overlay-boot@{a}.service").stdout
        checked = playbook(box, which, "check.yml", variables, "--check", "--diff").stdout
        assert "+RAM_SIZE=30M" in checked and "-RAM_SIZE=20M" in checked, checked
        assert recap(checked)["localhost"]["changed"] == 1
        assert box.run("cat", f"/etc/overlay-boot/{a}.conf").stdout == config
        assert box.systemctl("show", "-P", "MainPID", f"overlay-boot@{a}.service").stdout \
            == leader

        listed = inventory(box, which)
        assert {f"{a}@localhost", f"{b}@localhost"} <= set(listed["subhosts_running"]["hosts"])
        hostvars = listed["_meta"]["hostvars"][f"{a}@localhost"]
        assert hostvars["ansible_host"] == a
        assert hostvars["ansible_connection"] == "overlayboot.subhosts.overlay_go"
        assert hostvars["overlay_subhost"]["unit"] == f"overlay-boot@{a}.service"
    finally:
        removed = recap(playbook(box, which, "absent.yml", variables).stdout)
    assert removed["localhost"]["changed"] == 1, removed
    for name in (a, b):
        unit = f"overlay-boot@{name}.service"
        assert box.systemctl("is-active", unit, check=False).stdout.strip() == "inactive"
        assert box.systemctl("is-enabled", unit, check=False).stdout.strip() != "enabled"
        assert not (scratch / name).exists()
        assert box.run("test", "-e", f"/etc/overlay-boot/{name}.conf",
                       check=False).returncode == 1
    assert recap(playbook(box, which, "absent.yml", variables).stdout)["localhost"]["changed"] \
        == 0


def inventory(box: SystemdBox, which: str) -> dict:
    """`ansible-inventory --list` of this box's subhosts through the inventory plugin."""
    source = box.scratch / f"{which}.subhosts.yml"
    source.write_text("plugin: overlayboot.subhosts.subhosts\nhosts: [localhost]\n")
    result = box.run("ansible-inventory", "-i", str(source), "--list",
                     env=environment(which), check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout, object_hook=_plain)


def _plain(value: dict) -> object:
    """ansible-core >= 2.19 lists values from inventory plugins as untrusted:
    {"__ansible_unsafe": VALUE}."""
    return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else value
