"""A host path bound into a subhost: the one bind primitive, and sharing at run time.

The primitive serves every bind overlay-boot makes: ``SHARE=`` and the other binds of the
mount plan at boot (``linux/mounts.py``), and ``overlay-share`` / D-Bus ``Share`` at run time.
``clone_tree`` takes a detached copy of the source's mount (``open_tree(OPEN_TREE_CLONE)``) and
makes it a *slave* at once (``mount_setattr``), so that nothing mounted or unmounted under it
in the subhost propagates back to the host, while what the host mounts there later still shows
inside; ``attach`` adds mount attributes (``nodev``…) and attaches it (``move_mount``) onto a
descriptor resolved inside the subhost (``linux/resolve.py``). ``mount(MS_BIND)`` cannot be the
one primitive: it binds only within the caller's own mount namespace, and at run time the
source is in the host's namespace and the target in the subhost's.

At run time (``share`` / ``unshare``), the work inside runs in a thread of its own that enters
the subhost's mount namespace by a pidfd of its PID 1 (checked to be the process the runtime
record names), goes back to the caller's namespace and ends: ``setns(CLONE_NEWNS)`` takes a
thread that shares no root and working directory with others (``unshare(CLONE_FS)`` first), so
no other thread of the calling process — the long-lived, threaded D-Bus service too — ever
leaves its own namespace, and no thread stays in the subhost's. Inside, every path is
resolved by descriptor in the subhost's root (no link it planted leads out, no ``/proc`` magic
link is followed), and what overlay-boot mounted itself is told by mount id, not by path text.

Standard library only, and nothing heavy at import: PID 1 loads the primitive.
"""

from __future__ import annotations

import errno
import os
import stat

from overlay_boot.errors import SubhostError
from overlay_boot.linux import libc, resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")


# --- the bind primitive ---------------------------------------------------------------------

def clone_tree(source: str | Path, *, recursive: bool = False, attributes: int = 0,
               userns_fd: int = -1) -> int:
    """A detached slave copy of the mount at ``source`` (with ``recursive`` its submounts too),
    as an fd for ``attach``. ``attributes`` (``MOUNT_ATTR_NODEV``…) are added, the source's
    others kept; ``userns_fd`` >= 0: idmapped with that user namespace. One mount_setattr(2)
    for it all: as cheap as ``mount(MS_BIND)`` (``bench/bind_primitive.py``)."""
    recurse = libc.AT_RECURSIVE if recursive else 0
    tree = libc.open_tree(source, libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | recurse)
    try:
        idmap = libc.MOUNT_ATTR_IDMAP if userns_fd >= 0 else 0
        libc.mount_setattr(tree, "", libc.AT_EMPTY_PATH | recurse, attr_set=attributes | idmap,
                           propagation=libc.MS_SLAVE, userns_fd=max(userns_fd, 0))
    except OSError as exc:
        os.close(tree)
        if exc.errno == errno.ENOSYS:
            raise OSError(exc.errno, f"{exc.strerror}: binds need mount_setattr(2) "
                          "(Linux 5.12 or later)") from None
        raise
    return tree


def attach(tree: int, target_fd: int, attributes: int = 0) -> None:
    """Attach the detached ``tree`` onto the file or directory open as ``target_fd``, after
    adding ``attributes`` to every mount of it (for a caller that learns them only then)."""
    if attributes:
        libc.mount_setattr(tree, "", libc.AT_EMPTY_PATH | libc.AT_RECURSIVE,
                           attr_set=attributes)
    libc.move_mount(tree, "", to_dirfd=target_fd,
                    flags=libc.MOVE_MOUNT_F_EMPTY_PATH | libc.MOVE_MOUNT_T_EMPTY_PATH)


# --- sharing with a running subhost -----------------------------------------------------------

#: What overlay-boot itself mounts inside a subhost: never detached as if it were a share.
OWN_MOUNTS = ("/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/etc/adjtime",
              "/run/systemd/journal/dev-log")


