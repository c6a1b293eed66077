"""What a subhost's UPPER changes relative to its lower layers, and what has drifted.

An overlay's upper directory is exactly the subhost's difference from the host. Walking it
gives, per upper entry, one `Entry`:

* ``added``: nothing in the lower layers at that path (or the path is under an opaque
  directory);
* ``modified``: a lower entry exists and the upper one replaces it (copied up for a content or a
  metadata change, or replaced by another type); a directory only when its mode or owner differ
  (a merged directory that merely holds changes is not an entry of its own);
* ``deleted``: a whiteout: a character device 0/0, or a zero-size file carrying the
  ``trusted.overlay.whiteout``/``user.overlay.whiteout`` xattr;
* ``opaque``: a directory marked ``trusted.overlay.opaque``/``user.overlay.opaque`` = ``y``
  over a lower entry: the lower directory is replaced wholesale.

**Drift** (``shadowed``): the lower counterpart changed after the upper entry was made, so the
subhost hides a newer host version. Judged by time: the lower entry's ctime is later than the
upper entry's birth (statx btime; its ctime where the filesystem keeps no birth time); or the
upper entry is a copy-up (overlayfs marked it with ``trusted.overlay.origin``) that was never
written since (its mtime, which copy-up takes from the lower file, is older than its ctime) and
the lower file's size, mtime or symlink target now differ from the copy's. An entry the subhost
made itself and renamed into place (``sed -i``, ``ln -sf``, an editor's save) has an mtime older
than its ctime too, but no origin mark: its content is the subhost's, not an old host copy.
Merged directories are never shadowed (the host's changes show through).

Several lower layers: the topmost layer that has a path counts; a whiteout or a non-directory in
a layer hides the layers below it, as does an opaque directory.

Reading only. UPPER's content is the subhost's and untrusted: it is walked by descriptor
(``openat`` with ``O_NOFOLLOW``, ``fstatat`` without following), so nothing planted in it can
lead the walk outside UPPER. The lower layers are the host's and are read by path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KINDS = ("added", "modified", "deleted", "opaque")
TYPES = ("file", "dir", "symlink", "other")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
WHITEOUT_XATTRS = ("trusted.overlay.whiteout", "user.overlay.whiteout")
ORIGIN_XATTRS = ("trusted.overlay.origin", "user.overlay.origin")
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to make, and there are many
class Entry:
    """One upper entry: its path inside the subhost and how it changes the lower view."""

    path: str  # absolute, inside the subhost ("/etc/hosts")
    kind: str  # one of KINDS
    type: str  # one of TYPES: of the upper entry, or for "deleted" of the lower one it hides
    size: int  # bytes of a regular file or symlink in UPPER; 0 otherwise
    shadowed: bool
    lower: str | None = None  # the lower layer (directory) that has the path, if any

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "type": self.type,
                "shadowed": self.shadowed, "size": self.size, "lower": self.lower}


@dataclass(frozen=True)
class Layers:
    """Where a subhost's layers are: UPPER and the lower layers, top first."""

    upper: str
    lower: tuple[str, ...]


def type_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _has_xattr(names: Iterable[str], wanted: tuple[str, ...]) -> str | None:
    for name in names:
        if name in wanted:
            return name
    return None


def _xattrs_at(dir_fd: int, name: str) -> list[str]:
    """The xattr names of NAME in the directory DIR_FD, without following NAME."""
    try:
        return os.listxattr(f"/proc/self/fd/{dir_fd}/{name}", follow_symlinks=False)
    except OSError:
        return []


def is_xattr_whiteout(path_or_fd: str | int) -> bool:
    """A zero-size regular file marked as a whiteout by xattr (by path, not followed)."""
    try:
        names = os.listxattr(path_or_fd, follow_symlinks=False) if isinstance(path_or_fd, str) \
            else os.listxattr(path_or_fd)
    except OSError:
        return False
    return _has_xattr(names, WHITEOUT_XATTRS) is not None


def is_opaque_fd(fd: int) -> bool:
    """Is the directory open at FD marked opaque (value ``y``; ``x`` only says it holds xattr
    whiteouts)?"""
    try:
        names = os.listxattr(fd)
    except OSError:
        return False
    for attr in OPAQUE_XATTRS:
        if attr in names:
            try:
                if os.getxattr(fd, attr) == b"y":
                    return True
            except OSError:
                pass
    return False


