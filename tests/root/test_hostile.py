"""Root inside a subhost against the host (README "Security model"), without systemd.

Each known way out (the security review's C1, H2, M5, M6 and more) is tried as root inside a
really running subhost by ``tests/hostile_probe.py`` and must fail; what an ordinary Debian
system needs of its root must keep working. ``CAPABILITIES=`` gives power back on purpose.
The systemd flavour of the same suite is tests/system/test_hostile.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.subhostkit import Lab

PROBE = Path(__file__).resolve().parents[1] / "hostile_probe.py"
LEFTOVER = "sleep 3217"  # what the PREMOUNT hook leaves running (M6)

#: What must fail, and how (errno names). Absent kernel files are accepted where noted.
REFUSED = {
    "core_pattern": {"EROFS"},
    "drop_caches": {"EROFS"},
    "proc_keys": {"EACCES", "absent"},
    "kallsyms": {"EACCES", "absent"},
    "timer_list": {"EACCES", "absent"},
    "sysfs_write": {"EROFS"},
    "adjtime_write": {"EROFS", "absent"},
    "mknod_block": {"EPERM"},
    "mknod_char": {"EPERM"},
    "open_by_handle_at": {"EPERM"},
    "mount_proc": {"EPERM"},
    "remount_proc_sys_rw": {"EPERM"},
    "unmount_mask": {"EPERM", "absent"},
    "settimeofday": {"EPERM"},
    "keyctl": {"ENOSYS"},
    "pid1_fd": {"EACCES", "EPERM"},
    "pid1_mem": {"EACCES", "EPERM"},
    "pid1_root": {"EACCES", "EPERM"},
    "dumpable_pid1": {"EACCES", "EPERM"},
    "other_subhost": {"ENOENT", "EACCES"},
    "planted_device": {"EACCES"},
    "hook_leftover_cwd": {"EACCES", "EPERM"},
}
#: Capabilities root inside must not have (capabilities(7) numbers).
DROPPED = {"sys_admin": 21, "sys_module": 16, "sys_rawio": 17, "sys_time": 25,
           "dac_read_search": 2, "mknod": 27, "syslog": 34, "mac_admin": 33,
           "mac_override": 32, "bpf": 39, "perfmon": 38, "sys_pacct": 20, "wake_alarm": 35,
           "block_suspend": 36, "sys_ptrace": 19, "sys_boot": 22}


def probe(lab: Lab, name: str, *args: str) -> dict:
    result = lab.go(name, "/usr/bin/python3", "-", *args, input=PROBE.read_text())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def bounding_set(results: dict) -> int:
    return int(results["capabilities"]["CapBnd"], 16)


@pytest.fixture
def hostile(lab: Lab) -> tuple[Lab, str, dict]:
    """A running subhost, another one with a secret in its UPPER, a device node planted in
    the first one's UPPER and a process its PREMOUNT hook left; the probe's results."""
    other = lab.config("START=none\n")
    secret = other.parent / "root/secret"
    secret.write_text("other subhost's secret\n")
    assert lab.start(other).returncode == 0

    conf = lab.config(HOSTILE_CONFIG)
    name = start_planted(lab, conf)
    return lab, name, probe(lab, name, str(secret), PLANTED, LEFTOVER)


HOSTILE_CONFIG = f"START=none\nPREMOUNT=true; {LEFTOVER} & true\n"
PLANTED = "/tmp/planted-null"  # inside the subhost


def start_planted(lab: Lab, conf: Path) -> str:
    """Plant a device node in CONF's UPPER from the host (the kernel's null device: harmless,
    but any node would do), then start it; its NAME."""
    upper = conf.parent / "root"
    (upper / "tmp").mkdir()
    os.mknod(upper / PLANTED.lstrip("/"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    result = lab.start(conf)
    assert result.returncode == 0, result.stderr
    return conf.stem


def test_every_known_way_out_is_refused(hostile: tuple[Lab, str, dict]) -> None:
    _, _, results = hostile
    wrong = {key: results[key] for key, allowed in REFUSED.items()
             if results.get(key) not in allowed}
    assert not wrong, f"not refused as expected: {wrong}"


@pytest.mark.needs("modules")
def test_module_loading_is_refused(hostile: tuple[Lab, str, dict]) -> None:
    _, _, results = hostile
    assert results["init_module"] == "EPERM" and results["modprobe_path"] == "EROFS"


@pytest.mark.needs("sysrq")
def test_sysrq_trigger_is_refused(hostile: tuple[Lab, str, dict]) -> None:
    _, _, results = hostile
    assert results["sysrq_trigger"] in ("EROFS", "EACCES")


@pytest.mark.needs("kcore")
def test_kcore_is_masked(hostile: tuple[Lab, str, dict]) -> None:
    _, _, results = hostile
    assert results["kcore"] == "EACCES"


def test_capabilities_that_reach_the_host_are_gone(hostile: tuple[Lab, str, dict]) -> None:
    _, _, results = hostile
    bounding = bounding_set(results)
    kept = {name for name, number in DROPPED.items() if bounding >> number & 1}
    assert not kept, f"still in the bounding set: {kept}"
    assert int(results["capabilities"]["CapAmb"], 16) == 0
    assert int(results["capabilities"]["CapInh"], 16) == 0


def test_mounts_inside(hostile: tuple[Lab, str, dict]) -> None:
    """nodev root, read-only kernel interfaces but the subhost's network sysctls, and L9's
    bounded /dev/shm and devpts."""
    _, _, results = hostile
    mounts = {point: text.split() for point, text in results["mounts"].items()}
    assert "nodev" in mounts["/"][0].split(",")
    assert mounts["/sys"][0].startswith("ro,") and mounts["/proc/sys"][0].startswith("ro,")
    assert mounts["/proc/sys/net"][0].startswith("rw,")
    assert "size=65536k" in mounts["/dev/shm"][1].split(",")
    assert "max=1024" in mounts["/dev/pts"][1].split(",")


def test_ordinary_services_still_work(hostile: tuple[Lab, str, dict]) -> None:
    _, _, results = hostile
    assert results["ordinary"] == {
        "chown": "ok", "bind_port_80": "ok", "chroot": "ok", "net_sysctl": "ok",
        "setuid_passwd": "ok", "su": "ok",
    }


def test_double_slash_symlink_in_upper_writes_nothing_on_the_host(lab: Lab,
                                                                  tmp_path: Path) -> None:
    """H2: ``UPPER/etc/network -> //HOSTDIR`` and a file SHARE through ``//HOSTFILE``."""
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    source = tmp_path / "shared-file"
    source.write_text("shared\n")
    conf = lab.config(f"START=none\nSHARE={source}:/etc/obfile\n")
    upper = conf.parent / "root"
    (upper / "etc").mkdir()
    (upper / "etc/network").symlink_to(f"/{hostdir}")
    (upper / "etc/obfile").symlink_to(f"/{hostdir}/created-file")
    result = lab.start(conf)
    assert result.returncode == 0, result.stderr
    assert list(hostdir.iterdir()) == []
    inside = lab.go(conf.stem, "cat", "/etc/obfile", f"{hostdir}/interfaces")
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.startswith("shared\n# Generated by overlay-boot")


