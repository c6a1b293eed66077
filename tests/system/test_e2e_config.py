"""End to end under systemd what was only unit-tested (issue 14, item 7): custom LIVE, UPPER and
WORK, UPPER=LOWER and UPPER=LOWER=LIVE, RAM_SIZE=none, SHARE=a:b and a shared file, a NAME
other than the file's, names with '-' and '_' (unit, cgroup, D-Bus path, machined), the D-Bus
error names, and the starting/stopping states seen during slow START services.

Every subhost is started with `systemctl start` in the booted box with the project installed
(`make install`) and checked as an admin sees it: `overlay-go`, `systemctl`, `busctl`,
`machinectl`, the files on disk. Each test ends with tests.leaks' check run inside the box.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .box import SystemdBox
from .busnames import BUS, MANAGER, MANAGER_IFACE, NO_SUCH_SUBHOST, NOBODY, SUBHOST_IFACE
from .subhosts import Subhosts, install, remains_in_box

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    # The first network namespace made in the box makes /run/netns a mount point, as
    # ip-netns(8) does, for good: made here, before the tests' snapshots.
    probe = "e2e-" + secrets.token_hex(3)
    systemd_box.run("ip", "netns", "add", probe)
    systemd_box.run("ip", "netns", "delete", probe)
    yield systemd_box


class LeakCheck:
    """tests/leaks.py inside the box: each subhost checked after the test (nothing named after
    it may exist any more), and no new loop device."""

    def __init__(self, box: SystemdBox) -> None:
        self.box = box
        self.loops = self.loop_devices()

    def loop_devices(self) -> set[str]:
        return set(self.box.run("losetup", "-a", "-n", "-O", "NAME,BACK-FILE",
                                check=False).stdout.splitlines())

    def check(self, names: list[str]) -> None:
        for name in names:
            left = remains_in_box(self.box, name)
            assert left == [], f"{name} left: {left}"
        assert self.loop_devices() - self.loops == set()


@pytest.fixture
def leakcheck(box: SystemdBox) -> Iterator[list[str]]:
    """Names appended here are checked with tests.leaks at the end, after the subhosts
    fixture stopped them (request this fixture first)."""
    names: list[str] = []
    check = LeakCheck(box)
    yield names
    check.check(names)


def start(box: SystemdBox, subhosts: Subhosts, name: str, leakcheck: list[str]) -> None:
    leakcheck.append(name)
    box.systemctl("daemon-reload")
    box.systemctl("start", subhosts.unit(name), timeout=120)
    assert subhosts.state(name) == "active"


def inside(box: SystemdBox, name: str, script: str) -> str:
    return box.run("overlay-go", name, "--", "sh", "-c", script).stdout


def path_of(name: str) -> str:
    """The subhost's object path, escaped as sd-bus does (written out here, not taken from
    the product): letters and digits stay (not a leading digit), every other byte is _ and
    two hex digits."""
    label = "".join(c if c.isascii() and c.isalnum() and not (i == 0 and c.isdigit())
                    else "".join(f"_{b:02x}" for b in c.encode())
                    for i, c in enumerate(name))
    return f"{MANAGER}/subhost/{label}"


def prop(box: SystemdBox, name: str, member: str) -> object:
    out = box.run("busctl", "--json=short", "get-property", BUS, path_of(name), SUBHOST_IFACE,
                  member).stdout
    return json.loads(out)["data"]


def dbus_send(box: SystemdBox, *args: str, user: tuple[str, ...] = ()) -> tuple[int, str]:
    """dbus-send --system --print-reply: its exit status and what it printed (an error
    reply is printed as "Error NAME: text")."""
    r = box.run(*user, "dbus-send", "--system", "--print-reply", f"--dest={BUS}", *args,
                check=False)
    return r.returncode, r.stdout + r.stderr


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not in time: {what}"
        time.sleep(0.05)


# -- the root filesystem variants ------------------------------------------------------------


def test_custom_live_upper_and_work(box: SystemdBox, leakcheck: list[str],
                                    subhosts: Subhosts) -> None:
    name, _ = subhosts.make("START=none\nLIVE=mnt/top\nUPPER=data/layer\nWORK=data/scratch\n")
    base = box.scratch / name
    for sub in ("mnt/top", "data/layer", "data/scratch"):
        (base / sub).mkdir(parents=True)
    start(box, subhosts, name, leakcheck)
    assert prop(box, name, "RootDirectory") == str(base / "mnt/top")
    inside(box, name, "echo custom > /etc/e2e-marker")
    assert (base / "data/layer/etc/e2e-marker").read_text() == "custom\n"
    assert not (base / "root/etc").exists()  # the default UPPER is not used
    # the overlay is made of exactly those directories
    mounts = inside(box, name, "cat /proc/self/mountinfo")
    root = next(line for line in mounts.splitlines() if line.split()[4] == "/")
    assert f"upperdir={base}/data/layer" in root and f"workdir={base}/data/scratch" in root
    box.systemctl("stop", subhosts.unit(name), timeout=120)
    assert (base / "data/layer/etc/e2e-marker").exists()  # UPPER persists


@pytest.fixture
def tree(box: SystemdBox) -> Iterator[Path]:
    """A whole system tree on the scratch directory for UPPER=LOWER: an overlay of the box's
    root (its writes go to a layer of this test's own); unmounted at the end."""
    top = box.scratch / f"tree-{secrets.token_hex(3)}"
    for sub in ("layer", "work", "root"):
        (top / sub).mkdir(parents=True)
    box.run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir=/,upperdir={top}/layer,workdir={top}/work", str(top / "root"))
    try:
        yield top
    finally:
        box.run("umount", str(top / "root"))


@pytest.mark.parametrize("variant", ["bind", "premounted"])
def test_upper_equal_to_lower(box: SystemdBox, leakcheck: list[str], subhosts: Subhosts,
                              tree: Path, variant: str) -> None:
    """UPPER=LOWER: the tree is the subhost's root itself (bound on LIVE, or used as it is
    when LIVE is the same): what is written inside is written into the tree."""
    live = tree / "root" if variant == "premounted" else None
    text = f"START=none\nUPPER={tree}/root\nLOWER={tree}/root\n"
    if live is not None:
        text += f"LIVE={live}\n"
    name, _ = subhosts.make(text)
    start(box, subhosts, name, leakcheck)
    assert prop(box, name, "RootDirectory") == str(live or box.scratch / name / "live")
    assert inside(box, name, "hostname").strip() == name
    inside(box, name, f"echo {variant} > /e2e-{name}")
    # the tree is mounted in the box (not on the host, where this test runs)
    assert box.run("cat", f"{tree}/root/e2e-{name}").stdout == f"{variant}\n"
    assert (tree / "layer" / f"e2e-{name}").exists()  # through the tree's own overlay
    assert not (box.scratch / name / "root" / f"e2e-{name}").exists()
    box.systemctl("stop", subhosts.unit(name), timeout=120)
    assert subhosts.state(name) == "inactive"
    # the tree is still mounted once, as before the start
    mounted = box.run("findmnt", "-n", "-o", "TARGET", str(tree / "root")).stdout.split()
    assert mounted == [str(tree / "root")]


def test_ram_size_none_keeps_run_on_the_root(box: SystemdBox, leakcheck: list[str],
                                             subhosts: Subhosts) -> None:
    plain, _ = subhosts.make("START=none\n")
    none, _ = subhosts.make("START=none\nRAM_SIZE=none\n")
    start(box, subhosts, plain, leakcheck)
    start(box, subhosts, none, leakcheck)
    assert inside(box, plain, "stat -f -c %T /run").strip() == "tmpfs"
    assert inside(box, none, "stat -f -c %T /run").strip() != "tmpfs"
    for name in (plain, none):
        inside(box, name, "echo kept > /run/e2e-marker")
    # without a tmpfs, /run is UPPER's: what is written there is kept on disk
    assert (box.scratch / none / "root/run/e2e-marker").read_text() == "kept\n"
    assert not (box.scratch / plain / "root/run/e2e-marker").exists()


# -- shares ------------------------------------------------------------------------------


def test_share_a_directory_elsewhere_and_a_file(box: SystemdBox, leakcheck: list[str],
                                                subhosts: Subhosts) -> None:
    tag = secrets.token_hex(3)
    shared_dir = box.scratch / f"share-{tag}"
    shared_dir.mkdir()
    (shared_dir / "from-host").write_text("host\n")
    shared_file = box.scratch / f"file-{tag}.conf"
    shared_file.write_text("setting=1\n")
    name, _ = subhosts.make(f"START=none\nSHARE={shared_dir}:/srv/e2e-in\n"
                            f"SHARE={shared_file}:/etc/e2e-file.conf\n")
    start(box, subhosts, name, leakcheck)
    assert inside(box, name, "cat /srv/e2e-in/from-host") == "host\n"
    inside(box, name, "echo subhost > /srv/e2e-in/from-subhost")
    assert (shared_dir / "from-subhost").read_text() == "subhost\n"
    assert inside(box, name, "cat /etc/e2e-file.conf") == "setting=1\n"
    shared_file.write_text("setting=2\n")  # the same file, not a copy
    assert inside(box, name, "cat /etc/e2e-file.conf") == "setting=2\n"
    box.systemctl("stop", subhosts.unit(name), timeout=120)
    # the subhost's writes are the host's; nothing of the share stays in UPPER but the
    # mount points made for it
    assert (shared_dir / "from-subhost").exists()
    assert not (box.scratch / name / "root/srv/e2e-in/from-host").exists()


# -- names -------------------------------------------------------------------------------


def test_name_other_than_the_file_name(box: SystemdBox, leakcheck: list[str],
                                       subhosts: Subhosts) -> None:
    file_name = "t" + secrets.token_hex(3)
    name = "n" + secrets.token_hex(3)
    _, path = subhosts.make(f"NAME={name}\nSTART=none\nCABLES==\n", name=file_name)
    subhosts.names.append(name)  # stopped and checked under its NAME
    box.systemctl("daemon-reload")
    # the unit is named after NAME, and reads the file
    cat = box.systemctl("cat", subhosts.unit(name)).stdout
    assert f"OVERLAY_BOOT_CONFIG={path}" in cat
    assert box.systemctl("cat", subhosts.unit(file_name), check=False).stdout.find(path) == -1
    start(box, subhosts, name, leakcheck)
    assert inside(box, name, "hostname").strip() == name
    assert box.run("test", "-e", f"/run/netns/{name}").returncode == 0
    assert box.run("test", "-e", f"/sys/class/net/{name}0").returncode == 0
    assert prop(box, name, "ConfigPath") == path
    assert box.run("overlay-go", file_name, "--", "true", check=False).returncode != 0
    # overlay-stop takes the config file too
    box.run("overlay-stop", path, timeout=120)
    assert subhosts.state(name) == "inactive"


@pytest.mark.parametrize("shape,registered", [("{}-web-1", True), ("{}_web_1", False),
                                              ("{}-a_b", False)])
def test_names_with_dash_and_underscore(box: SystemdBox, leakcheck: list[str],
                                        subhosts: Subhosts, shape: str,
                                        registered: bool) -> None:
    """The unit keeps '-' and '_' as they are (overlay-boot@web-1), and so does its cgroup;
    the D-Bus path escapes both; machined takes only hostname-like names:
    '_' is not one, and such a subhost runs without a registration."""
    name, _ = subhosts.make("START=none\nCABLES==\n",
                            name=shape.format("t" + secrets.token_hex(2)))
    unit = f"overlay-boot@{name}.service"
    assert subhosts.unit(name) == unit
    start(box, subhosts, name, leakcheck)
    cgroup = box.systemctl("show", "-P", "ControlGroup", unit).stdout.strip()
    assert cgroup.endswith(f"/{unit}"), cgroup
    leader = prop(box, name, "Leader")
    assert isinstance(leader, int)
    own = [line for line in box.run("cat", f"/proc/{leader}/cgroup").stdout.splitlines()
           if line.startswith("0::")]  # the cgroup2 line
    assert own[0].startswith(f"0::{cgroup}"), (own, cgroup)
    path = path_of(name)
    assert "_2d" in path or "_5f" in path
    assert name in box.run("busctl", "get-property", BUS, path, SUBHOST_IFACE, "Name").stdout
    listed = json.loads(box.run("busctl", "--json=short", "call", BUS, MANAGER, MANAGER_IFACE,
                                "ListSubhosts").stdout)["data"][0]
    assert [name, "running", path] in listed
    if registered:
        eventually(lambda: box.run("machinectl", "show", name, check=False).returncode == 0,
                   f"machined registers {name}")
        show = box.run("machinectl", "show", name, "-p", "Unit", "-p", "Leader").stdout
        assert f"Unit={unit}" in show and f"Leader={leader}" in show
    else:
        # the start decides before it registers anything: machined does not know it, and the
        # subhost runs all the same
        assert box.run("machinectl", "show", name, check=False).returncode != 0
        assert all(name not in line.split()[:1] for line in box.run(
            "machinectl", "list", "--no-legend").stdout.splitlines())
    assert inside(box, name, "hostname").strip() == name
    box.systemctl("stop", unit, timeout=120)
    assert box.run("machinectl", "show", name, check=False).returncode != 0


# -- D-Bus errors ----------------------------------------------------------------------------


def test_d_bus_error_names(box: SystemdBox, leakcheck: list[str], subhosts: Subhosts) -> None:
    name, _ = subhosts.make()
    start(box, subhosts, name, leakcheck)
    unknown = path_of("tnosuch" + secrets.token_hex(2))
    # a subhost that is not running: the project's own error, for every way to reach it
    for args in ((unknown, f"{SUBHOST_IFACE}.Stop"),
                 (MANAGER, f"{MANAGER_IFACE}.GetSubhost", "string:tnosuchsubhost")):
        status, out = dbus_send(box, *args)
        assert status != 0 and f"Error {NO_SUCH_SUBHOST}:" in out, out
    # a call with the wrong arguments, a method that does not exist, a wrong object
    status, out = dbus_send(box, MANAGER, f"{MANAGER_IFACE}.GetSubhost", "int32:1")
    assert status != 0 and "Error org.freedesktop.DBus.Error.InvalidArgs:" in out, out
    status, out = dbus_send(box, path_of(name), f"{SUBHOST_IFACE}.Share", "string:/tmp")
    assert status != 0 and "Error org.freedesktop.DBus.Error.InvalidArgs:" in out, out
    status, out = dbus_send(box, MANAGER, f"{MANAGER_IFACE}.NoSuchMethod")
    assert status != 0 and "Error org.freedesktop.DBus.Error.UnknownMethod:" in out, out
    status, out = dbus_send(box, f"{MANAGER}/nowhere", f"{MANAGER_IFACE}.ListSubhosts")
    assert status != 0 and "Error org.freedesktop.DBus.Error.UnknownObject:" in out, out
    # not root: refused by the bus policy, before the service sees the call
    for args in ((path_of(name), f"{SUBHOST_IFACE}.Stop"),
                 (MANAGER, f"{MANAGER_IFACE}.ListSubhosts")):
        status, out = dbus_send(box, *args, user=NOBODY)
        assert status != 0 and "Error org.freedesktop.DBus.Error.AccessDenied:" in out, out
    assert subhosts.state(name) == "active"


# -- starting and stopping, as seen from outside --------------------------------------------


def test_starting_and_stopping_states_during_slow_services(box: SystemdBox,
                                                           leakcheck: list[str],
                                                           subhosts: Subhosts) -> None:
    """A START service that waits, at start and at stop, for a file the test makes: meanwhile
    systemd says activating/deactivating and the D-Bus object says starting/stopping."""
    tag = secrets.token_hex(3)
    gates = box.scratch / f"gates-{tag}"
    gates.mkdir()
    script = box.scratch / f"slow-{tag}"
    script.write_text(f'#!/bin/sh\nwhile [ ! -e "{gates}/$1" ]; do sleep 0.05; done\n')
    script.chmod(0o755)
    name, _ = subhosts.make(f"START={script}\nSHARE={box.scratch}\n")
    leakcheck.append(name)
    unit = subhosts.unit(name)
    box.systemctl("daemon-reload")
    box.systemctl("start", "--no-block", unit)
    eventually(lambda: subhosts.state(name) == "activating", "activating")
    eventually(lambda: box.run("busctl", "get-property", BUS, path_of(name), SUBHOST_IFACE,
                               "State", check=False).returncode == 0, "the D-Bus object")
    assert prop(box, name, "State") == "starting"
    # the runtime record the service reads is rewritten at most every 0.2 s
    eventually(lambda: prop(box, name, "Services") == [[str(script), "starting"]],
               "Services starting")
    assert box.systemctl("show", "-P", "ActiveState", unit).stdout.strip() == "activating"
    (gates / "start").touch()
    eventually(lambda: subhosts.state(name) == "active", "active")
    assert prop(box, name, "State") == "running"
    eventually(lambda: prop(box, name, "Services") == [[str(script), "started"]],
               "Services started")

    box.systemctl("stop", "--no-block", unit)
    eventually(lambda: subhosts.state(name) == "deactivating", "deactivating")
    eventually(lambda: prop(box, name, "State") == "stopping", "State stopping")
    eventually(lambda: prop(box, name, "Services") == [[str(script), "stopping"]],
               "Services stopping")
    (gates / "stop").touch()
    eventually(lambda: subhosts.state(name) == "inactive", "inactive")
    gone = box.run("busctl", "get-property", BUS, path_of(name), SUBHOST_IFACE, "State",
                   check=False)
    assert gone.returncode != 0


# -- a disk image as UPPER -----------------------------------------------------------------


@pytest.fixture
def loop_nodes(box: SystemdBox) -> Iterator[None]:
    """Loop device nodes in the box's private /dev (no udev there to make them); the ones
    made here are removed at the end."""
    made = box.run("sh", "-ec", """
        if [ ! -e /dev/loop-control ]; then
          mknod -m 0660 /dev/loop-control c 10 237; echo /dev/loop-control
        fi
        for i in $(seq 0 255); do
          [ -e /dev/loop$i ] || { mknod -m 0660 /dev/loop$i b 7 $i; echo /dev/loop$i; }
        done""").stdout.split()
    try:
        yield
    finally:
        if made:
            box.run("rm", "-f", *made)


def test_overlay_diskfile_as_upper(box: SystemdBox, leakcheck: list[str], subhosts: Subhosts,
                                   loop_nodes: None) -> None:
    """UPPER=!overlay-diskfile mnt/upper disk.img: the unit's `!` command mounts the image
    (a loop device, allowed by the unit's device policy) and the subhost's files are written
    into it. The image stays mounted after a stop (as in 1.6.4) and the next start uses that
    mount; unmounting it releases the loop device."""
    name, _ = subhosts.make("UPPER=!overlay-diskfile mnt/upper disk.img\nWORK=mnt/work\n"
                            "START=none\n")
    base = box.scratch / name
    (base / "mnt").mkdir()
    layout = base / "layout"
    for sub in ("upper", "work"):
        (layout / sub).mkdir(parents=True)
    image = base / "disk.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(layout), str(image), "32M"],
                   check=True, capture_output=True)
    try:
        start(box, subhosts, name, leakcheck)
        source = box.run("findmnt", "-n", "-o", "SOURCE,FSTYPE", str(base / "mnt")).stdout
        assert source.split()[0].startswith("/dev/loop") and source.split()[1] == "ext4", source
        loop = source.split()[0]
        backing = box.run("losetup", "-n", "-O", "BACK-FILE", loop).stdout.strip()
        assert backing == str(image)
        inside(box, name, "echo on-disk > /etc/e2e-disk")
        assert not (base / "root/etc/e2e-disk").exists()
        box.systemctl("stop", subhosts.unit(name), timeout=120)

        # started again: the same mount, the file still there
        box.systemctl("start", subhosts.unit(name), timeout=120)
        assert inside(box, name, "cat /etc/e2e-disk") == "on-disk\n"
        mounts = box.run("findmnt", "-n", "-o", "SOURCE", str(base / "mnt")).stdout.split()
        assert mounts == [loop]
        box.systemctl("stop", subhosts.unit(name), timeout=120)
    finally:
        box.run("umount", str(base / "mnt"), check=False)
    # the file is in the image itself
    out = subprocess.run(["debugfs", "-R", "cat /upper/etc/e2e-disk", str(image)],
                         capture_output=True, text=True, check=True).stdout
    assert out == "on-disk\n"
    eventually(lambda: str(image) not in box.run("losetup", "-a", check=False).stdout,
               "the loop device released")
