"""The project's own units, sandboxed (trust boundary, SPEC §6), in a booted box.

`systemd-analyze security` rates the units; a subhost's processes meet the unit's device
policy, bounding set and system call filter (run by `overlay-go` as children of its PID 1, in
the unit's cgroup); the sandboxed services still see the network namespaces and records of
subhosts started after them.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator

import pytest

from .box import SystemdBox
from .busnames import BUS, SUBHOST_IFACE
from .subhosts import Subhosts, install
from .test_netd import ask_service

pytestmark = pytest.mark.system


# What a root inside tries; each result is "ok" or the errno's name. Harmless on an
# unsandboxed unit too: read-only or invalid arguments, nodes removed again.
PROBE = r'''
import ctypes, errno, json, os, platform, stat
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"keyctl": 250, "finit_module": 313},
      "aarch64": {"keyctl": 219, "finit_module": 273}}[platform.machine()]

def result(ret):
    return "ok" if ret >= 0 else errno.errorcode[ctypes.get_errno()]

def node(kind, major, minor):
    path = f"/tmp/probe-{kind}{major}-{minor}"
    try:
        os.mknod(path, (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600,
                 os.makedev(major, minor))
    except OSError as exc:
        return errno.errorcode[exc.errno]
    os.unlink(path)
    return "ok"

timex = ctypes.create_string_buffer(512)  # struct timex, modes 0: only reads the clock
out = {
    "adjtimex": result(libc.adjtimex(timex)),
    "keyctl": result(libc.syscall(NR["keyctl"], 0, -3, 0)),  # KEYCTL_GET_KEYRING_ID, session
    "finit_module": result(libc.syscall(NR["finit_module"], -1, b"", 0)),
    "swapon": result(libc.swapon(b"/nonexistent-swap", 0)),
    "reboot": result(libc.reboot(0x5EED)),  # no such command (in a PID namespace: EINVAL)
    "klogctl": result(libc.klogctl(10, None, 0)),  # SYSLOG_ACTION_SIZE_BUFFER
    "open_by_handle_at": result(libc.open_by_handle_at(-1, None, 0)),
    "mknod /dev/mem": node("c", 1, 1),
    "mknod a disk": node("b", 8, 0),
    "mknod /dev/net/tun": node("c", 10, 200),
    "mknod a pts": node("c", 136, 0),
    "mknod /dev/null": node("c", 1, 3),
}
bounding = int(next(line.split()[1] for line in open("/proc/self/status")
                    if line.startswith("CapBnd:")), 16)
out["bounding"] = bounding
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    out["realtime"] = "ok"
except OSError as exc:
    out["realtime"] = errno.errorcode[exc.errno]
print(json.dumps(out))
'''

# capability numbers (linux/capability.h) the unit takes out of the bounding set
DROPPED_CAPS = {"SYS_MODULE": 16, "SYS_BOOT": 22, "SYS_TIME": 25,
                "SYS_PACCT": 20, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34,
                "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38,
                "BPF": 39, "AUDIT_CONTROL": 30}
KEPT_CAPS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETPCAP": 8,
             "NET_ADMIN": 12, "SYS_CHROOT": 18, "MKNOD": 27}


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    yield systemd_box


def exposure(box: SystemdBox, unit: str) -> float:
    out = box.run("systemd-analyze", "security", "--no-pager", unit, check=False).stdout
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", out)
    assert found, out
    return float(found.group(1))


def started(box: SystemdBox, subhosts: Subhosts, text: str = "START=none\n") -> str:
    name, _ = subhosts.make(text)
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name), timeout=60)
    assert subhosts.state(name) == "active"
    return name


def main_pid(box: SystemdBox, unit: str) -> int:
    return int(box.run("systemctl", "show", "-P", "MainPID", unit).stdout)


def status_of(box: SystemdBox, pid: int) -> dict[str, str]:
    lines = box.run("cat", f"/proc/{pid}/status").stdout.splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_exposure_levels(box: SystemdBox) -> None:
    assert exposure(box, "overlay-boot-bus.service") <= 5.0
    assert exposure(box, "overlay-boot-net.service") <= 4.0
    assert exposure(box, "overlay-boot@any.service") < 9.5  # systemd-nspawn@.service: 9.5


def test_a_root_inside_meets_the_unit_s_limits(box: SystemdBox, subhosts: Subhosts) -> None:
    # CAPABILITIES=mknod: PID 1 keeps mknod, so what refuses a device is the unit's policy.
    name = started(box, subhosts, "START=none\nCAPABILITIES=mknod\n")
    probe = json.loads(box.run("overlay-go", name, "--", "python3", "-c", PROBE).stdout)
    # kernel-global facilities: refused by the system call filter, as a missing privilege
    for call in ("adjtimex", "finit_module", "swapon", "reboot", "klogctl",
                 "open_by_handle_at"):
        assert probe[call] == "EPERM", (call, probe)
    # the keyring: PID 1's own filter answers first (as a kernel without keys would)
    assert probe["keyctl"] in ("EPERM", "ENOSYS"), probe
    # devices: none beyond a subhost's own /dev (the device cgroup refuses the node)
    assert probe["mknod /dev/mem"] == "EPERM", probe
    assert probe["mknod a disk"] == "EPERM", probe
    assert probe["mknod /dev/net/tun"] == "ok", probe
    assert probe["mknod /dev/null"] == "ok", probe
    assert probe["mknod a pts"] == "EPERM", probe  # ptys only through its devpts instance
    for cap, bit in DROPPED_CAPS.items():
        assert not probe["bounding"] & (1 << bit), f"CAP_{cap} is in the bounding set"
    for cap, bit in KEPT_CAPS.items():
        assert probe["bounding"] & (1 << bit), f"CAP_{cap} is not in the bounding set"
    assert probe["realtime"] == "EPERM", probe
    # what PID 1 itself made under the same policy
    console = box.run("overlay-go", name, "--", "stat", "-c", "%t:%T", "/dev/console").stdout
    assert console.strip() == "5:1"


def test_capabilities_all_gives_full_root_back(box: SystemdBox, subhosts: Subhosts) -> None:
    """CAPABILITIES=all: the generator's drop-in resets all the unit restricts, and PID 1
    confines nothing: 1.6.4's rating and powers come back."""
    name, _ = subhosts.make("START=none\nCAPABILITIES=all\n")
    unit = subhosts.unit(name)
    box.run("systemctl", "daemon-reload")
    assert exposure(box, unit) >= 9.5 > exposure(box, "overlay-boot@any.service")
    box.run("systemctl", "start", unit, timeout=60)
    probe = json.loads(box.run("overlay-go", name, "--", "python3", "-c", PROBE).stdout)
    for item in ("adjtimex", "keyctl", "klogctl", "mknod /dev/mem", "mknod a disk",
                 "mknod a pts", "realtime"):
        assert probe[item] == "ok", (item, probe)
    for bit in DROPPED_CAPS.values():
        assert probe["bounding"] & (1 << bit)