def open_leader(name: str) -> int:
    """A pidfd of running subhost NAME's PID 1, checked to be the process its runtime record
    names (never a reused PID). Refused for a USERNS= subhost."""
    from overlay_boot import state

    record = state.read(name)
    leader = state.leader_process(record) if record and state.is_locked(name) else None
    if record is None or leader is None:
        raise SubhostError(f"subhost {name} is not running")
    if record.userns:
        os.close(leader)
        raise SubhostError(
            f"subhost {name} runs in a user namespace of its own (USERNS={record.userns}): "
            "overlay-share does not share into it (a share would show host ownership there); "
            "give it a SHARE= line in its config, which is idmapped")
    return leader


def share(name: str, hostdir: str, target: str) -> None:
    """Attach a slave clone of host directory HOSTDIR (its submounts too) at TARGET (absolute)
    inside running subhost NAME, creating missing directories there. ``nodev`` when the
    subhost's root is (as its ``SHARE=`` binds are)."""
    if not os.path.isdir(hostdir):
        raise SubhostError(f"not a directory: {hostdir}")
    if os.path.normpath(target) == "/":  # other spellings: "mounted there already"
        raise SubhostError("cannot share onto the subhost's root directory")
    leader = open_leader(name)
    try:
        tree = _host_error(lambda: clone_tree(hostdir, recursive=True), hostdir)
        try:
            in_mount_namespace(leader, lambda root: _attach_inside(root, tree, target, name))
        finally:
            os.close(tree)
    finally:
        os.close(leader)


def unshare(name: str, target: str, hostdir: str | None = None) -> None:
    """Detach the share at TARGET inside running subhost NAME: with HOSTDIR only a share of that
    directory (when HOSTDIR is gone from the host, or None: whichever share is there). Never
    one of OWN_MOUNTS, however TARGET is spelt."""
    identity = _host_identity(hostdir)
    leader = open_leader(name)
    try:
        in_mount_namespace(leader, lambda root: _detach_inside(root, target, identity,
                                                               hostdir, name))
    finally:
        os.close(leader)


def in_mount_namespace(leader: int, work: Callable[[int], T]) -> T:
    """WORK(fd of the root) run in a new thread inside the mount namespace of the process of
    pidfd LEADER; the thread goes back to ours and ends. WORK's exception is raised here."""
    import threading

    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            libc.unshare(libc.CLONE_FS)  # this thread's own root and cwd: setns may change them
            own = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc.setns(leader, libc.CLONE_NEWNS)  # also makes the subhost's root our root
                try:
                    root = resolve.open_root("/")
                    try:
                        outcome["value"] = work(root)
                    finally:
                        os.close(root)
                finally:
                    # Back before the thread ends: join() returns before the kernel has
                    # ended the thread, and nothing is ever seen in the subhost meanwhile.
                    libc.setns(own, libc.CLONE_NEWNS)
            finally:
                os.close(own)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.setdefault("error", exc)

    thread = threading.Thread(target=run, name="overlay-share")
    thread.start()
    thread.join()
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, SubhostError):
            raise error
        raise SubhostError(f"{type(error).__name__}: {error}")
    return outcome["value"]  # type: ignore[return-value]


def _host_error(call: Callable[[], T], path: str) -> T:
    try:
        return call()
    except OSError as exc:
        raise SubhostError(f"cannot share {path}: {exc.strerror}") from None


def _host_identity(hostdir: str | None) -> tuple[int, int] | None:
    """(st_dev, st_ino) of HOSTDIR on the host; None when not given or gone."""
    if hostdir is None:
        return None
    try:
        host = os.stat(hostdir)
    except OSError:
        return None  # gone on the host: detach whatever share is mounted there
    return host.st_dev, host.st_ino


# --- inside the subhost's mount namespace (``root``: its root) --------------------------------

