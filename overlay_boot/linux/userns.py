"""A subhost in a user namespace of its own (USERNS=BASE[:COUNT], docs/USERNS.md, variant A).

Host root builds the subhost's tree as without a user namespace, with three differences:

* the overlay's layers are idmapped clones (``MOUNT_ATTR_IDMAP``) of LOWER and of the directory
  holding UPPER and WORK: a file of uid *k* on disk is host uid BASE+*k*, i.e. uid *k* inside;
* the overlay is created with fsuid/fsgid = BASE (``MappedCreator``): overlayfs does its own
  work in UPPER (workdir, whiteouts, copy-up) with its creator's credentials, and host uid 0
  has no mapping on the idmapped UPPER (the overlay would silently come up read-only); the
  files it writes are stored as uid 0, exactly as without a user namespace;
* what host root makes inside LIVE (``/dev``, ``/run``…) belongs to BASE, root inside.

Then PID 1 enters the user namespace (``become_root``): every namespace it makes afterwards
belongs to it, and every mount made by host root is locked under it (``MNT_LOCKED``): the
subhost's root cannot take off the masks or make ``/sys`` writable.

Standard library only: loaded by PID 1 (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import os

from overlay_boot.linux import libc, share

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from overlay_boot.config import IdRange


def write_maps(pid: int, ids: IdRange) -> None:
    """Map 0..COUNT-1 of the user namespace of ``pid`` (our unreaped child) to BASE..."""
    for name in ("uid_map", "gid_map"):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, ids.map_line().encode())
        finally:
            os.close(fd)


def idmapped_tree(path: str | Path, userns_fd: int) -> int:
    """A detached clone of ``path`` (not its submounts) with the idmapping of ``userns_fd``."""
    return share.clone_tree(path, userns_fd=userns_fd)


class MappedCreator:
    """``with MappedCreator(ids):`` host root with fsuid/fsgid = BASE, capabilities kept
    (``SECBIT_NO_SETUID_FIXUP``): what it creates is root's inside. Nothing for ``None``."""

    def __init__(self, ids: IdRange | None) -> None:
        self.ids = ids
        self.bits = 0

    def __enter__(self) -> MappedCreator:
        if self.ids is not None:
            self.bits = libc.prctl(libc.PR_GET_SECUREBITS)
            libc.prctl(libc.PR_SET_SECUREBITS, self.bits | libc.SECBIT_NO_SETUID_FIXUP)
            libc.setfsgid(self.ids.base)
            libc.setfsuid(self.ids.base)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ids is not None:
            libc.setfsuid(0)
            libc.setfsgid(0)
            libc.prctl(libc.PR_SET_SECUREBITS, self.bits)


def layer_parent(upper: Path, work: Path) -> str:
    """The directory holding both UPPER and WORK: one idmapped tree serves both (overlayfs
    wants them on one mount)."""
    return os.path.commonpath([os.path.realpath(upper), os.path.realpath(work)])


def overlay_tree(name: str, lower: Sequence[Path], upper: Path, work: Path,
                 userns_fd: int) -> int:
    """A detached, ``nodev`` overlay over idmapped clones of the layers (an fd for
    ``move_mount``). Call it as ``MappedCreator(ids)``.

    The layers are passed as descriptors (``lowerdir+``, Linux 6.8): nothing is mounted at a
    path on the way, and the overlay's options name no host path.
    """
    trees: list[int] = []
    opened: list[int] = []
    fsfd = -1
    try:
        for path in lower:
            trees.append(idmapped_tree(path, userns_fd))
        parent = layer_parent(upper, work)
        rw = idmapped_tree(parent, userns_fd)
        trees.append(rw)
        for path in (upper, work):
            rel = os.path.relpath(os.path.realpath(path), parent)
            opened.append(os.open(rel, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rw))
        fsfd = libc.fsopen("overlay")
        libc.fsconfig(fsfd, libc.FSCONFIG_SET_STRING, "source", name)
        for tree in trees[:-1]:
            _set_fd(fsfd, "lowerdir+", tree)
        _set_fd(fsfd, "upperdir", opened[0])
        _set_fd(fsfd, "workdir", opened[1])
        libc.fsconfig(fsfd, libc.FSCONFIG_CMD_CREATE)
        return libc.fsmount(fsfd, libc.MOUNT_ATTR_NODEV)
    finally:
        for fd in [*trees, *opened] + ([fsfd] if fsfd >= 0 else []):
            os.close(fd)


def _set_fd(fsfd: int, key: str, fd: int) -> None:
    try:
        libc.fsconfig_fd(fsfd, key, fd)
    except OSError as exc:
        if key == "lowerdir+" and exc.errno == 22:  # EINVAL: key unknown before Linux 6.8
            raise OSError(exc.errno, f"{exc.strerror}: USERNS= needs overlay layers given as "
                          "descriptors (Linux 6.8 or later)") from None
        raise


def become_root(userns_fd: int) -> None:
    """Enter the user namespace and become its root (host uid/gid BASE), no supplementary
    groups. Capabilities: all of them, in that namespace only."""
    libc.setns(userns_fd, libc.CLONE_NEWUSER)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def probe_idmap(path: str | Path, userns_fd: int) -> str | None:
    """Why the filesystem at ``path`` cannot be idmapped (None when it can): a clone is made,
    idmapped and closed, nothing is attached."""
    try:
        os.close(idmapped_tree(path, userns_fd))
    except OSError as exc:
        return os.strerror(exc.errno or 0)
    return None


def new_userns(ids: IdRange) -> int:
    """A descriptor of a new user namespace mapping ``ids`` (made by a forked helper that
    exits at once); for probes. Root only."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            libc.unshare(libc.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(go_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"u":
            raise OSError(1, "unshare(CLONE_NEWUSER) failed")
        write_maps(pid, ids)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(go_w)
        os.waitpid(pid, 0)
