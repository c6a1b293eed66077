"""The mount plan of a subhost as data: a list of operations, each ``describe()``-able.

Two plans: ``plan_root`` makes LIVE the subhost's root (SPEC §2.1) and is executed against the
host's ``/``; ``plan_inside`` fills LIVE (SPEC §3) and is executed against LIVE. Targets are
absolute paths *as seen from the root they are executed against*: ``execute(root)`` resolves
them by descriptor inside that root (``linux/resolve.py``: ``openat2(RESOLVE_IN_ROOT)``), so
nothing a subhost put in its UPPER can redirect a mount or a write to the host. Sources of
binds are host paths (from the config, not from the subhost).

Confinement (README "Security model"): the root is ``nodev``; ``/proc/sys`` (but its ``net``),
``/sys`` and ``/etc/adjtime`` are read-only; ``/proc`` files that reach the host's kernel are
masked; other subhosts' directories are masked — unless CAPABILITIES= grants ``sys_admin``
(which could undo all that) or ``all`` (1.6.4's unconfined subhost).

Planning only reads the host where a choice needs it (is a SHARE source a LOWER?, does the
journal socket exist?); everything about LIVE's contents is decided when executing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from overlay_boot.linux import libc, resolve
from overlay_boot.linux.share import attach, clone_tree
from overlay_boot.record import Record

TTY_GID = 5  # Debian's fixed "tty" group, as devpts' gid=5 option

#: systemd-journald's syslog socket on the host.
JOURNAL_DEV_LOG = Path("/run/systemd/journal/dev-log")
_INSIDE_DEV_LOG = PurePosixPath("/run/systemd/journal/dev-log")


# What every operation of a plan offers: describe() -> str and execute(root: Path). A typing
# Protocol for checkers only: `typing` is not imported at run time, because this module is
# loaded by every supervisor and PID 1 shares its memory (docs/ARCHITECTURE.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Op(Protocol):
        def describe(self) -> str: ...

        def execute(self, root: Path) -> None: ...


# --- path handling --------------------------------------------------------------------------

class _Tree:
    """The tree an operation acts in, as a descriptor (``resolve.open_root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fd = resolve.open_root(root)

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def where(self, path: PurePosixPath) -> str:
        """``path`` for messages: inside LIVE or UPPER as the host sees it."""
        return str(self.root.joinpath(str(path).lstrip("/")))

    def open(self, path: PurePosixPath, create: str | None = None) -> int:
        return resolve.open_in(self.fd, path, create)

    def parent(self, path: PurePosixPath) -> tuple[int, str]:
        return resolve.open_parent_in(self.fd, path)


def _os_error(call: str, path: str | Path, exc: OSError) -> OSError:
    return OSError(exc.errno, f"{call} {path}: {os.strerror(exc.errno or 0)}")


def _opts(options: str, flags: int = 0) -> str:
    words = [options] if options else []
    words += [word for bit, word in _FLAG_WORDS if flags & bit]
    return f" ({', '.join(words)})" if words else ""


_FLAG_WORDS = ((libc.MS_RDONLY, "read-only"), (libc.MS_NOSUID, "nosuid"),
               (libc.MS_NODEV, "nodev"), (libc.MS_NOEXEC, "noexec"))


def _mount_on(tree: _Tree, target: PurePosixPath, source: str | Path | None,
              fstype: str | None, flags: int, options: str | None = None,
              create: str | None = resolve.DIR) -> None:
    """mount(2) onto ``target`` in ``tree``, reached by descriptor (see ``linux/resolve.py``)."""
    try:
        fd = tree.open(target, create)
    except OSError as exc:
        raise _os_error("open", tree.where(target), exc) from None
    try:
        libc.mount(source, resolve.fd_path(fd), fstype, flags, options)
    except OSError as exc:
        raise _os_error("mount", tree.where(target), exc) from None
    finally:
        os.close(fd)


def _set_attributes(tree: _Tree, target: PurePosixPath, attributes: int,
                    recursive: bool = False) -> None:
    """Add mount attributes (read-only, nodev…) to the mount now at ``target``, keeping the
    others as they are (a ``MS_REMOUNT`` would reset them)."""
    fd = tree.open(target)
    try:
        flags = libc.AT_EMPTY_PATH | (libc.AT_RECURSIVE if recursive else 0)
        libc.mount_setattr(fd, "", flags, attr_set=attributes)
    except OSError as exc:
        raise _os_error("mount_setattr", tree.where(target), exc) from None
    finally:
        os.close(fd)


# --- operations ---------------------------------------------------------------------------

class MakeDir(Record):
    path: PurePosixPath
    mode: int = 0o755

    def describe(self) -> str:
        return f"mkdir {self.path} (mode {self.mode:o})"

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            parent, name = tree.parent(self.path)
            try:
                try:
                    os.mkdir(name, self.mode, dir_fd=parent)
                except FileExistsError:
                    pass  # a directory already (else the open below says what it is)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=parent)
                try:
                    os.fchmod(fd, self.mode)  # past the umask, and sticky bits
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _os_error("mkdir", tree.where(self.path), exc) from None
            finally:
                os.close(parent)


class Mount(Record):
    """A new filesystem instance; the target directory is created when missing."""

    target: PurePosixPath
    fstype: str
    source: str
    options: str = ""
    flags: int = 0

    def describe(self) -> str:
        return (f"mount {self.fstype} {self.source} on {self.target}"
                f"{_opts(self.options, self.flags)}")

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            _mount_on(tree, self.target, self.source, self.fstype, self.flags,
                      self.options or None)


class Tmpfs(Record):
    target: PurePosixPath
    mode: int = 0o755
    size: str | None = None
    flags: int = libc.MS_NOSUID | libc.MS_NODEV
    extra: str = ""  # more mount options (nr_inodes=…)

    @property
    def options(self) -> str:
        size = f",size={self.size}" if self.size else ""
        extra = f",{self.extra}" if self.extra else ""
        return f"mode={self.mode:o}{size}{extra}"

    def describe(self) -> str:
        return f"mount tmpfs on {self.target}{_opts(self.options, self.flags)}"

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            _mount_on(tree, self.target, "tmpfs", "tmpfs", self.flags, self.options)


class Bind(Record):
    """Bind the host path ``source`` onto ``target``.

    ``create``: make a missing target like the source (a directory for a directory, an empty
    file for anything else). ``optional``: do nothing when source or target is missing.
    ``attributes``: mount attributes added to the bind (``MOUNT_ATTR_RDONLY``, ``_NODEV``…),
    the source mount's others kept.
    """

    source: Path
    target: PurePosixPath
    recursive: bool = False
    attributes: int = 0
    create: bool = False
    optional: bool = False
    note: str = ""
    userns_fd: int = -1  # >= 0: idmapped with this user namespace (USERNS=)

    def describe(self) -> str:
        kind = "rbind" if self.recursive else "bind"
        extras = [w for w, on in (("read-only", self.attributes & libc.MOUNT_ATTR_RDONLY),
                                  ("nodev", self.attributes & libc.MOUNT_ATTR_NODEV),
                                  ("idmapped", self.userns_fd >= 0),
                                  ("if both exist", self.optional),
                                  (self.note, bool(self.note))) if on]
        tail = f" ({', '.join(extras)})" if extras else ""
        return f"{kind} {self.source} onto {self.target}{tail}"

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            if self.optional and not os.path.exists(self.source):
                return
            create = None
            if self.create:
                create = resolve.DIR if os.path.isdir(self.source) else resolve.FILE
            elif self.optional:
                try:
                    os.close(tree.open(self.target))
                except OSError:
                    return
            # The one bind primitive (linux/share.py), as overlay-share's: a slave clone.
            try:
                clone = clone_tree(self.source, recursive=self.recursive,
                                   attributes=self.attributes, userns_fd=self.userns_fd)
            except OSError as exc:
                raise _os_error("idmap" if self.userns_fd >= 0 else "bind", self.source,
                                exc) from None
            try:
                try:
                    fd = tree.open(self.target, create)
                except OSError as exc:
                    raise _os_error("open", tree.where(self.target), exc) from None
                try:
                    attach(clone, fd)
                except OSError as exc:
                    raise _os_error("mount", tree.where(self.target), exc) from None
                finally:
                    os.close(fd)
            finally:
                os.close(clone)


class IdmappedOverlay(Record):
    """LIVE as an overlay over idmapped layers, created as BASE (USERNS=, ``linux/userns``);
    ``nodev``. Execute as ``userns.MappedCreator(ids)``."""

    target: PurePosixPath
    name: str
    lower: tuple[Path, ...]
    upper: Path
    work: Path
    userns_fd: int

    def describe(self) -> str:
        layers = ":".join(str(p) for p in self.lower)
        return (f"mount overlay {self.name} on {self.target} (lower {layers}, upper "
                f"{self.upper}, work {self.work}, idmapped, nodev)")

    def execute(self, root: Path) -> None:
        from overlay_boot.linux import userns

        with _Tree(root) as tree:
            overlay = userns.overlay_tree(self.name, self.lower, self.upper, self.work,
                                          self.userns_fd)
            try:
                fd = tree.open(self.target)
                try:
                    attach(overlay, fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _os_error("mount", tree.where(self.target), exc) from None
            finally:
                os.close(overlay)


class MakeNode(Record):
    """A character device node, owned by ``uid`` and ``gid``."""

    path: PurePosixPath
    major: int
    minor: int
    mode: int = 0o666
    gid: int = 0
    uid: int = 0

    def describe(self) -> str:
        group = f", gid {self.gid}" if self.gid else ""
        return f"mknod {self.path} c {self.major} {self.minor} (mode {self.mode:o}{group})"

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            parent, name = tree.parent(self.path)
            try:
                os.mknod(name, stat.S_IFCHR | self.mode, os.makedev(self.major, self.minor),
                         dir_fd=parent)
                os.chmod(name, self.mode, dir_fd=parent)
                os.chown(name, self.uid, self.gid, dir_fd=parent, follow_symlinks=False)
            except OSError as exc:
                raise _os_error("mknod", tree.where(self.path), exc) from None
            finally:
                os.close(parent)


class Symlink(Record):
    """``path`` -> ``target`` (like ``ln -sTf``: an existing symlink is replaced)."""

    path: PurePosixPath
    target: str

    def describe(self) -> str:
        return f"symlink {self.path} -> {self.target}"

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            parent, name = tree.parent(self.path)
            try:
                if stat.S_ISLNK(_lstat_mode(parent, name)):
                    os.unlink(name, dir_fd=parent)
                os.symlink(self.target, name, dir_fd=parent)
            except OSError as exc:
                raise _os_error("symlink", tree.where(self.path), exc) from None
            finally:
                os.close(parent)


class WriteFile(Record):
    path: PurePosixPath
    content: str
    mode: int = 0o644
    only_if_missing: bool = False

    def describe(self) -> str:
        cond = ", unless it exists" if self.only_if_missing else ""
        return f"write {self.path} ({len(self.content.encode())} bytes{cond})"

    def execute(self, root: Path) -> bool:
        """True when written. A final symlink is never followed."""
        with _Tree(root) as tree:
            parent, name = tree.parent(self.path)
            try:
                if self.only_if_missing and _lstat_mode(parent, name):
                    return False
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
                fd = os.open(name, flags, self.mode, dir_fd=parent)
                try:
                    os.write(fd, self.content.encode())
                    os.fchmod(fd, self.mode)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _os_error("write", tree.where(self.path), exc) from None
            finally:
                os.close(parent)
        return True


class SelfBind(Record):
    """Bind ``target`` (inside the tree) onto itself, to give that subtree its own mount
    attributes: ``set`` (e.g. read-only) and ``clear``. Nothing when it does not exist."""

    target: PurePosixPath
    set: int = 0
    clear: int = 0

    def describe(self) -> str:
        how = "read-only" if self.set & libc.MOUNT_ATTR_RDONLY else "writable"
        return f"make {self.target} {how} (if it exists)"

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            try:
                fd = tree.open(self.target)
            except FileNotFoundError:
                return
            try:
                here = resolve.fd_path(fd)
                libc.mount(here, here, None, libc.MS_BIND)
            except OSError as exc:
                raise _os_error("bind", tree.where(self.target), exc) from None
            finally:
                os.close(fd)
            fd = tree.open(self.target)  # the new mount, not the directory it covers
            try:
                libc.mount_setattr(fd, "", libc.AT_EMPTY_PATH, self.set, self.clear)
            except OSError as exc:
                raise _os_error("mount_setattr", tree.where(self.target), exc) from None
            finally:
                os.close(fd)


class Mask(Record):
    """Hide ``target`` if it exists: an empty read-only tmpfs over a directory, the tree's
    own ``/dev/null`` (read-only, ``nodev``: every open fails) over anything else."""

    target: PurePosixPath
    note: str = ""

    def describe(self) -> str:
        whose = f" ({self.note})" if self.note else ""
        return f"mask {self.target}{whose} (if it exists)"

    def execute(self, root: Path) -> None:
        with _Tree(root) as tree:
            try:
                fd = tree.open(self.target)
            except (FileNotFoundError, NotADirectoryError):
                return
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                here = resolve.fd_path(fd)
                if is_dir:
                    libc.mount("tmpfs", here, "tmpfs", _MASK_FLAGS, "mode=0,size=4k")
                else:
                    null = tree.open(_p("/dev/null"))
                    try:
                        libc.mount(resolve.fd_path(null), here, None, libc.MS_BIND)
                    finally:
                        os.close(null)
            except OSError as exc:
                raise _os_error("mask", tree.where(self.target), exc) from None
            finally:
                os.close(fd)
            if not is_dir:
                _set_attributes(tree, self.target,
                                libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NODEV)


_MASK_FLAGS = libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC


def _lstat_mode(dir_fd: int, name: str) -> int:
    """The file type and mode of ``name`` in ``dir_fd`` (not followed); 0 when missing."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return 0


# --- plans --------------------------------------------------------------------------------

def _p(path: Path | str) -> PurePosixPath:
    return PurePosixPath(path)


def _escape_overlay(path: Path) -> str:
    """overlayfs option values: ``\\``, ``,`` and ``:`` are escaped with a backslash."""
    text = str(path)
    for char in ("\\", ",", ":"):
        text = text.replace(char, "\\" + char)
    return text


def overlay_options(lower: Iterable[Path], upper: Path, work: Path) -> str:
    lowerdir = ":".join(_escape_overlay(p) for p in lower)
    return f"lowerdir={lowerdir},upperdir={_escape_overlay(upper)},workdir={_escape_overlay(work)}"


def _confined(config: Any) -> bool:
    """False only for CAPABILITIES=all: the subhost then gets 1.6.4's unconfined tree."""
    grant = getattr(config, "capabilities", None)
    return not (grant is not None and grant.everything)


def _kernel_interfaces_protected(config: Any) -> bool:
    """Masks and read-only kernel interfaces: not for CAPABILITIES=all, nor for sys_admin,
    which could undo them, unless USERNS=: there they are locked (MNT_LOCKED) in the user
    namespace's mount namespace, and so stay whatever it may do."""
    grant = getattr(config, "capabilities", None)
    if grant is None or not grant.kernel_interfaces_writable:
        return True
    return getattr(config, "userns", None) is not None and not grant.everything


def plan_root(config: Any, userns_fd: int | None = None) -> list[Op]:
    """Make LIVE the subhost's root (SPEC §2.1); execute with ``root=Path("/")``.

    The root is ``nodev``: a device node the subhost finds in its tree (in LOWER, or planted
    in UPPER) opens nothing; its own ``/dev`` is a tmpfs of its own. With USERNS=
    (``userns_fd``), only an overlay: over idmapped layers, always ``nodev``.
    """
    live = _p(config.live)
    if userns_fd is not None:
        if config.variant != "overlay":
            raise ValueError(f"USERNS= needs an overlay root, not the {config.variant} variant")
        return [IdmappedOverlay(live, config.name, tuple(config.lower), Path(config.upper),
                                Path(config.work), userns_fd)]
    nodev = libc.MOUNT_ATTR_NODEV if _confined(config) else 0
    if config.variant == "overlay":
        options = overlay_options(config.lower, config.upper, config.work)
        flags = libc.MS_NODEV if nodev else 0
        return [Mount(live, "overlay", config.name, options, flags)]
    if config.variant == "bind":
        return [Bind(Path(config.upper), live, attributes=nodev)]
    # Pre-mounted: LIVE is used as it is. Binding it onto itself (in the subhost's own mount
    # namespace only) makes sure it is a mount point, which pivot_root requires.
    return [Bind(Path(config.live), live, recursive=True, attributes=nodev,
                 note="a mount point for pivot_root")]


def _owner_options(owner: int) -> str:
    """tmpfs options making its root directory ``owner``'s (root inside a USERNS= subhost)."""
    return f"uid={owner},gid={owner}" if owner else ""


def _dev_plan(owner: int = 0) -> list[Op]:
    """``owner``: host uid/gid of root inside (BASE with USERNS=, else 0)."""
    dev = PurePosixPath("/dev")
    nodes = [
        ("null", 1, 3, 0o666, 0),
        ("zero", 1, 5, 0o666, 0),
        ("full", 1, 7, 0o666, 0),
        ("random", 1, 8, 0o666, 0),
        ("urandom", 1, 9, 0o666, 0),
        ("tty", 5, 0, 0o666, TTY_GID),
        ("console", 5, 1, 0o622, TTY_GID),
    ]
    ops: list[Op] = [Tmpfs(dev, 0o755, "4M", flags=libc.MS_NOSUID | libc.MS_STRICTATIME,
                           extra=_owner_options(owner))]
    ops += [MakeNode(dev / n, major, minor, mode, owner + gid, owner)
            for n, major, minor, mode, gid in nodes]
    ops += [
        Symlink(dev / "ptmx", "pts/ptmx"),
        Symlink(dev / "fd", "/proc/self/fd"),
        Symlink(dev / "stdin", "/proc/self/fd/0"),
        Symlink(dev / "stdout", "/proc/self/fd/1"),
        Symlink(dev / "stderr", "/proc/self/fd/2"),
        # Bounded like Docker's: without size= a tmpfs may take half the host's memory.
        Tmpfs(dev / "shm", 0o1777, SHM_SIZE, extra=_owner_options(owner)),
        # max=: ptys of this instance are bounded too (kernel.pty.max is host-wide).
        Mount(dev / "pts", "devpts", "devpts",
              f"newinstance,ptmxmode=0666,mode=620,gid={owner + TTY_GID},max={PTY_MAX}",
              libc.MS_NOSUID | libc.MS_NOEXEC),
    ]
    return ops


#: Size of the subhost's /dev/shm, and how many ptys its devpts instance may hand out.
SHM_SIZE = "64M"
PTY_MAX = 1024

#: /proc files that give away or act on the host's kernel: masked (open fails with EACCES).
PROC_MASKED = ("kcore", "keys", "key-users", "kallsyms", "timer_list", "sched_debug",
               "latency_stats", "timer_stats", "kpagecount", "kpageflags", "kpagecgroup",
               "vmallocinfo", "sysrq-trigger")
#: /proc directories of host hardware and kernel-global knobs: read-only.
PROC_READ_ONLY = ("sys", "acpi", "apm", "asound", "bus", "fs", "irq", "scsi", "driver")


def _proc_plan(config: Any) -> list[Op]:
    kernel_fs = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
    ops: list[Op] = [Mount(_p("/proc"), "proc", "proc", flags=kernel_fs)]
    if not _kernel_interfaces_protected(config):
        return ops
    proc = _p("/proc")
    ops += [SelfBind(proc / d, set=libc.MOUNT_ATTR_RDONLY) for d in PROC_READ_ONLY]
    # The network sysctls are the subhost's own (its network namespace): writable again.
    ops.append(SelfBind(proc / "sys/net", clear=libc.MOUNT_ATTR_RDONLY))
    ops += [Mask(proc / f) for f in PROC_MASKED]
    return ops


def _is_lower(source: Path, lower: Iterable[Path]) -> bool:
    real = os.path.realpath(source)
    return any(real == os.path.realpath(p) for p in lower)


def _share_attributes(source: Path, config: Any) -> int:
    """A shared directory is ``nodev``; a shared device node is the admin's explicit grant."""
    if not _confined(config):
        return 0
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return libc.MOUNT_ATTR_NODEV
    return 0 if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else libc.MOUNT_ATTR_NODEV


def plan_inside(config: Any, journal_socket: Path | None = None,
                hidden: Iterable[PurePosixPath] = (), userns_fd: int | None = None) -> list[Op]:
    """What goes into LIVE (SPEC §3); execute with ``root=config.live`` after ``plan_root``.

    ``hidden``: host paths of other subhosts (their BASE, UPPER, WORK, LIVE), masked where
    they show in this subhost's tree (they lie in the host's root filesystem, its LOWER).
    ``userns_fd`` (USERNS=): the tmpfs mounts belong to BASE, SHAREs are idmapped; execute
    as ``userns.MappedCreator(ids)``, so that what is created belongs to BASE too.
    """
    kernel_fs = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
    protect = _kernel_interfaces_protected(config)
    ids = getattr(config, "userns", None) if userns_fd is not None else None
    owner = ids.base if ids is not None else 0
    ops = _dev_plan(owner)
    ops += _proc_plan(config)
    ops.append(Mount(_p("/sys"), "sysfs", "sysfs",
                     flags=kernel_fs | (libc.MS_RDONLY if protect else 0)))
    if config.ram_size is not None:
        ops.append(Tmpfs(_p("/run"), 0o755, config.ram_size, extra=_owner_options(owner)))
        ops.append(MakeDir(_p("/run/lock"), 0o1777))
    # Read-only: it sets how the host's clock is read at its next boot.
    adjtime_attributes = libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NODEV if protect else 0
    ops.append(Bind(Path("/etc/adjtime"), _p("/etc/adjtime"), attributes=adjtime_attributes,
                    optional=True))
    kept = [_p(share.target) for share in config.shares]
    if journal_socket is not None and journal_socket.exists():
        kept.append(_INSIDE_DEV_LOG)
        # PID 1 binds its relay there (linux/journal.py). A symlink, not a socket at /dev/log:
        # a syslog daemon started inside can replace it.
        ops.append(Symlink(_p("/dev/log"), str(_INSIDE_DEV_LOG)))
    own = [_p(p) for p in (config.base, config.upper, config.work, config.live) if p]
    # Hundreds of hidden paths (one per other subhost) against a few: a set and prefixes, not
    # pathlib's parents for each pair (~30 ms with 300 subhosts known, issue #13). No mask on a
    # kept path or our own, nor on a directory that holds one, nor inside a kept one.
    holding = {a for p in (*kept, *own) for a in (p, *p.parents)}
    inside_kept = tuple(str(k).rstrip("/") + "/" for k in kept)
    for path in sorted(set(hidden)):
        if path not in holding and not str(path).startswith(inside_kept):
            ops.append(Mask(path, note="another subhost's"))
    for share in config.shares:
        if _is_lower(share.source, config.lower):
            continue
        # Not recursive, as 1.6.4's `mount --bind`: mounts below the source stay outside.
        ops.append(Bind(Path(share.source), _p(share.target), create=True,
                        attributes=_share_attributes(Path(share.source), config),
                        userns_fd=-1 if userns_fd is None else userns_fd))
    return ops


# --- the generated /etc/network/interfaces ---------------------------------------------------

def interfaces_text(name: str, cables: Iterable[Any]) -> str:
    lines = [
        f"# Generated by overlay-boot for subhost {name}: its cables are declared here so that",
        "# the subhost never brings up the host's network configuration. Edit at will.",
        "auto lo",
        "iface lo inet loopback",
    ]
    for cable in cables:
        lines += ["", f"auto {cable.sub_if}", f"iface {cable.sub_if} inet manual"]
    return "\n".join(lines) + "\n"


def write_default_interfaces(upper: Path, name: str, cables: Iterable[Any]) -> bool:
    """Write ``UPPER/etc/network/interfaces`` unless UPPER has one; True when written.

    Anything at that path counts as "has one", also a symlink or an overlayfs whiteout (the
    subhost deleted the file on purpose).
    """
    op = WriteFile(_p("/etc/network/interfaces"), interfaces_text(name, cables),
                   only_if_missing=True)
    return op.execute(upper)


__all__ = [
    "JOURNAL_DEV_LOG", "Bind", "IdmappedOverlay", "MakeDir", "MakeNode", "Mask", "Mount",
    "SelfBind", "Symlink", "Tmpfs", "WriteFile", "interfaces_text", "overlay_options",
    "plan_inside",
    "plan_root", "write_default_interfaces",
]
