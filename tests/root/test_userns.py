"""USERNS=: a subhost in a user namespace of its own, on the real kernel (docs/USERNS.md).

Each test starts real subhosts through the commands (tests/subhostkit.py) and checks what
root inside sees and may do, what lands on disk, and that nothing is left behind (the ``lab``
fixture). The hostile probe and its REFUSED table are those of tests/root/test_hostile.py.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from tests.root.test_hostile import (
    DROPPED,
    HOSTILE_CONFIG,
    LEFTOVER,
    PLANTED,
    REFUSED,
    bounding_set,
    probe,
    start_planted,
)
from tests.subhostkit import Lab, kill, wait_dead

#: test_hostile's table; in the user namespace the kernel's own files are host root's, which
#: has no uid there: opening them for writing fails on permission before the read-only mount.
USERNS_REFUSED = {**REFUSED, "core_pattern": {"EROFS", "EACCES"},
                  "drop_caches": {"EROFS", "EACCES"}}


def random_base() -> int:
    """A range of 65536 ids no other test uses (well above the host's own users)."""
    return 65536 * (16 + secrets.randbelow(60000))


def userns_config(lab: Lab, text: str = "START=none\n", base: int | None = None,
                  **kwargs) -> tuple[Path, int]:
    """A config with USERNS= whose BASE is root's and 0700 (validate requires it)."""
    base = base or random_base()
    conf = lab.config(f"USERNS={base}\n{text}", **kwargs)
    conf.parent.chmod(0o700)
    return conf, base


def inside(lab: Lab, name: str, script: str) -> str:
    result = lab.go(name, "sh", "-c", script)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def assert_in_range(lab: Lab, name: str, base: int) -> None:
    """The subhost's processes are in a user namespace mapping 0.. to BASE.."""
    maps = inside(lab, name, "cat /proc/self/uid_map /proc/self/gid_map")
    assert [line.split() for line in maps.splitlines()] == [["0", str(base), "65536"]] * 2


def set_userns(conf: Path, value: str | None) -> None:
    """Rewrite the USERNS= line of CONF (None: remove it)."""
    lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("USERNS=")]
    if value is not None:
        lines.insert(0, f"USERNS={value}")
    conf.write_text("\n".join(lines) + "\n")


def test_starts_in_its_range_and_stops_clean(lab: Lab) -> None:
    conf, base = userns_config(lab)
    result = lab.start(conf)
    assert result.returncode == 0, result.stderr
    name = conf.stem
    assert lab.record(name)["userns"] == f"{base}:65536"
    out = inside(lab, name, "cat /proc/self/uid_map /proc/self/gid_map; id -u; hostname")
    maps, ids = out.split("\n")[:2], out.split("\n")[2:4]
    assert [line.split() for line in maps] == [["0", str(base), "65536"]] * 2
    assert ids == ["0", name]
    # PID 1 too, and every process of the subhost: host uid BASE, not 0.
    leader = lab.record(name)["leader_pid"]
    assert Path(f"/proc/{leader}/uid_map").read_text().split() == ["0", str(base), "65536"]
    assert os.stat(f"/proc/{leader}").st_uid == base
    assert lab.stop(name).returncode == 0
    assert lab.leftovers(name) == []


@pytest.fixture
def hostile_userns(lab: Lab) -> tuple[Lab, str, dict]:
    """As test_hostile's ``hostile`` fixture, the probed subhost with USERNS=."""
    other = lab.config("START=none\n")
    secret = other.parent / "root/secret"
    secret.write_text("other subhost's secret\n")
    assert lab.start(other).returncode == 0

    conf, base = userns_config(lab, HOSTILE_CONFIG)
    name = start_planted(lab, conf)
    assert_in_range(lab, name, base)
    return lab, name, probe(lab, name, str(secret), PLANTED, LEFTOVER)


def test_known_ways_out_are_refused(hostile_userns: tuple[Lab, str, dict]) -> None:
    """core_pattern, mknod, open_by_handle_at and the rest of test_hostile's table."""
    _, _, results = hostile_userns
    wrong = {key: results[key] for key, allowed in USERNS_REFUSED.items()
             if results.get(key) not in allowed}
    assert not wrong, f"not refused as expected: {wrong}"