def _attach_inside(root: int, tree: int, target: str, name: str) -> None:
    directory = _open_inside(root, target, name, create=True)
    try:
        if _is_mount_root(directory):
            raise SubhostError(f"something is mounted at {target} in subhost {name} already")
        nodev = os.fstatvfs(root).f_flag & os.ST_NODEV
        attach(tree, directory, libc.MOUNT_ATTR_NODEV if nodev else 0)
    finally:
        os.close(directory)


def _detach_inside(root: int, target: str, identity: tuple[int, int] | None,
                   hostdir: str | None, name: str) -> None:
    directory = _open_inside(root, target, name, create=False)
    try:
        if not _is_mount_root(directory):
            raise SubhostError(f"nothing is mounted at {target} in subhost {name}")
        info = os.fstat(directory)
        if identity is not None and (info.st_dev, info.st_ino) != identity:
            raise SubhostError(f"{target} in subhost {name} is not a share of {hostdir}")
        own = _own_mount_at(root, directory)
        if own is not None:
            raise SubhostError(f"{target} in subhost {name} is not a share: it is "
                               f"overlay-boot's own mount of {own}; not detached")
        os.fchdir(directory)  # umount2 takes a path: "." is exactly the resolved target
        libc.umount2(".", libc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(directory)


def _own_mount_at(root: int, directory: int) -> str | None:
    """Which of OWN_MOUNTS the mount whose root is DIRECTORY is, if any: by what each resolves
    to now inside the subhost (mount id; device and inode on kernels without one), so that no
    spelling of a path (``//proc``, a symbolic link to /run) gets past."""
    mount = _mount_identity(directory)
    for path in OWN_MOUNTS:
        try:
            fd = resolve.open_in(root, path)
        except OSError:
            continue  # not there (no journal socket, /dev/pts inside /dev …)
        try:
            if _mount_identity(fd) == mount:
                return path
        finally:
            os.close(fd)
    return None


def _open_inside(root: int, path: str, name: str, *, create: bool) -> int:
    """An O_PATH fd of directory PATH inside the subhost (``resolve.open_in``: its links
    followed as inside it, ``..`` never above its root, no magic links); with ``create``,
    missing directories are made."""
    try:
        fd = resolve.open_in(root, path, resolve.DIR if create else None)
    except FileNotFoundError:
        raise SubhostError(f"{path} does not exist in subhost {name}") from None
    except OSError as exc:
        raise _inside_error(exc, path, name, create) from None
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise SubhostError(f"{path} in subhost {name} is not a directory")
    return fd


def _inside_error(exc: OSError, path: str, name: str, create: bool) -> SubhostError:
    if exc.errno == errno.ENOTDIR:
        return SubhostError(f"{path} in subhost {name} is not a directory")
    if exc.errno == errno.ELOOP:
        return SubhostError(f"{path} in subhost {name}: too many or unsafe symbolic links")
    what = "cannot create" if create else "cannot open"
    return SubhostError(f"{what} {path} in subhost {name}: {os.strerror(exc.errno or 0)}")


def _mount_identity(fd: int) -> tuple[int, ...]:
    """What tells the mount FD is on from another: its id (Linux 5.8), else device and inode
    (for the root of a mount, which is what is compared)."""
    info = libc.statx(fd)
    if info.mount_id >= 0:
        return (info.mount_id,)
    return (*info.device, info.inode)


def _is_mount_root(fd: int) -> bool:
    """Is FD the root of a mount (statx STATX_ATTR_MOUNT_ROOT; before Linux 5.8 compared with
    its parent)?"""
    root = libc.statx(fd).mount_root
    if root is None:
        parent = os.stat("..", dir_fd=fd)
        own = os.fstat(fd)
        return (own.st_dev, own.st_ino) == (parent.st_dev, parent.st_ino) or \
            own.st_dev != parent.st_dev
    return root