def _is_opaque_path(path: str) -> bool:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return False
    for attr in OPAQUE_XATTRS:
        if attr in names:
            try:
                if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                pass
    return False


# -- birth time (statx) ----------------------------------------------------------------------

_STATX_BTIME = 0x800
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000
_statx = None


def birth_ns(dir_fd: int, name: str, flags: int = _AT_SYMLINK_NOFOLLOW) -> int | None:
    """NAME's birth time in ns (statx, not following NAME; with AT_EMPTY_PATH and "", of
    DIR_FD itself); None when not recorded."""
    global _statx
    if _statx is None:
        _statx = _load_statx()
    if not _statx:
        return None
    func, buf, unpack = _statx
    if func(dir_fd, name.encode("utf-8", "surrogateescape"), flags, _STATX_BTIME, buf) != 0:
        return None
    mask, seconds, nanos = unpack(buf)
    if not mask & _STATX_BTIME:
        return None
    return seconds * 1_000_000_000 + nanos


def _load_statx():
    import ctypes
    import struct

    func = getattr(ctypes.CDLL(None, use_errno=True), "statx", None)
    if func is None:
        return False
    func.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint,
                     ctypes.c_void_p)
    func.restype = ctypes.c_int
    # struct statx: stx_mask (u32) at 0, stx_btime (s64 seconds, u32 ns) at 80; 256 bytes
    return func, ctypes.create_string_buffer(256), struct.Struct("<I76xqI").unpack_from


def _unwritten_copy(upper: os.stat_result) -> bool:
    """Was the upper file's content never written after it was made (a copy-up keeps the lower
    file's mtime, any write since sets mtime = ctime)?"""
    return upper.st_mtime_ns < upper.st_ctime_ns


def is_shadowed(upper: os.stat_result, born: int | None, lower: os.stat_result,
                upper_link: str | None = None, lower_link: str | None = None, *,
                copied_up: bool) -> bool:
    """Did the lower entry change after the upper one was made? (see the module docstring)
    COPIED_UP: the upper entry carries overlayfs's origin mark (a copy of a lower entry)."""
    if lower.st_ctime_ns > (born if born is not None else upper.st_ctime_ns):
        return True
    if stat.S_ISDIR(upper.st_mode) or not copied_up or not _unwritten_copy(upper):
        return False
    if stat.S_IFMT(upper.st_mode) != stat.S_IFMT(lower.st_mode):
        return True
    if stat.S_ISLNK(upper.st_mode):
        return upper_link != lower_link
    if stat.S_ISREG(upper.st_mode):
        return upper.st_size != lower.st_size or upper.st_mtime_ns != lower.st_mtime_ns
    return False


# -- the walk --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Lower:
    """A lower directory that shows under an upper one: its path (with a trailing slash), the
    names in it (one listing instead of a lookup per upper entry) and its layer."""

    dir: str
    names: frozenset[str]
    layer: str


@dataclass(slots=True)
class _Frame:
    prefix: str  # "" or "etc/ssh/": the directory's path relative to UPPER, with a slash
    fd: int  # the upper directory, opened by descriptor
    lowers: tuple[_Lower, ...]  # the lower directories that show under it, top first
    entries: list[os.DirEntry]
    born: int = 0  # the directory's birth (ns; 0 unknown): no entry in it is born earlier
    index: int = 0