def test_capabilities_grant_one_more(lab: Lab) -> None:
    conf = lab.config("START=none\nCAPABILITIES=sys_ptrace CAP_SYS_NICE\n")
    assert lab.start(conf).returncode == 0
    results = probe(lab, conf.stem)
    bounding = bounding_set(results)
    assert bounding >> DROPPED["sys_ptrace"] & 1
    assert not bounding >> DROPPED["sys_admin"] & 1
    assert results["core_pattern"] == "EROFS" and results["keyctl"] == "ENOSYS"
    log = (conf.parent / "subhost.log").read_text()
    assert "CAPABILITIES=sys_ptrace grants capabilities beyond the default" in log


def test_capabilities_all_is_1_6_4s_full_root(lab: Lab) -> None:
    conf = lab.config("START=none\nCAPABILITIES=all\n")
    assert lab.start(conf).returncode == 0
    results = probe(lab, conf.stem)
    have = int(Path("/proc/self/status").read_text().split("CapBnd:")[1].split()[0], 16)
    assert bounding_set(results) == have
    assert results["core_pattern"] == "ok" and results["keyctl"] != "ENOSYS"
    assert "every capability: unconfined" in (conf.parent / "subhost.log").read_text()


def test_unknown_capability_is_a_config_error(lab: Lab) -> None:
    conf = lab.config("START=none\nCAPABILITIES=sys_ptrace cap_fly\n")
    result = lab.start(conf)
    assert result.returncode == 78
    assert f"{conf}:4: CAPABILITIES" in result.stderr and "cap_fly" in result.stderr