def test_confinement_applies_on_top(hostile_userns: tuple[Lab, str, dict]) -> None:
    """The bounding set of the user namespace's root is cut down as without one."""
    _, _, results = hostile_userns
    kept = {n for n, number in DROPPED.items() if bounding_set(results) >> number & 1}
    assert not kept, f"still in the bounding set: {kept}"
    mounts = {point: text.split() for point, text in results["mounts"].items()}
    assert "nodev" in mounts["/"][0].split(",")
    assert mounts["/sys"][0].startswith("ro,") and mounts["/proc/sys"][0].startswith("ro,")


def test_ordinary_root_work_works(hostile_userns: tuple[Lab, str, dict]) -> None:
    _, _, results = hostile_userns
    assert results["ordinary"] == {
        "chown": "ok", "bind_port_80": "ok", "chroot": "ok", "net_sysctl": "ok",
        "setuid_passwd": "ok", "su": "ok",
    }


def test_existing_upper_is_used_unchanged_and_read_back(lab: Lab) -> None:
    """An UPPER written without a user namespace (root and uid-1000 files, a whiteout, an
    opaque directory) is the same inside a USERNS= start; what that start writes is uid 0 /
    1000 on disk and reads back the same without a user namespace."""
    conf = lab.config("START=none\n")
    name = conf.stem
    upper = conf.parent / "root"
    assert lab.start(conf).returncode == 0
    inside(lab, name, "echo old > /etc/old-root && echo u > /etc/old-user && "
           "chown 1000:1000 /etc/old-user && rm /etc/debian_version && "
           "rm -r /etc/skel && mkdir /etc/skel && echo only > /etc/skel/only")
    assert lab.stop(name).returncode == 0

    conf.parent.chmod(0o700)
    base = random_base()
    set_userns(conf, str(base))
    assert lab.start(conf).returncode == 0
    assert_in_range(lab, name, base)
    seen = inside(lab, name, "stat -c '%u %g %n' /etc/old-root /etc/old-user; "
                  "test -e /etc/debian_version || echo whiteout-kept; ls -A /etc/skel; "
                  "echo new > /etc/new-root && echo n > /etc/new-user && "
                  "chown 1000:1000 /etc/new-user && rm /etc/hostname && "
                  "rm -r /etc/default && mkdir /etc/default && echo x > /etc/default/only2")
    assert seen.split("\n")[:4] == ["0 0 /etc/old-root", "1000 1000 /etc/old-user",
                                    "whiteout-kept", "only"], seen
    assert lab.stop(name).returncode == 0
    on_disk = {p: (os.lstat(upper / p).st_uid, os.lstat(upper / p).st_gid)
               for p in ("etc/new-root", "etc/new-user", "etc/default/only2")}
    assert on_disk == {"etc/new-root": (0, 0), "etc/new-user": (1000, 1000),
                       "etc/default/only2": (0, 0)}
    whiteout = os.lstat(upper / "etc/hostname")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0

    set_userns(conf, None)
    assert lab.start(conf).returncode == 0
    again = inside(lab, name, "stat -c '%u %n' /etc/new-root /etc/new-user; "
                   "test -e /etc/hostname || echo whiteout-kept; ls -A /etc/default")
    assert again.split("\n")[:4] == ["0 /etc/new-root", "1000 /etc/new-user",
                                     "whiteout-kept", "only2"], again


def test_share_is_idmapped(lab: Lab, tmp_path: Path) -> None:
    source = tmp_path / "shared"
    source.mkdir()
    (source / "root-file").write_text("r\n")
    (source / "user-file").write_text("u\n")
    os.chown(source / "user-file", 1000, 1000)
    conf, base = userns_config(lab, f"START=none\nSHARE={source}:/srv/shared\n")
    assert lab.start(conf).returncode == 0
    assert_in_range(lab, conf.stem, base)
    out = inside(lab, conf.stem, "stat -c '%u %n' /srv/shared/root-file /srv/shared/user-file; "
                 "echo made > /srv/shared/made-inside")
    assert out.split("\n")[:2] == ["0 /srv/shared/root-file", "1000 /srv/shared/user-file"]
    assert os.stat(source / "made-inside").st_uid == 0


def test_overlay_share_is_refused_clearly(lab: Lab, tmp_path: Path) -> None:
    conf, base = userns_config(lab)
    assert lab.start(conf).returncode == 0
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    result = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / ".venv/bin/overlay-share"), str(hostdir),
         conf.stem, "/mnt"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"USERNS={base}:65536" in result.stderr and "SHARE=" in result.stderr