class _Filter:
    """Which paths to report (PATH arguments; all when none) and which directories to enter."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.roots = tuple(sorted({normalize(p) for p in paths}))
        self.all = not self.roots or "" in self.roots

    def wants(self, rel: str) -> bool:
        if self.all:
            return True
        return any(rel == r or rel.startswith(r + "/") for r in self.roots)

    def enters(self, rel: str) -> bool:
        if self.all:
            return True
        return any(rel == r or rel.startswith(r + "/") or r.startswith(rel + "/")
                   for r in self.roots)


def normalize(path: str) -> str:
    """A subhost path as the walk names it: no leading or trailing slash ("" for /)."""
    return os.path.normpath("/" + path).lstrip("/")


def _listing(path: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return frozenset()


def _lower_dir(path: str, layer: str) -> _Lower:
    """PATH without its trailing slash ("" for /)."""
    return _Lower(path + "/", _listing(path or "/"), layer)


def _lower_entry(lowers: tuple[_Lower, ...], name: str
                 ) -> tuple[str, os.stat_result, str] | None:
    """The topmost lower entry NAME: (its path, its lstat, its layer); None when no layer has
    it or a whiteout hides it."""
    for lower in lowers:
        if name not in lower.names:
            continue
        path = lower.dir + name
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if is_whiteout_device(st):
            return None
        if st.st_size == 0 and len(lowers) > 1 and stat.S_ISREG(st.st_mode) \
                and is_xattr_whiteout(path):
            return None
        return path, st, lower.layer
    return None


def _child_lowers(lowers: tuple[_Lower, ...], name: str) -> tuple[_Lower, ...]:
    """The lower directories that merge under the directory NAME, top first."""
    found = []
    for i, lower in enumerate(lowers):
        if name not in lower.names:
            continue
        path = lower.dir + name
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISDIR(st.st_mode):
            break  # a file or a whiteout hides the layers below
        found.append(_lower_dir(path, lower.layer))
        if i < len(lowers) - 1 and _is_opaque_path(path):
            break
    return tuple(found)


def walk(layers: Layers, paths: Iterable[str] = (), *,
         shadowed_only: bool = False) -> Iterator[Entry]:
    """The entries of UPPER (under PATHS, when given), depth first in name order."""
    wanted = _Filter(paths)
    every = wanted.all
    top = tuple(_lower_dir(lower.rstrip("/"), str(lower)) for lower in layers.lower)
    root_fd = os.open(layers.upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack = [_Frame("", root_fd, top, _entries(root_fd), _birth_fd(root_fd))]
    try:
        while stack:
            frame = stack[-1]
            if frame.index >= len(frame.entries):
                os.close(frame.fd)
                stack.pop()
                continue
            dir_entry = frame.entries[frame.index]
            frame.index += 1
            rel = frame.prefix + dir_entry.name
            if every:
                entry, child = _visit(frame, dir_entry, rel)
            elif wanted.enters(rel):
                entry, child = _visit(frame, dir_entry, rel)
                if entry is not None and not wanted.wants(rel):
                    entry = None
            else:
                continue
            if entry is not None and (entry.shadowed or not shadowed_only):
                yield entry
            if child is not None:
                stack.append(child)
    finally:
        for frame in stack:
            os.close(frame.fd)


def _birth_fd(fd: int) -> int:
    return birth_ns(fd, "", _AT_EMPTY_PATH) or 0


def _by_name(entry: os.DirEntry) -> str:
    return entry.name


def _entries(fd: int) -> list[os.DirEntry]:
    with os.scandir(fd) as it:
        return sorted(it, key=_by_name)


_S_IFMT = 0o170000
_TYPE_OF = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


def _visit(frame: _Frame, dir_entry: os.DirEntry, rel: str
           ) -> tuple[Entry | None, _Frame | None]:
    """The entry for DIR_ENTRY in FRAME's directory, and the frame to walk it when a
    directory. (The hot path of the walk: written for speed.)"""
    name = dir_entry.name
    try:
        st = dir_entry.stat(follow_symlinks=False)  # fstatat on the directory's descriptor
    except FileNotFoundError:
        return None, None  # gone since the listing (a running subhost)
    fmt = st.st_mode & _S_IFMT
    lower = None
    for candidate in frame.lowers:
        if name in candidate.names:
            lower = _lower_entry(frame.lowers, name)
            break
    if fmt == stat.S_IFDIR:
        return _visit_dir(frame, name, rel, st, lower)
    if (fmt == stat.S_IFCHR and st.st_rdev == 0) or (
            fmt == stat.S_IFREG and st.st_size == 0
            and _has_xattr(_xattrs_at(frame.fd, name), WHITEOUT_XATTRS)):
        return _deleted(frame, name, "/" + rel, st, lower), None
    kind_type = _TYPE_OF.get(fmt, "other")
    size = 0 if kind_type == "other" else st.st_size
    if lower is None:
        return Entry("/" + rel, "added", kind_type, size, False), None
    lower_st = lower[1]
    lower_ctime = lower_st.st_ctime_ns
    if lower_ctime > st.st_ctime_ns:  # later than any birth: no statx needed
        shadowed = True
    elif lower_ctime <= frame.born and st.st_mtime_ns >= st.st_ctime_ns:
        # written since it was made, and born no earlier than its directory, which the lower
        # entry is older than: no statx needed
        shadowed = False
    else:
        born = frame.born if lower_ctime <= frame.born else birth_ns(frame.fd, name)
        upper_link = lower_link = None
        copied_up = _unwritten_copy(st) and \
            _has_xattr(_xattrs_at(frame.fd, name), ORIGIN_XATTRS) is not None
        if copied_up and fmt == stat.S_IFLNK and stat.S_ISLNK(lower_st.st_mode):
            upper_link = _readlink(frame.fd, name)
            lower_link = _readlink(None, lower[0])
        shadowed = is_shadowed(st, born, lower_st, upper_link, lower_link, copied_up=copied_up)
    return Entry("/" + rel, "modified", kind_type, size, shadowed, lower[2]), None


def _deleted(frame: _Frame, name: str, path: str, st: os.stat_result,
             lower: tuple[str, os.stat_result, str] | None) -> Entry:
    if lower is None:
        return Entry(path, "deleted", "other", 0, False)
    lower_st = lower[1]
    shadowed = lower_st.st_ctime_ns > st.st_ctime_ns or \
        lower_st.st_ctime_ns > (birth_ns(frame.fd, name) or st.st_ctime_ns)
    return Entry(path, "deleted", type_of(lower_st.st_mode), 0, shadowed, lower[2])


def _visit_dir(frame: _Frame, name: str, rel: str, st: os.stat_result,
               lower: tuple[str, os.stat_result, str] | None
               ) -> tuple[Entry | None, _Frame | None]:
    path = "/" + rel
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=frame.fd)
    except OSError:
        return None, None  # replaced since the stat (a running subhost): not walked
    try:
        opaque = is_opaque_fd(fd)
        child_lowers = () if opaque or lower is None else _child_lowers(frame.lowers, name)
        child = _Frame(rel + "/", fd, child_lowers, _entries(fd), _birth_fd(fd))
    except BaseException:
        os.close(fd)
        raise
    if lower is None:
        return Entry(path, "added", "dir", 0, False), child
    lower_st = lower[1]
    if opaque:
        shadowed = lower_st.st_ctime_ns > (birth_ns(frame.fd, name) or st.st_ctime_ns)
        return Entry(path, "opaque", "dir", 0, shadowed, lower[2]), child
    if not stat.S_ISDIR(lower_st.st_mode) or _owner_mode(st) != _owner_mode(lower_st):
        return Entry(path, "modified", "dir", 0, False, lower[2]), child
    return None, child


def _owner_mode(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_mode, st.st_uid, st.st_gid


def _readlink(dir_fd: int | None, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


# -- where the layers are ---------------------------------------------------------------------

def layers_of(config: Config) -> Layers:
    """UPPER and LOWER of a config read without a runner; `SubhostError` when they are `!`
    commands (never run here) or the subhost has no overlay (UPPER is LOWER)."""
    from .errors import SubhostError

    commands = sorted({"BASE", "UPPER", "LOWER"} & config.unresolved)
    if config.upper is None or not config.lower:
        what = ", ".join(commands) or "UPPER/LOWER"
        raise SubhostError(f"{config.path}: {what} come from `!` commands, which are not run "
                           "here: cannot tell where the layers are")
    if config.variant != "overlay":
        raise SubhostError(f"subhost {config.name} has no overlay (UPPER is LOWER): "
                           "there is nothing to compare")
    return Layers(str(config.upper), tuple(str(p) for p in config.lower))


def open_in_upper(upper_fd: int, rel: str, flags: int = os.O_RDONLY) -> int:
    """Open REL (relative to UPPER, open at UPPER_FD) without following any symlink on the way
    or at the end; OSError as the kernel gives it (ELOOP/ENOTDIR where a symlink or file is)."""
    parts = [p for p in rel.split("/") if p]
    fd = os.dup(upper_fd)
    try:
        for part in parts[:-1]:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        if not parts:
            return os.dup(fd)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import Config
