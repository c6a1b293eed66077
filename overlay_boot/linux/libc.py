"""Thin ctypes wrappers for the Linux system calls Python 3.11 does not offer.

Every wrapper raises ``OSError(errno, "<call> <path>: <strerror>")`` through one helper, so an
error message always names the call and the path (or namespace) it was about.
"""

from __future__ import annotations

import ctypes
import os
import sys

# --- namespaces: clone(2) / unshare(2) / setns(2) flags -----------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount(2) flags ----------------------------------------------------------------------------
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_STRICTATIME = 0x1000000

# --- umount2(2) flags --------------------------------------------------------------------------
MNT_DETACH = 0x2

# --- prctl(2) options --------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# --- new mount API (open_tree(2), move_mount(2)) -------------------------------------------------
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40

# System call numbers. open_tree/move_mount (424+ series) are the same on every architecture but
# alpha; pivot_root has no glibc wrapper and differs per architecture.
_SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "riscv64": 41,
    "loongarch64": 41,
    "i386": 217,
    "i686": 217,
    "armv7l": 218,
    "armv6l": 218,
    "ppc64le": 203,
    "ppc64": 203,
    "s390x": 217,
}
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429

PathLike = str | os.PathLike[str]

_libc = ctypes.CDLL(None, use_errno=True)

