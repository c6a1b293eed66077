"""The mount plan as data: what ``plan_root``/``plan_inside`` describe, and path resolution."""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

import pytest

from overlay_boot.config import Cable, Config, Share
from overlay_boot.linux.mounts import (
    MakeDir,
    Symlink,
    WriteFile,
    interfaces_text,
    overlay_options,
    plan_inside,
    plan_root,
    resolve_in,
    write_default_interfaces,
)


def config(tmp: Path, **kw) -> Config:
    fields = {
        "path": tmp / "sub.conf", "name": "sub", "base": tmp, "live": tmp / "live",
        "upper": tmp / "root", "work": tmp / "work", "lower": (Path("/"),),
    }
    fields.update(kw)
    return Config(**fields)


def describe(ops) -> list[str]:
    return [op.describe() for op in ops]


# --- plan_root ------------------------------------------------------------------------------

def test_root_overlay(tmp_path: Path) -> None:
    c = config(tmp_path)
    assert describe(plan_root(c)) == [
        f"mount overlay sub on {tmp_path}/live "
        f"(lowerdir=/,upperdir={tmp_path}/root,workdir={tmp_path}/work)"
    ]


def test_root_overlay_several_lowers_top_first(tmp_path: Path) -> None:
    (tmp_path / "l1").mkdir()
    (tmp_path / "l2").mkdir()
    c = config(tmp_path, lower=(tmp_path / "l1", tmp_path / "l2"))
    (op,) = plan_root(c)
    assert f"lowerdir={tmp_path}/l1:{tmp_path}/l2," in op.describe()


def test_overlay_options_escape_separators() -> None:
    text = overlay_options([Path("/a:b"), Path("/c")], Path("/u,p"), Path("/w\\x"))
    assert text == "lowerdir=/a\\:b:/c,upperdir=/u\\,p,workdir=/w\\\\x"


