"""PID 1's removal of the netns bind at a clean end under systemd (``linux/runfiles.py``), on
the real kernel: from a mount namespace where the bind is not mounted (PID 1's, once the
host's tree is detached), an unlink through a descriptor of the directory removes the file
and detaches the bind in the namespace that has it; only when its device:inode is the mark's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot.linux import libc, runfiles

pytestmark = pytest.mark.root

NAME = "sub"


def _mounted_at(target: Path) -> bool:
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return str(target) in points


@pytest.fixture
def bound(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(netns dir, run dir) under tmp_path: NETNS/sub is a bind of this process's network
    namespace, as /run/netns/NAME is; the test writes RUN/sub.netns. Unmounted at the end
    if still there."""
    netns_dir, run_dir = tmp_path / "netns", tmp_path / "run"
    netns_dir.mkdir()
    run_dir.mkdir()
    target = netns_dir / NAME
    target.touch()
    libc.mount("/proc/self/ns/net", target, flags=libc.MS_BIND)
    try:
        yield netns_dir, run_dir
    finally:
        if _mounted_at(target):
            libc.umount2(target, libc.MNT_DETACH)


def _identity(path: Path) -> str:
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}"


def _remove_from_own_mount_namespace(netns_dir: Path, run_dir: Path) -> bool:
    """runfiles.remove_netns as PID 1 calls it: descriptors opened in this mount namespace,
    the call made in a forked child's own namespace, where the bind is unmounted."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    netns_fd, run_fd = os.open(netns_dir, flags), os.open(run_dir, flags)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            libc.unshare(libc.CLONE_NEWNS)
            libc.mount(None, "/", flags=libc.MS_PRIVATE | libc.MS_REC)
            libc.umount2(netns_dir / NAME, libc.MNT_DETACH)
            removed = runfiles.remove_netns(netns_fd, run_fd, NAME)
            os.write(write_fd, b"1" if removed else b"0")
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        answer = os.read(read_fd, 1)
        _, status = os.waitpid(pid, 0)
    finally:
        for fd in (read_fd, netns_fd, run_fd):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0 and answer in (b"0", b"1")
    return answer == b"1"


def test_the_marked_bind_is_unlinked_and_detached_here(bound: tuple[Path, Path]) -> None:
    netns_dir, run_dir = bound
    target = netns_dir / NAME
    (run_dir / f"{NAME}.netns").write_text(_identity(target) + "\n")
    assert _mounted_at(target)
    assert _remove_from_own_mount_namespace(netns_dir, run_dir)
    assert not os.path.lexists(target)
    assert not _mounted_at(target)
    assert not (run_dir / f"{NAME}.netns").exists()


def test_a_bind_that_is_not_the_marked_one_is_left(bound: tuple[Path, Path]) -> None:
    netns_dir, run_dir = bound
    target = netns_dir / NAME
    (run_dir / f"{NAME}.netns").write_text("1:2\n")  # another namespace's identity
    assert not _remove_from_own_mount_namespace(netns_dir, run_dir)
    assert _mounted_at(target)
    assert (run_dir / f"{NAME}.netns").read_text() == "1:2\n"


def test_no_mark_no_removal(bound: tuple[Path, Path]) -> None:
    netns_dir, run_dir = bound
    assert not _remove_from_own_mount_namespace(netns_dir, run_dir)
    assert _mounted_at(netns_dir / NAME)
