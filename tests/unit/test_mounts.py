"""The mount plan as data: what ``plan_root``/``plan_inside`` describe, and path resolution."""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

import pytest

from overlay_boot import capabilities as caps
from overlay_boot.config import Cable, Config, Share
from overlay_boot.linux.mounts import (
    MakeDir,
    Symlink,
    WriteFile,
    interfaces_text,
    overlay_options,
    plan_inside,
    plan_root,
    write_default_interfaces,
)
from overlay_boot.linux.resolve import open_in, open_root, path_inside


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
        f"(lowerdir=/,upperdir={tmp_path}/root,workdir={tmp_path}/work, nodev)"
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
    assert describe(plan_root(c)) == [f"bind {tree} onto {tmp_path}/live (nodev)"]


def test_root_premounted_is_only_made_a_mount_point(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    c = config(tmp_path, upper=live, lower=(live,))
    assert c.variant == "premounted"
    assert describe(plan_root(c)) == [
        f"rbind {live} onto {live} (nodev, a mount point for pivot_root)"]


def test_root_unconfined_with_capabilities_all(tmp_path: Path) -> None:
    c = config(tmp_path, capabilities=caps.Grant(everything=True))
    assert "nodev" not in describe(plan_root(c))[0]


# --- plan_inside ----------------------------------------------------------------------------

DEV = [
    "mount tmpfs on /dev (mode=755,size=4M, nosuid)",
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
    "mount tmpfs on /dev/shm (mode=1777,size=64M, nosuid, nodev)",
    "mount devpts devpts on /dev/pts (newinstance,ptmxmode=0666,mode=620,gid=5,max=1024, "
    "nosuid, noexec)",
    "mount proc proc on /proc (nosuid, nodev, noexec)",
    *[f"make /proc/{d} read-only (if it exists)" for d in
      ("sys", "acpi", "apm", "asound", "bus", "fs", "irq", "scsi", "driver")],
    "make /proc/sys/net writable (if it exists)",
    *[f"mask /proc/{f} (if it exists)" for f in
      ("kcore", "keys", "key-users", "kallsyms", "timer_list", "sched_debug", "latency_stats",
       "timer_stats", "kpagecount", "kpageflags", "kpagecgroup", "vmallocinfo",
       "sysrq-trigger")],
    "mount sysfs sysfs on /sys (read-only, nosuid, nodev, noexec)",
]
ADJTIME = "bind /etc/adjtime onto /etc/adjtime (read-only, nodev, if both exist)"


def test_inside_full(tmp_path: Path) -> None:
    share_dir, share_file, journal = tmp_path / "d", tmp_path / "f", tmp_path / "dev-log"
    share_dir.mkdir()
    share_file.write_text("")
    journal.write_text("")  # stands in for the socket: only its existence counts
    c = config(tmp_path, ram_size="64M", shares=(
        Share(share_dir, Path("/srv/d")), Share(share_file, Path("/etc/f.conf"))))
    assert describe(plan_inside(c, journal)) == [
        *DEV,
        "mount tmpfs on /run (mode=755,size=64M, nosuid, nodev)",
        "mkdir /run/lock (mode 1777)",
        ADJTIME,
        "symlink /dev/log -> /run/systemd/journal/dev-log",
        f"bind {share_dir} onto /srv/d (nodev)",
        f"bind {share_file} onto /etc/f.conf (nodev)",
    ]


def test_inside_minimal(tmp_path: Path) -> None:
    c = config(tmp_path, ram_size=None)
    assert describe(plan_inside(c, tmp_path / "missing-socket")) == [
        *DEV, ADJTIME,
    ]
    assert describe(plan_inside(c, None)) == describe(plan_inside(c, tmp_path / "missing"))


def test_share_of_lower_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "link-to-root").symlink_to("/")
    c = config(tmp_path, ram_size=None, shares=(
        Share(tmp_path / "link-to-root", Path("/host")), Share(tmp_path, Path("/x"))))
    binds = [d for d in describe(plan_inside(c)) if d.startswith("bind ")]
    assert binds == [ADJTIME, f"bind {tmp_path} onto /x (nodev)"]


