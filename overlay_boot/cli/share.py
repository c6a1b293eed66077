"""overlay-share: attach a host directory into a running subhost, or detach it again.

    overlay-share HOSTDIR NAME [SUBHOSTDIR]            share HOSTDIR at SUBHOSTDIR inside NAME
    overlay-share --remove HOSTDIR NAME [SUBHOSTDIR]   detach it again
    overlay-share --remove NAME SUBHOSTDIR             detach the share at SUBHOSTDIR

SUBHOSTDIR defaults to HOSTDIR's own path. How: a recursive clone of HOSTDIR's mount tree is
taken in the host's mount namespace (open_tree) and made a slave at once (mount_setattr), so
that nothing mounted or unmounted in the subhost propagates back to the host; then a child
process enters the subhost's mount namespace — whose root is the subhost's root — and attaches
the clone there (move_mount). The target is resolved inside the subhost's root and never
through /proc magic links; missing directories are created. Nothing is mounted on the host.
What overlay-boot mounted itself (/, /proc, /dev, /run, …) is never detached: the resolved
target's mount is compared with theirs, not its path text.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import sys
from dataclasses import dataclass

from .. import state
from ..errors import SubhostError
from ..linux import libc
from ..naming import is_valid_name
from .common import UsageError, require_root, resolve_target, run_main

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
STATX_ATTR_MOUNT_ROOT = 0x2000
STATX_MNT_ID = 0x1000
O_PATH = getattr(os, "O_PATH", 0o10000000)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_main(lambda: _main(request_of(args)), "overlay-share")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="overlay-share",
        usage="%(prog)s [--remove] HOSTDIR NAME|CONF [SUBHOSTDIR]\n"
              "       %(prog)s --remove NAME SUBHOSTDIR",
        description="Share a host directory with a running overlay-boot subhost (a bind mount "
                    "inside it), or with --remove detach it again.",
        epilog="SUBHOSTDIR defaults to the same path as HOSTDIR. The share lasts until it is "
               "removed or the subhost stops. --remove NAME SUBHOSTDIR (NAME a subhost name, "
               "SUBHOSTDIR an absolute path, not a file on the host) detaches whatever share "
               "is at SUBHOSTDIR.",
    )
    parser.add_argument("--remove", action="store_true",
                        help="detach the share at SUBHOSTDIR (HOSTDIR may be gone)")
    parser.add_argument("hostdir", metavar="HOSTDIR")
    parser.add_argument("name", metavar="NAME|CONF")
    parser.add_argument("subhostdir", metavar="SUBHOSTDIR", nargs="?")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Request:
    """What to do: share HOSTDIR at TARGET inside the subhost given by SUBHOST (a NAME or a
    CONF), or remove the share there (HOSTDIR None: whichever share it is)."""

    remove: bool
    hostdir: str | None  # as given
    subhost: str
    target: str  # absolute, normalised


def request_of(args: argparse.Namespace) -> Request:
    if args.remove and args.subhostdir is None and _names_a_target(args.hostdir, args.name):
        return Request(True, None, args.hostdir, _target(args.name, remove=True))
    target = args.subhostdir or os.path.abspath(args.hostdir)
    return Request(args.remove, args.hostdir, args.name, _target(target, args.remove))


def _names_a_target(first: str, second: str) -> bool:
    """``--remove NAME SUBHOSTDIR`` rather than ``--remove HOSTDIR NAME|CONF``: a subhost name
    first, then an absolute path that is no file on the host (a CONF is one: it is read; a
    trailing "/" always makes it a directory)."""
    return is_valid_name(first) and second.startswith("/") and not os.path.isfile(second)


def _target(path: str, remove: bool) -> str:
    """SUBHOSTDIR normalised. Whether it is one of overlay-boot's own mounts is found out
    inside, where it resolves (``_own_mount_at``)."""
    if not path.startswith("/"):
        raise UsageError(f"SUBHOSTDIR must be an absolute path: {path}")
    target = os.path.normpath(path)
    if target == "/" and not remove:
        raise UsageError("cannot share onto the subhost's root directory")
    return target


def _main(request: Request) -> int:
    require_root()
    name, _ = resolve_target(request.subhost, "overlay-share")
    if request.remove:
        return _remove(request, name)
    return _share(request, name)


def _share(request: Request, name: str) -> int:
    hostdir = os.path.abspath(request.hostdir or "")
    if not os.path.isdir(hostdir):
        raise SubhostError(f"not a directory: {request.hostdir}")
    tree = libc.open_tree(hostdir, libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC
                          | libc.AT_RECURSIVE)
    try:
        _make_slave(tree)
        in_subhost(name, lambda: _attach(tree, request.target, name))
    finally:
        os.close(tree)
    print(f"sharing {hostdir} with subhost {name} at {request.target}")
    return 0


def _remove(request: Request, name: str) -> int:
    identity = _host_identity(request.hostdir)
    in_subhost(name, lambda: _detach(request.target, identity, request.hostdir, name))
    what = "" if request.hostdir is None else f" {os.path.abspath(request.hostdir)}"
    print(f"stopped sharing{what} with subhost {name} at {request.target}")
    return 0


def _host_identity(hostdir: str | None) -> tuple[int, int] | None:
    """(st_dev, st_ino) of HOSTDIR on the host; None when not given or gone."""
    if hostdir is None:
        return None
    try:
        host = os.stat(os.path.abspath(hostdir))
    except OSError:
        return None  # gone on the host: detach whatever share is mounted there
    return host.st_dev, host.st_ino


def _make_slave(tree: int) -> None:
    """Cut the detached clone TREE off from the host's peer groups, all its mounts.

    A clone of a shared mount is a peer of the original: mounted into the subhost, mounts made
    there under it would appear on the host, and detaching it would unmount the host's own
    submounts. As a slave it still receives what the host mounts under HOSTDIR later, and sends
    nothing back.
    """
    try:
        libc.mount_setattr(tree, "", libc.AT_EMPTY_PATH | libc.AT_RECURSIVE,
                           propagation=libc.MS_SLAVE)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            raise SubhostError("this kernel has no mount_setattr(2) (Linux 5.12 or later): "
                               "a share would propagate mounts back to the host") from None
        raise


def in_subhost(name: str, work) -> None:
    """Run WORK in a child inside NAME's mount namespace; its SubhostError is raised here."""
    record = state.read(name)
    # A pidfd of its PID 1, checked to be the process the record names (never a reused PID);
    # setns() by the pidfd enters that process's mount namespace and nothing else's.
    leader = state.leader_process(record) if record and state.is_locked(name) else None
    if leader is None:
        raise SubhostError(f"subhost {name} is not running")
    if record is not None and record.userns:
        os.close(leader)
        raise SubhostError(
            f"subhost {name} runs in a user namespace of its own (USERNS={record.userns}): "
            "overlay-share does not share into it (a share would show host ownership there); "
            "give it a SHARE= line in its config, which is idmapped")
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                libc.setns(leader, libc.CLONE_NEWNS)  # also makes its root our root
                os.chdir("/")
                work()
                code = 0
            except SubhostError as exc:
                os.write(write_fd, str(exc).encode())
            except BaseException as exc:  # noqa: BLE001 - say what, never return into main()
                os.write(write_fd, f"{type(exc).__name__}: {exc}".encode())
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode("utf-8", "replace")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(leader)
    if status != 0:
        raise SubhostError(message or f"the helper process failed (wait status {status})")


