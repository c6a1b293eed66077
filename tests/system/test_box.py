"""The test box itself: a real systemd that boots, runs units, has its own bus, reboots on
the same state, and leaves nothing on the host."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from .box import SystemdBox

pytestmark = pytest.mark.system


def test_system_is_running(systemd_box: SystemdBox) -> None:
    assert systemd_box.run("systemctl", "is-system-running").stdout.strip() == "running"
    assert systemd_box.failed_units() == []


def test_unit_file_starts_and_logs(systemd_box: SystemdBox) -> None:
    unit = f"t{secrets.token_hex(3)}.service"
    marker = f"hello from {unit}"
    systemd_box.write_file(
        f"/etc/systemd/system/{unit}",
        f"[Service]\nType=oneshot\nExecStart=/bin/echo {marker}\n")
    systemd_box.run("systemctl", "daemon-reload")
    systemd_box.run("systemctl", "start", unit)
    assert marker in systemd_box.journal(unit, marker)


def test_systemd_run_wait(systemd_box: SystemdBox) -> None:
    r = systemd_box.run("systemd-run", "--wait", "--pipe", "--quiet", "/bin/sh", "-c",
                        "echo out; exit 3", check=False)
    assert (r.returncode, r.stdout) == (3, "out\n")


def test_machined_answers(systemd_box: SystemdBox) -> None:
    r = systemd_box.run("machinectl", "list", "--no-legend")
    assert r.returncode == 0
    assert systemd_box.run("systemctl", "is-active", "systemd-machined").stdout.strip() \
        == "active"


def test_own_system_bus(systemd_box: SystemdBox) -> None:
    # The box's bus: its systemd (PID 1 in the box) owns org.freedesktop.systemd1 there.
    out = systemd_box.run("busctl", "status", "--no-pager", "org.freedesktop.systemd1").stdout
    assert "\nPID=1\n" in f"\n{out}"
    assert systemd_box.run("systemctl", "is-active", "dbus.service").stdout.strip() == "active"


def test_isolation(systemd_box: SystemdBox) -> None:
    box = systemd_box
    assert box.run("hostname").stdout.strip() == box.hostname
    assert box.run("ls", "/sys/class/net").stdout.split() == ["lo"]
    assert box.run("stat", "-f", "-c", "%T", "/sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    assert box.run("systemd-detect-virt", "--container", check=False).stdout.strip() \
        == "container-other"
    assert box.run("cat", "/proc/1/environ").stdout.split("\0").count(
        "container=overlay-boot-test") == 1
    mounts = box.run("findmnt", "-rn", "-o", "TARGET,FSTYPE,OPTIONS").stdout.splitlines()
    table = {line.split()[0]: line.split()[1:] for line in mounts}
    assert table["/"][0] == "overlay"
    assert table["/dev"][0] == "tmpfs"
    assert table["/sys"][1].startswith("ro,")
    assert table["/proc/sys"][1].startswith("ro,")
    assert table["/proc/sys/net"][1].startswith("rw,")
    # systemd itself runs in the box's own cgroup, below the host cgroup made for it
    assert box.run("cat", "/proc/1/cgroup").stdout.splitlines()[-1] == "0::/init.scope"


def test_repo_and_python_inside(systemd_box: SystemdBox) -> None:
    r = systemd_box.run("/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])",
                        cwd="/work/main")
    assert r.stdout.strip().startswith("(3, ")
    assert systemd_box.run("test", "-f", "/work/main/pyproject.toml").returncode == 0


def test_scratch_takes_an_overlay_upper(systemd_box: SystemdBox) -> None:
    """Subhost roots in tests: lowerdir=/ with the upper layer on the scratch directory."""
    base = systemd_box.scratch / f"t{secrets.token_hex(3)}"
    script = f"""
        mkdir -p {base}/upper {base}/work {base}/live
        mount -t overlay overlay -o lowerdir=/,upperdir={base}/upper,workdir={base}/work \
            {base}/live
        echo hi > {base}/live/etc/obtest-scratch
        cat {base}/live/etc/os-release >/dev/null
        umount {base}/live
        cat {base}/upper/etc/obtest-scratch
    """
    assert systemd_box.run("sh", "-ec", script).stdout == "hi\n"
    # the scratch directory is the host's: what the box wrote is there
    assert (base / "upper/etc/obtest-scratch").read_text() == "hi\n"


def test_reboot_keeps_state_and_leaves_nothing(new_box: SystemdBox) -> None:
    box = new_box
    unit = f"t{secrets.token_hex(3)}.service"
    box.boot()
    box.write_file("/var/lib/obtest/marker", "kept\n")
    box.write_file(f"/etc/systemd/system/{unit}",
                   "[Service]\nExecStart=/bin/sleep infinity\n"
                   "[Install]\nWantedBy=multi-user.target\n")
    box.run("systemctl", "enable", "--now", unit)
    first_pid = box.pid
    seen = box.leftovers()  # the check sees a running box
    assert any(x.startswith("process ") for x in seen) and any("cgroup" in x for x in seen)
    box.poweroff()
    assert box.leftovers() == []
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)

    box.boot()
    assert box.run("cat", "/var/lib/obtest/marker").stdout == "kept\n"
    assert box.run("systemctl", "is-active", unit).stdout.strip() == "active"
    assert box.state == "running"
    box.poweroff()
    assert box.leftovers() == []
    box.destroy()
    assert not box.state_dir.exists()


def test_kill_leaves_nothing(new_box: SystemdBox) -> None:
    new_box.boot()
    pid = new_box.pid
    new_box.kill()
    assert not new_box.running
    assert new_box.leftovers() == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(Exception):  # noqa: B017 - any error: the box is gone
        new_box.run("true")


def test_run_timeout_kills_the_command(systemd_box: SystemdBox) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        systemd_box.run("sleep", "30", timeout=0.5)
    procs = systemd_box.run("ps", "-eo", "comm").stdout.split()
    assert "sleep" not in procs
