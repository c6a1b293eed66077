"""overlay-share: attach a host directory into a running subhost, or detach it again.

    overlay-share HOSTDIR NAME [SUBHOSTDIR]            share HOSTDIR at SUBHOSTDIR inside NAME
    overlay-share --remove HOSTDIR NAME [SUBHOSTDIR]   detach it again

SUBHOSTDIR defaults to HOSTDIR's own path. How: a recursive clone of HOSTDIR's mount tree is
taken in the host's mount namespace (open_tree), then a child process enters the subhost's mount
namespace — whose root is the subhost's root — and attaches the clone there (move_mount). The
target is resolved inside the subhost's root and never through /proc magic links; missing
directories are created. Nothing is mounted on the host.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import sys

from .. import state
from ..errors import SubhostError
from ..linux import libc
from .common import UsageError, require_root, resolve_target, run_main

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
STATX_ATTR_MOUNT_ROOT = 0x2000
O_PATH = getattr(os, "O_PATH", 0o10000000)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="overlay-share",
        description="Share a host directory with a running overlay-boot subhost (a bind mount "
                    "inside it), or with --remove detach it again.",
        epilog="SUBHOSTDIR defaults to the same path as HOSTDIR. The share lasts until it is "
               "removed or the subhost stops.",
    )
    parser.add_argument("--remove", action="store_true",
                        help="detach the share at SUBHOSTDIR (HOSTDIR may be gone)")
    parser.add_argument("hostdir", metavar="HOSTDIR")
    parser.add_argument("name", metavar="NAME|CONF")
    parser.add_argument("subhostdir", metavar="SUBHOSTDIR", nargs="?")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_main(lambda: _main(args), "overlay-share")


def _main(args: argparse.Namespace) -> int:
    require_root()
    hostdir = os.path.abspath(args.hostdir)
    target = args.subhostdir or hostdir
    if not target.startswith("/"):
        raise UsageError(f"SUBHOSTDIR must be an absolute path: {target}")
    target = os.path.normpath(target)
    if target == "/":
        raise UsageError("cannot share onto the subhost's root directory")
    name, _ = resolve_target(args.name)
    if args.remove:
        try:
            host = os.stat(hostdir)
            identity: tuple[int, int] | None = (host.st_dev, host.st_ino)
        except OSError:
            identity = None  # gone on the host: detach whatever is mounted there
        in_subhost(name, lambda: _detach(target, identity, args.hostdir, name))
        print(f"stopped sharing {hostdir} with subhost {name} at {target}")
        return 0
    if not os.path.isdir(hostdir):
        raise SubhostError(f"not a directory: {args.hostdir}")
    tree = libc.open_tree(hostdir, libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC
                          | libc.AT_RECURSIVE)
    try:
        in_subhost(name, lambda: _attach(tree, target, name))
    finally:
        os.close(tree)
    print(f"sharing {hostdir} with subhost {name} at {target}")
    return 0


def in_subhost(name: str, work) -> None:
    """Run WORK in a child inside NAME's mount namespace; its SubhostError is raised here."""
    record = state.read(name)
    # A pidfd of its PID 1, checked to be the process the record names (never a reused PID);
    # setns() by the pidfd enters that process's mount namespace and nothing else's.
    leader = state.leader_process(record) if record and state.is_locked(name) else None
    if leader is None:
        raise SubhostError(f"subhost {name} is not running")
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
OWN_MOUNTS = frozenset({"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run",
                        "/etc/adjtime", "/run/systemd/journal/dev-log"})


def _detach(target: str, identity: tuple[int, int] | None, hostdir: str, name: str) -> None:
    if identity is None and target in OWN_MOUNTS:
        raise SubhostError(f"{target} in subhost {name} is not a share: not detached")
    directory = _open_dir(target, name, create=False)
    try:
        if not _is_mount_root(directory):
            raise SubhostError(f"nothing is mounted at {target} in subhost {name}")
        info = os.fstat(directory)
        if identity is not None and (info.st_dev, info.st_ino) != identity:
            raise SubhostError(f"{target} in subhost {name} is not a share of {hostdir}")
        os.fchdir(directory)  # umount2 takes a path: "." is exactly the resolved target
        libc.umount2(".", libc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(directory)


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


def _openat2(path: str, dirfd: int | None = None) -> int:
    """openat2(2) of a directory, O_PATH, resolved in the root of DIRFD (default: "/")."""
    root = os.open("/", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if dirfd is None else dirfd
    try:
        how = _OpenHow(O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0,
                       RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
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


def _is_mount_root(fd: int) -> bool:
    """statx(2) STATX_ATTR_MOUNT_ROOT: is FD the root of a mount?"""
    buffer = ctypes.create_string_buffer(256)
    result = _libc.statx(ctypes.c_int(fd), ctypes.c_char_p(b""),
                         ctypes.c_int(libc.AT_EMPTY_PATH), ctypes.c_uint(0), buffer)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"statx: {os.strerror(err)}")
    attributes = int.from_bytes(buffer.raw[8:16], sys.byteorder)
    mask = int.from_bytes(buffer.raw[56:64], sys.byteorder)
    if not mask & STATX_ATTR_MOUNT_ROOT:  # kernel older than 5.8: compare with the parent
        parent = os.stat("..", dir_fd=fd)
        own = os.fstat(fd)
        return (own.st_dev, own.st_ino) == (parent.st_dev, parent.st_ino) or \
            own.st_dev != parent.st_dev
    return bool(attributes & STATX_ATTR_MOUNT_ROOT)


if __name__ == "__main__":
    sys.exit(main())