# --- inside the subhost's mount namespace ------------------------------------------------------


def _attach(tree: int, target: str, name: str) -> None:
    directory = _open_dir(target, name, create=True)
    try:
        if _is_mount_root(directory):
            raise SubhostError(f"something is mounted at {target} in subhost {name} already")
        libc.move_mount(tree, "", to_dirfd=directory,
                        flags=libc.MOVE_MOUNT_F_EMPTY_PATH | libc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(directory)


# What overlay-boot itself mounts inside a subhost: never detached as if it were a share.
OWN_MOUNTS = ("/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/etc/adjtime",
              "/run/systemd/journal/dev-log")


def _detach(target: str, identity: tuple[int, int] | None, hostdir: str | None,
            name: str) -> None:
    directory = _open_dir(target, name, create=False)
    try:
        if not _is_mount_root(directory):
            raise SubhostError(f"nothing is mounted at {target} in subhost {name}")
        info = os.fstat(directory)
        if identity is not None and (info.st_dev, info.st_ino) != identity:
            raise SubhostError(f"{target} in subhost {name} is not a share of {hostdir}")
        own = _own_mount_at(directory)
        if own is not None:
            raise SubhostError(f"{target} in subhost {name} is not a share: it is "
                               f"overlay-boot's own mount of {own}; not detached")
        os.fchdir(directory)  # umount2 takes a path: "." is exactly the resolved target
        libc.umount2(".", libc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(directory)


def _own_mount_at(directory: int) -> str | None:
    """Which of OWN_MOUNTS the mount whose root is DIRECTORY is, if any: by what each resolves
    to now inside the subhost (mount id; device and inode on kernels without one), so that no
    spelling of a path (``//proc``, a symbolic link to /run) gets past."""
    mount = _mount_identity(directory)
    for path in OWN_MOUNTS:
        try:
            fd = _openat2(path, directory=False)
        except OSError:
            continue  # not there (no journal socket, /dev/pts inside /dev …)
        try:
            if _mount_identity(fd) == mount:
                return path
        finally:
            os.close(fd)
    return None


def _open_dir(path: str, name: str, *, create: bool) -> int:
    """An O_PATH fd of directory PATH, resolved inside our root (the subhost's).

    Symbolic links are followed as inside the subhost: absolute ones from its root, ``..`` never
    above it, no /proc magic links. With ``create``, missing directories are made (0755).
    """
    parts = [part for part in path.split("/") if part]
    for depth in range(len(parts), -1, -1):  # the deepest existing ancestor
        try:
            fd = _openat2("/".join(parts[:depth]) or "/")
            break
        except FileNotFoundError:
            if not create:
                raise SubhostError(f"{path} does not exist in subhost {name}") from None
        except OSError as exc:
            raise _inside_error(exc, "/" + "/".join(parts[:depth]), name) from None
    for part in parts[depth:]:
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
            child = _openat2(part, fd)
        except OSError as exc:
            os.close(fd)
            raise SubhostError(f"cannot create {path} in subhost {name}: {exc.strerror}") from None
        os.close(fd)
        fd = child
    return fd


def _inside_error(exc: OSError, path: str, name: str) -> SubhostError:
    if exc.errno == errno.ENOTDIR:
        return SubhostError(f"{path} in subhost {name} is not a directory")
    if exc.errno == errno.ELOOP:
        return SubhostError(f"{path} in subhost {name}: too many or unsafe symbolic links")
    return SubhostError(f"{path} in subhost {name}: {exc.strerror}")


def _openat2(path: str, dirfd: int | None = None, directory: bool = True) -> int:
    """openat2(2) of a directory (or, without DIRECTORY, of anything), O_PATH, resolved in the
    root of DIRFD (default: "/")."""
    root = os.open("/", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if dirfd is None else dirfd
    try:
        flags = O_PATH | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
        how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        result = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(root),
                               ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                               ctypes.c_size_t(ctypes.sizeof(how)))
        if result == -1:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return result
    finally:
        if dirfd is None:
            os.close(root)


@dataclass(frozen=True)
class _Statx:
    mask: int
    attributes: int
    mount_id: int
    device: tuple[int, int]
    inode: int


def _statx(fd: int) -> _Statx:
    """statx(2) of FD itself, asking for the mount id too."""
    buffer = ctypes.create_string_buffer(256)
    result = _libc.statx(ctypes.c_int(fd), ctypes.c_char_p(b""),
                         ctypes.c_int(libc.AT_EMPTY_PATH), ctypes.c_uint(STATX_MNT_ID), buffer)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"statx: {os.strerror(err)}")

    def field(offset: int, size: int) -> int:
        return int.from_bytes(buffer.raw[offset:offset + size], sys.byteorder)

    # struct statx: stx_mask @0, stx_attributes @8, stx_ino @32, stx_attributes_mask @56,
    # stx_dev_major/minor @136/140, stx_mnt_id @144.
    mask = field(0, 4)
    attributes = field(8, 8) if field(56, 8) & STATX_ATTR_MOUNT_ROOT else -1
    mount_id = field(144, 8) if mask & STATX_MNT_ID else -1
    return _Statx(mask, attributes, mount_id, (field(136, 4), field(140, 4)), field(32, 8))


def _mount_identity(fd: int) -> tuple[int, ...]:
    """What tells the mount FD is on from another: its id (Linux 5.8), else device and inode
    (for the root of a mount, which is what is compared)."""
    info = _statx(fd)
    if info.mount_id >= 0:
        return (info.mount_id,)
    return (*info.device, info.inode)


def _is_mount_root(fd: int) -> bool:
    """statx(2) STATX_ATTR_MOUNT_ROOT: is FD the root of a mount?"""
    info = _statx(fd)
    if info.attributes < 0:  # kernel older than 5.8: compare with the parent
        parent = os.stat("..", dir_fd=fd)
        own = os.fstat(fd)
        return (own.st_dev, own.st_ino) == (parent.st_dev, parent.st_ino) or \
            own.st_dev != parent.st_dev
    return bool(info.attributes & STATX_ATTR_MOUNT_ROOT)


if __name__ == "__main__":
    sys.exit(main())