def test_shared_device_node_keeps_dev(tmp_path: Path) -> None:
    c = config(tmp_path, ram_size=None, shares=(Share(Path("/dev/null"), Path("/dev/x")),))
    assert describe(plan_inside(c))[-1] == "bind /dev/null onto /dev/x"


def test_capabilities_all_leaves_kernel_interfaces_as_1_6_4(tmp_path: Path) -> None:
    c = config(tmp_path, ram_size=None, capabilities=caps.Grant(everything=True))
    text = describe(plan_inside(c, None, [PurePosixPath("/srv/o")]))
    assert "mount sysfs sysfs on /sys (nosuid, nodev, noexec)" in text
    assert not [d for d in text if d.startswith(("mask /proc", "make /proc")) or "read-only" in d]
    assert "mask /srv/o (another subhost's) (if it exists)" in text


def test_sys_admin_grant_drops_the_read_only_kernel_interfaces(tmp_path: Path) -> None:
    c = config(tmp_path, ram_size=None, capabilities=caps.Grant(frozenset({"sys_admin"})))
    assert not [d for d in describe(plan_inside(c)) if d.startswith(("mask /proc", "make /proc"))]


def test_other_subhosts_are_masked_but_never_our_own_or_a_share(tmp_path: Path) -> None:
    c = config(tmp_path, ram_size=None, shares=(Share(Path("/srv/b/root/pub"), Path("/pub")),
                                                Share(Path("/opt/x"), Path("/srv/c/data"))))
    hidden = [PurePosixPath(p) for p in
              ("/srv/a/root", "/srv/b", "/srv/c", tmp_path, tmp_path / "live", tmp_path.parent,
               "/pub/x", "/pub", "/pub-x")]
    masks = [d for d in describe(plan_inside(c, None, hidden)) if d.startswith("mask /srv")
             or d.startswith(f"mask {tmp_path.parent}") or d.startswith("mask /pub")]
    # /srv/c holds a SHARE target, /pub/x lies below one, /pub is one (/pub-x only looks
    # alike), tmp_path is ours and holds our LIVE
    assert masks == ["mask /pub-x (another subhost's) (if it exists)",
                     "mask /srv/a/root (another subhost's) (if it exists)",
                     "mask /srv/b (another subhost's) (if it exists)"]


# --- resolving paths inside LIVE ----------------------------------------------------------------

def _inside(root: Path, path: str, create: str | None = None) -> str:
    rfd = open_root(root)
    try:
        fd = open_in(rfd, path, create)
        try:
            return path_inside(rfd, fd)
        finally:
            os.close(fd)
    finally:
        os.close(rfd)


def test_open_in_keeps_absolute_symlinks_inside(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "var/run").symlink_to("/run")
    (tmp_path / "escape").symlink_to("../../../../etc")
    assert _inside(tmp_path, "/var/run") == "/run"
    assert _inside(tmp_path, "/escape") == "/etc"
    assert _inside(tmp_path, "/../../etc") == "/etc"
    assert _inside(tmp_path, "/") == "/"
    assert _inside(tmp_path, "/var/run/x/y", "dir") == "/run/x/y"
    assert (tmp_path / "run/x/y").is_dir()


def test_open_in_double_slash_symlink_stays_inside(tmp_path: Path) -> None:
    """H2: a target starting with exactly ``//`` is not a way out to the host's root."""
    host = tmp_path / "host"
    host.mkdir()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/network").symlink_to(f"/{host}")  # "//tmp/.../host"
    (root / "etc/obfile").symlink_to(f"/{host}/created-file")
    assert write_default_interfaces(root, "sub", ())
    assert _inside(root, "/etc/obfile", "file") == f"{host}/created-file"
    assert list(host.iterdir()) == []  # nothing on the "host"
    assert (root / str(host).lstrip("/") / "interfaces").exists()
    assert (root / str(host).lstrip("/") / "created-file").is_file()


def test_open_in_creates_through_a_dangling_symlink_inside(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").symlink_to("../run/resolvconf/resolv.conf")
    assert _inside(tmp_path, "/etc/resolv.conf", "file") == "/run/resolvconf/resolv.conf"
    assert (tmp_path / "run/resolvconf/resolv.conf").is_file()


def test_open_in_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError) as err:
        _inside(tmp_path, "/a/x", "dir")
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