# --- the seed README's MTA example: real sshd and rsyslog inside a confined subhost ----------

MTA_START = "START=rsyslog ssh\n"


def prepare_mta(upper: Path, scratch: Path) -> None:
    """root's SSH key for a login over the subhost's own loopback (privilege separation:
    chroot, setuid), all in UPPER."""
    key = scratch / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = upper / "root/.ssh"
    ssh.mkdir(parents=True, mode=0o700)
    (upper / "root").chmod(0o700)
    (ssh / "authorized_keys").write_text((scratch / "client_key.pub").read_text())
    (ssh / "authorized_keys").chmod(0o600)
    (ssh / "id_ed25519").write_bytes(key.read_bytes())
    (ssh / "id_ed25519").chmod(0o600)


MTA_CHECK = (
    "set -e\n"
    "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
    "-o LogLevel=ERROR root@127.0.0.1 'echo login $(id -u) $(hostname)'\n"
    "logger -t mta-example marker-$$\n"
    "for i in $(seq 50); do grep -q marker-$$ /var/log/syslog && break; sleep 0.1; done\n"
    "grep -c marker-$$ /var/log/syslog\n"
)


def check_mta(output: str, name: str) -> None:
    assert output.split("\n")[:2] == [f"login 0 {name}", "1"], output


def test_seed_mta_example_runs_confined(lab: Lab, tmp_path: Path) -> None:
    conf = lab.config(MTA_START)
    prepare_mta(conf.parent / "root", tmp_path)
    result = lab.start(conf)
    assert result.returncode == 0, result.stderr
    inside = lab.go(conf.stem, "sh", "-c", MTA_CHECK)
    assert inside.returncode == 0, (inside.stdout, inside.stderr,
                                    (conf.parent / "subhost.log").read_text())
    check_mta(inside.stdout, conf.stem)
    log = (conf.parent / "subhost.log").read_text()
    assert "ssh: start: done" in log and "rsyslog: start: done" in log, log


def test_fifos_planted_for_pid1_do_not_block_it(lab: Lab) -> None:
    """L8: root inside replaces /dev/null and /etc/passwd with FIFOs; PID 1 still serves."""
    conf = lab.config("START=/bin/true\n")
    assert lab.start(conf).returncode == 0
    name = conf.stem
    plant = lab.go(name, "sh", "-c", "rm /dev/null && mkfifo /dev/null && "
                   "cp /etc/passwd /etc/passwd.real && rm /etc/passwd && mkfifo /etc/passwd")
    assert plant.returncode == 0, plant.stderr
    leader = lab.record(name)["leader_pid"]
    os.kill(leader, signal.SIGINT)  # restart the services: PID 1 spawns /bin/true again
    log = conf.parent / "subhost.log"
    deadline = time.monotonic() + 20
    while log.read_text().count("start: done") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().count("start: done") == 2, log.read_text()
    # PID 1 reads root's home and shell from /etc/passwd (now a FIFO) for every request.
    served = lab.go(name, "/bin/echo", "still-serving", timeout=20)
    assert served.returncode == 0 and served.stdout == "still-serving\n", served