def test_services_see_subhosts_started_after_them(box: SystemdBox,
                                                  subhosts: Subhosts) -> None:
    """The bus and cable services keep running across subhost starts; a later subhost's
    netns bind and runtime record reach them (their mounts are slaves of the host's). The
    cable service is asked as a VLAN subhost's supervisor asks it (plain cables need none)."""
    first = started(box, subhosts, "START=none\n")
    ask_service(box, first, 0)
    box.run("busctl", "introspect", BUS, "/org/overlayboot/OverlayBoot1")
    net_pid = main_pid(box, "overlay-boot-net.service")
    bus_pid = main_pid(box, "overlay-boot-bus.service")
    assert net_pid and bus_pid
    for pid in (net_pid, bus_pid):
        status = status_of(box, pid)
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    second = started(box, subhosts, "START=none\n")
    ask_service(box, second, 0)
    built = f"cables of subhost {second} built (1 cables, 0 VLANs)"
    assert built in box.journal("overlay-boot-net.service", built)
    assert "eth0" in box.run("overlay-go", second, "--", "ls", "/sys/class/net").stdout.split()
    hostdir = box.scratch / f"{second}-shared"
    hostdir.mkdir()
    (hostdir / "file").write_text("from the host\n")
    box.run("busctl", "call", BUS, f"/org/overlayboot/OverlayBoot1/subhost/{second}",
            SUBHOST_IFACE, "Share", "ss", str(hostdir), "/mnt/from-host")
    assert box.run("overlay-go", second, "--", "cat", "/mnt/from-host/file").stdout \
        == "from the host\n"
    box.run("overlay-go", second, "--", "touch", "/mnt/from-host/written-inside")
    assert (hostdir / "written-inside").exists()  # a share stays writable
    assert main_pid(box, "overlay-boot-net.service") == net_pid
    assert main_pid(box, "overlay-boot-bus.service") == bus_pid
    for name in (first, second):
        box.run("systemctl", "stop", subhosts.unit(name), timeout=60)
        assert subhosts.leftovers(name) == []


@pytest.mark.needs("no-8021q")
def test_a_vlan_without_its_module_fails_clearly(box: SystemdBox, subhosts: Subhosts) -> None:
    """The unit may not load modules: 8021q must be loaded on the host, and the start says
    so (this box's kernel has no 8021q at all, nor may the unit load one)."""
    name, _ = subhosts.make(f"START=none\nCABLES= = =.{secrets.randbelow(4000) + 2}\n")
    box.run("systemctl", "daemon-reload")
    unit = subhosts.unit(name)
    assert box.run("systemctl", "start", unit, check=False, timeout=60).returncode != 0
    deadline = time.monotonic() + 10
    while subhosts.state(name) not in ("failed", "inactive") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box.run("systemctl", "show", "-P", "ExecMainStatus", unit).stdout.strip() == "78"
    journal = box.journal(unit, "modprobe 8021q")
    assert "CABLES" in journal and "`modprobe 8021q`" in journal, journal
    assert "/etc/modules-load.d/" in journal
    box.run("systemctl", "reset-failed", unit)