def test_root_bind(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    c = config(tmp_path, upper=tree, lower=(tree,))
    assert c.variant == "bind"
    assert describe(plan_root(c)) == [f"bind {tree} onto {tmp_path}/live"]


def test_root_premounted_is_only_made_a_mount_point(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    c = config(tmp_path, upper=live, lower=(live,))
    assert c.variant == "premounted"
    assert describe(plan_root(c)) == [f"rbind {live} onto {live} (a mount point for pivot_root)"]


# --- plan_inside ----------------------------------------------------------------------------

DEV = [
    "mount tmpfs on /dev (mode=755,size=4M)",
    "mknod /dev/null c 1 3 (mode 666)",
    "mknod /dev/zero c 1 5 (mode 666)",
    "mknod /dev/full c 1 7 (mode 666)",
    "mknod /dev/random c 1 8 (mode 666)",
    "mknod /dev/urandom c 1 9 (mode 666)",
    "mknod /dev/tty c 5 0 (mode 666, gid 5)",
    "mknod /dev/console c 5 1 (mode 622, gid 5)",
    "symlink /dev/ptmx -> pts/ptmx",
    "symlink /dev/fd -> /proc/self/fd",
    "symlink /dev/stdin -> /proc/self/fd/0",
    "symlink /dev/stdout -> /proc/self/fd/1",
    "symlink /dev/stderr -> /proc/self/fd/2",
    "mount tmpfs on /dev/shm (mode=1777)",
    "mount devpts devpts on /dev/pts (newinstance,ptmxmode=0666,mode=620,gid=5)",
    "mount proc proc on /proc",
    "mount sysfs sysfs on /sys",
]


def test_inside_full(tmp_path: Path) -> None:
    share_dir, share_file, journal = tmp_path / "d", tmp_path / "f", tmp_path / "dev-log"
    share_dir.mkdir()
    share_file.write_text("")
    journal.write_text("")  # stands in for the socket: only its existence counts
    c = config(tmp_path, ram_size="64M", shares=(
        Share(share_dir, Path("/srv/d")), Share(share_file, Path("/etc/f.conf"))))
    assert describe(plan_inside(c, journal)) == [
        *DEV,
        "mount tmpfs on /run (mode=755,size=64M)",
        "mkdir /run/lock (mode 1777)",
        "bind /etc/adjtime onto /etc/adjtime (if both exist)",
        f"bind {journal} onto /run/systemd/journal/dev-log",
        "symlink /dev/log -> /run/systemd/journal/dev-log",
        f"bind {share_dir} onto /srv/d",
        f"bind {share_file} onto /etc/f.conf",
    ]


def test_inside_minimal(tmp_path: Path) -> None:
    c = config(tmp_path, ram_size=None)
    assert describe(plan_inside(c, tmp_path / "missing-socket")) == [
        *DEV, "bind /etc/adjtime onto /etc/adjtime (if both exist)",
    ]
    assert describe(plan_inside(c, None)) == describe(plan_inside(c, tmp_path / "missing"))


def test_share_of_lower_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "link-to-root").symlink_to("/")
    c = config(tmp_path, ram_size=None, shares=(
        Share(tmp_path / "link-to-root", Path("/host")), Share(tmp_path, Path("/x"))))
    binds = [d for d in describe(plan_inside(c)) if d.startswith("bind ")]
    assert binds == ["bind /etc/adjtime onto /etc/adjtime (if both exist)",
                     f"bind {tmp_path} onto /x"]


# --- resolving paths inside LIVE ----------------------------------------------------------------

def test_resolve_in_keeps_absolute_symlinks_inside(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var/run").symlink_to("/run")
    (tmp_path / "escape").symlink_to("../../../../etc")
    assert resolve_in(tmp_path, "/var/run/x") == tmp_path / "run/x"
    assert resolve_in(tmp_path, "/escape/passwd") == tmp_path / "etc/passwd"
    assert resolve_in(tmp_path, "/../../etc") == tmp_path / "etc"
    assert resolve_in(tmp_path, PurePosixPath("/")) == tmp_path


def test_resolve_in_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError) as err:
        resolve_in(tmp_path, "/a/x")
    assert err.value.errno == errno.ELOOP


def test_ops_never_write_through_a_symlink_to_the_host(tmp_path: Path) -> None:
    root = tmp_path / "live"
    root.mkdir()
    name = f"ob-unit-{os.getpid()}"
    (root / "data").symlink_to("/tmp")  # as a subhost's UPPER could hold
    WriteFile(PurePosixPath(f"/data/{name}"), "x").execute(root)
    MakeDir(PurePosixPath(f"/data/{name}.d"), 0o1777).execute(root)
    assert not Path(f"/tmp/{name}").exists() and not Path(f"/tmp/{name}.d").exists()
    assert (root / "tmp" / name).read_text() == "x"
    assert (root / "tmp" / f"{name}.d").stat().st_mode & 0o7777 == 0o1777
    (root / "etc").symlink_to("/etc")  # inside LIVE this is a loop, not the host's /etc
    with pytest.raises(OSError) as err:
        WriteFile(PurePosixPath(f"/etc/{name}"), "x").execute(root)
    assert err.value.errno == errno.ELOOP and not Path(f"/etc/{name}").exists()


def test_symlink_replaces_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/log").symlink_to("/elsewhere")
    Symlink(PurePosixPath("/dev/log"), "/run/x").execute(tmp_path)
    assert os.readlink(tmp_path / "dev/log") == "/run/x"


# --- /etc/network/interfaces ------------------------------------------------------------------

CABLES = (Cable(0, "sub0", "eth0", None, None), Cable(1, "sub1", "eth1", "br0", None))


def test_interfaces_text() -> None:
    text = interfaces_text("sub", CABLES)
    assert text.splitlines()[0].startswith("# Generated by overlay-boot for subhost sub")
    assert text.split("\n", 2)[2] == (
        "auto lo\niface lo inet loopback\n\n"
        "auto eth0\niface eth0 inet manual\n\n"
        "auto eth1\niface eth1 inet manual\n"
    )


def test_write_default_interfaces(tmp_path: Path) -> None:
    assert write_default_interfaces(tmp_path, "sub", CABLES)
    target = tmp_path / "etc/network/interfaces"
    assert target.read_text() == interfaces_text("sub", CABLES)
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    target.write_text("# mine\n")
    assert not write_default_interfaces(tmp_path, "sub", CABLES)
    assert target.read_text() == "# mine\n"


def test_write_default_interfaces_respects_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").symlink_to("/nowhere/interfaces")
    assert not write_default_interfaces(tmp_path, "sub", ())