@pytest.mark.parametrize("value, why", [
    ("yes", "is not 'no' or BASE[:COUNT]"),
    ("1000", "below 65536"),
    ("200000:0", "COUNT must be at least 1"),
    ("4294901760:65536", "goes past the last uid"),
    ("!echo 200000", "never a command"),
])
def test_bad_value_is_a_config_error(lab: Lab, value: str, why: str) -> None:
    conf = lab.config(f"START=none\nUSERNS={value}\n")
    result = lab.start(conf)
    assert result.returncode == 78, result.stderr
    assert f"{conf}:4: USERNS: " in result.stderr and why in result.stderr, result.stderr


def test_base_must_be_private(lab: Lab) -> None:
    conf, _ = userns_config(lab)
    conf.parent.chmod(0o755)
    result = lab.start(conf)
    assert result.returncode == 78
    assert "must be owned by root with mode 0700 for USERNS=" in result.stderr, result.stderr


def test_overlapping_ranges_are_refused(lab: Lab) -> None:
    first, base = userns_config(lab)
    assert lab.start(first).returncode == 0
    second, _ = userns_config(lab, base=base + 4096)
    result = lab.start(second)
    assert result.returncode == 78, result.stderr
    assert f"overlap those of running subhost {first.stem}" in result.stderr, result.stderr


def test_default_stays_without_user_namespace(lab: Lab) -> None:
    """No USERNS= (and USERNS=no): the subhost shares the host's user namespace."""
    conf = lab.config("START=none\nUSERNS=no\n")
    assert lab.start(conf).returncode == 0
    assert inside(lab, conf.stem, "cat /proc/self/uid_map").split() == ["0", "0", "4294967295"]
    assert json.loads(Path(f"/run/overlay-boot/{conf.stem}.json").read_text())["userns"] == ""


def test_kill_9_of_the_supervisor_then_cleanup(lab: Lab) -> None:
    """A crash: PID 1 dies with its supervisor; `overlay-stop --cleanup` (the unit's
    ExecStopPost=) removes the network namespace of the user namespace and the cable; the
    next start works."""
    conf, base = userns_config(lab, "START=none\nCABLES= =\n")
    name = conf.stem
    assert lab.start(conf).returncode == 0
    rec = lab.record(name, state="running")
    kill(rec["supervisor_pid"])
    assert wait_dead(rec["leader_pid"]), "PID 1 survived its supervisor"
    cleanup = lab.cleanup(name)
    assert cleanup.returncode == 0, cleanup.stderr
    assert lab.leftovers(name) == []
    assert lab.start(conf).returncode == 0
    assert_in_range(lab, name, base)


SYS_ADMIN_PROBE = """
for m in /proc/keys /proc/sys /sys /proc/acpi; do
  grep -q " $m " /proc/self/mountinfo && echo "$m: mounted"
done
for m in /proc/keys /proc/sys /sys /proc/acpi; do
  umount "$m" 2>/dev/null && echo "umount $m: ok" || echo "umount $m: refused"
done
mount -o remount,rw /sys 2>/dev/null && echo "remount /sys: ok" || echo "remount /sys: refused"
(echo core > /proc/sys/kernel/core_pattern) 2>/dev/null && echo "core_pattern: ok" \
  || echo "core_pattern: refused"
mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo "own tmpfs: ok" && umount /mnt/t
"""


def test_sys_admin_inside_cannot_undo_what_host_root_made(lab: Lab) -> None:
    """CAPABILITIES=sys_admin with USERNS=: root inside may mount in its own mount namespace,
    but every mount host root made is locked: the masks and the read-only kernel
    interfaces stay."""
    conf, base = userns_config(lab, "START=none\nCAPABILITIES=sys_admin\n")
    assert lab.start(conf).returncode == 0
    assert_in_range(lab, conf.stem, base)
    assert inside(lab, conf.stem, SYS_ADMIN_PROBE).splitlines() == [
        "/proc/keys: mounted", "/proc/sys: mounted", "/sys: mounted", "/proc/acpi: mounted",
        "umount /proc/keys: refused", "umount /proc/sys: refused", "umount /sys: refused",
        "umount /proc/acpi: refused", "remount /sys: refused", "core_pattern: refused",
        "own tmpfs: ok",
    ]