_c_str = ctypes.c_char_p
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int
_libc.mount.argtypes = [_c_str, _c_str, _c_str, ctypes.c_ulong, _c_str]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [_c_str, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.sethostname.argtypes = [_c_str, ctypes.c_size_t]
_libc.sethostname.restype = ctypes.c_int
# prctl(2) and syscall(2) are variadic: no argtypes; every argument is passed as an explicit
# ctypes value of machine-word size instead.
_libc.prctl.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long


def _fs(path: PathLike | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _check(result: int, call: str, what: object) -> int:
    """Raise OSError naming the call and its path when a libc call returned -1."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{call} {what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns", _fd_name(fd))


def _fd_name(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd {fd}"


def mount(
    source: PathLike | None,
    target: PathLike,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    result = _libc.mount(_fs(source), _fs(target), _fs(fstype), flags, _fs(data))
    _check(result, "mount", os.fspath(target))


def umount2(target: PathLike, flags: int = 0) -> None:
    _check(_libc.umount2(_fs(target), flags), "umount2", os.fspath(target))


def pivot_root(new_root: PathLike, put_old: PathLike) -> None:
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"pivot_root {os.fspath(new_root)}: unknown architecture")
    args = (ctypes.c_long(number), _c_str(_fs(new_root)), _c_str(_fs(put_old)))
    _check(_libc.syscall(*args), "pivot_root", os.fspath(new_root))


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) with integer arguments."""
    args = (ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    return _check(_libc.prctl(ctypes.c_int(option), *args), "prctl", option)


def set_pdeathsig(signum: int) -> None:
    prctl(PR_SET_PDEATHSIG, signum)


def set_child_subreaper(on: bool = True) -> None:
    prctl(PR_SET_CHILD_SUBREAPER, int(on))


def open_tree(path: PathLike, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
              dirfd: int = AT_FDCWD) -> int:
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount at ``path`` (an fd)."""
    args = (ctypes.c_long(SYS_OPEN_TREE), ctypes.c_int(dirfd), _c_str(_fs(path)),
            ctypes.c_uint(flags))
    return _check(_libc.syscall(*args), "open_tree", os.fspath(path))


def move_mount(from_fd: int, to_path: PathLike, from_path: PathLike = "",
               to_dirfd: int = AT_FDCWD, flags: int = MOVE_MOUNT_F_EMPTY_PATH) -> None:
    """move_mount(2): attach the mount ``from_fd`` (from open_tree) at ``to_path``."""
    args = (ctypes.c_long(SYS_MOVE_MOUNT), ctypes.c_int(from_fd), _c_str(_fs(from_path)),
            ctypes.c_int(to_dirfd), _c_str(_fs(to_path)), ctypes.c_uint(flags))
    _check(_libc.syscall(*args), "move_mount", os.fspath(to_path))



# --- mount_setattr(2), openat2(2) ----------------------------------------------------------------
SYS_OPENAT2 = 437
SYS_MOUNT_SETATTR = 442
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class _MountAttr(ctypes.Structure):
    """struct mount_attr (MOUNT_ATTR_SIZE_VER0)."""

    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    """mount_setattr(2): add (``attr_set``) or clear mount attributes, change propagation, of
    the mount at ``path`` (relative to ``dirfd``; "" with AT_EMPTY_PATH for the fd itself),
    with AT_RECURSIVE its whole tree. ``propagation``: MS_PRIVATE, MS_SLAVE, MS_SHARED,
    MS_UNBINDABLE, or 0 to leave it. Unlike a ``MS_REMOUNT|MS_BIND`` remount it leaves every
    attribute not named as it was. ``userns_fd``: the user namespace of ``MOUNT_ATTR_IDMAP``.
    """
    attr = _MountAttr(attr_set, attr_clr, propagation, userns_fd)
    args = (ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(dirfd), _c_str(_fs(path)),
            ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(_libc.syscall(*args), "mount_setattr", path or _fd_name(dirfd))


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` below ``dirfd`` under the ``resolve`` restrictions."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    args = (ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), _c_str(_fs(path)),
            ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    return _check(_libc.syscall(*args), "open", path)


# --- capabilities, dumpability, seccomp ----------------------------------------------------------
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_libc.capset.restype = ctypes.c_int
_libc.capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_libc.capget.restype = ctypes.c_int


def capget() -> tuple[int, int, int]:
    """capget(2) of the calling thread: (effective, permitted, inheritable) as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget", "self")
    return tuple(  # type: ignore[return-value]
        getattr(data[0], f) | getattr(data[1], f) << 32
        for f in ("effective", "permitted", "inheritable")
    )


def capset(effective: int, permitted: int, inheritable: int = 0) -> None:
    """capset(2) of the calling thread: three 64-bit capability masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset", hex(permitted))


def seccomp_filter(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (``program``: packed ``struct sock_filter``s)."""

    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    prog = _SockFprog(len(program) // 8, program)
    result = _libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                         ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(result, "prctl", "PR_SET_SECCOMP")


# --- the new mount API (fsopen/fsconfig/fsmount), fsuid/fsgid, securebits ------------------------
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
PR_GET_SECUREBITS = 27
PR_SET_SECUREBITS = 28
SECBIT_NO_SETUID_FIXUP = 1 << 2
_libc.setfsuid.argtypes = [ctypes.c_uint]
_libc.setfsuid.restype = ctypes.c_int
_libc.setfsgid.argtypes = [ctypes.c_uint]
_libc.setfsgid.restype = ctypes.c_int


def fsopen(fstype: str) -> int:
    """fsopen(2): a filesystem context (an fd) for ``fstype``."""
    args = (ctypes.c_long(SYS_FSOPEN), _c_str(fstype.encode()), ctypes.c_uint(FSOPEN_CLOEXEC))
    return _check(_libc.syscall(*args), "fsopen", fstype)


def fsconfig(fsfd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    """fsconfig(2); a failure's message carries what the filesystem logged on ``fsfd``."""
    args = (ctypes.c_long(SYS_FSCONFIG), ctypes.c_int(fsfd), ctypes.c_uint(cmd),
            _c_str(None if key is None else key.encode()),
            _c_str(None if value is None else os.fsencode(value)), ctypes.c_int(0))
    if _libc.syscall(*args) == -1:
        err = ctypes.get_errno()
        said = fs_messages(fsfd)
        raise OSError(err, f"fsconfig {key or cmd}: {os.strerror(err)}"
                      + (f" ({said})" if said else ""))


def fs_messages(fsfd: int) -> str:
    """What the filesystem logged on its context ``fsfd`` (why a mount failed), one line."""
    lines = []
    while len(lines) < 16:
        try:
            lines.append(os.read(fsfd, 1024).decode("utf-8", "replace").strip())
        except OSError:
            break
    return "; ".join(lines)


def fsmount(fsfd: int, attr_flags: int = 0) -> int:
    """fsmount(2): the created filesystem as a detached mount (an fd for move_mount)."""
    args = (ctypes.c_long(SYS_FSMOUNT), ctypes.c_int(fsfd), ctypes.c_uint(FSMOUNT_CLOEXEC),
            ctypes.c_uint(attr_flags))
    return _check(_libc.syscall(*args), "fsmount", _fd_name(fsfd))


def setfsuid(uid: int) -> None:
    """setfsuid(2) (it reports no error: the caller holds CAP_SETUID)."""
    _libc.setfsuid(uid)


def setfsgid(gid: int) -> None:
    _libc.setfsgid(gid)


FSCONFIG_SET_FD = 5


def fsconfig_fd(fsfd: int, key: str, fd: int) -> None:
    """fsconfig(FSCONFIG_SET_FD): ``key`` is the file open as ``fd`` (overlay layers)."""
    args = (ctypes.c_long(SYS_FSCONFIG), ctypes.c_int(fsfd), ctypes.c_uint(FSCONFIG_SET_FD),
            _c_str(key.encode()), _c_str(None), ctypes.c_int(fd))
    if _libc.syscall(*args) == -1:
        err = ctypes.get_errno()
        said = fs_messages(fsfd)
        raise OSError(err, f"fsconfig {key}: {os.strerror(err)}" + (f" ({said})" if said else ""))


# --- statx(2), CLONE_FS: what the share mechanism (linux/share.py) needs -------------------------
CLONE_FS = 0x00000200
STATX_MNT_ID = 0x1000
STATX_ATTR_MOUNT_ROOT = 0x2000
_libc.statx.argtypes = [ctypes.c_int, _c_str, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
_libc.statx.restype = ctypes.c_int


class Statx:
    """What overlay-boot reads of a ``struct statx``: ``mount_root`` is None and ``mount_id``
    -1 on kernels that do not report them (before Linux 5.8). A plain class, not a dataclass
    (whose generated code costs milliseconds at import): config.py imports this module while
    a ``!`` command already runs, before its watchdog is in place."""

    __slots__ = ("inode", "device", "mount_id", "mount_root")

    def __init__(self, inode: int, device: tuple[int, int], mount_id: int,
                 mount_root: bool | None) -> None:
        self.inode = inode
        self.device = device
        self.mount_id = mount_id
        self.mount_root = mount_root


def statx(fd: int, mask: int = STATX_MNT_ID) -> Statx:
    """statx(2) of ``fd`` itself (AT_EMPTY_PATH), asking for ``mask`` on top of the basics."""
    buffer = ctypes.create_string_buffer(256)
    _check(_libc.statx(fd, b"", AT_EMPTY_PATH, mask, buffer), "statx", _fd_name(fd))

    def field(offset: int, size: int) -> int:
        return int.from_bytes(buffer.raw[offset:offset + size], sys.byteorder)

    # struct statx: stx_mask @0, stx_attributes @8, stx_ino @32, stx_attributes_mask @56,
    # stx_dev_major/minor @136/140, stx_mnt_id @144.
    known = field(56, 8) & STATX_ATTR_MOUNT_ROOT
    mount_root = bool(field(8, 8) & STATX_ATTR_MOUNT_ROOT) if known else None
    mount_id = field(144, 8) if field(0, 4) & STATX_MNT_ID else -1
    return Statx(field(32, 8), (field(136, 4), field(140, 4)), mount_id, mount_root)

