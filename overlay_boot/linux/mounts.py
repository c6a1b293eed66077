"""The mount plan of a subhost as data: a list of operations, each ``describe()``-able.

Two plans: ``plan_root`` makes LIVE the subhost's root (SPEC §2.1) and is executed against the
host's ``/``; ``plan_inside`` fills LIVE (SPEC §3) and is executed against LIVE. Targets are
absolute paths *as seen from the root they are executed against*: ``execute(root)`` resolves
them like a chroot would (an absolute symlink in the subhost's tree points into LIVE, never to
the host), so nothing a subhost put in its UPPER can redirect a mount or a write to the host.
Sources of binds are host paths.

Planning only reads the host where a choice needs it (is a SHARE source a LOWER?, does the
journal socket exist?); everything about LIVE's contents is decided when executing.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from overlay_boot.linux import libc

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

def resolve_in(root: Path, path: PurePosixPath | str, max_links: int = 40) -> Path:
    """``root`` + ``path`` with every symlink resolved as if ``root`` were ``/``.

    Missing components are kept as they are (they are about to be created).
    """
    todo = list(PurePosixPath(path).parts)
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part in ("/", ".", ""):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        try:
            target = os.readlink(root.joinpath(*done, part))
        except OSError:  # not a symlink, missing, or below a non-directory
            done.append(part)
            continue
        links += 1
        if links > max_links:
            where = root.joinpath(*done, part)
            raise OSError(errno.ELOOP, f"resolve {where}: {os.strerror(errno.ELOOP)}")
        if target.startswith("/"):
            done = []
        todo[:0] = PurePosixPath(target).parts
    return root.joinpath(*done)


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` with 0755 directories, failing with a message that names the path."""
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"mkdir {path}: {os.strerror(exc.errno or 0)}") from None


def _make_file(path: Path) -> None:
    """An empty file to mount a non-directory onto (kept when anything non-dir is there)."""
    if os.path.lexists(path):
        return
    _make_dirs(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
    except OSError as exc:
        raise OSError(exc.errno, f"create {path}: {os.strerror(exc.errno or 0)}") from None


def _os_error(call: str, path: Path, exc: OSError) -> OSError:
    return OSError(exc.errno, f"{call} {path}: {os.strerror(exc.errno or 0)}")


def _opts(options: str) -> str:
    return f" ({options})" if options else ""


# --- operations ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MakeDir:
    path: PurePosixPath
    mode: int = 0o755

    def describe(self) -> str:
        return f"mkdir {self.path} (mode {self.mode:o})"

    def execute(self, root: Path) -> None:
        path = resolve_in(root, self.path)
        if path.is_dir():
            return
        _make_dirs(path.parent)
        try:
            os.mkdir(path, self.mode)
            os.chmod(path, self.mode)  # past the umask, and sticky bits
        except OSError as exc:
            raise _os_error("mkdir", path, exc) from None


@dataclass(frozen=True)
class Mount:
    """A new filesystem instance; the target directory is created when missing."""

    target: PurePosixPath
    fstype: str
    source: str
    options: str = ""
    flags: int = 0

    def describe(self) -> str:
        return f"mount {self.fstype} {self.source} on {self.target}{_opts(self.options)}"

    def execute(self, root: Path) -> None:
        target = resolve_in(root, self.target)
        _make_dirs(target)
        libc.mount(self.source, target, self.fstype, self.flags, self.options or None)


@dataclass(frozen=True)
class Tmpfs:
    target: PurePosixPath
    mode: int = 0o755
    size: str | None = None
    flags: int = libc.MS_NOSUID | libc.MS_NODEV

    @property
    def options(self) -> str:
        size = f",size={self.size}" if self.size else ""
        return f"mode={self.mode:o}{size}"

    def describe(self) -> str:
        return f"mount tmpfs on {self.target} ({self.options})"

    def execute(self, root: Path) -> None:
        target = resolve_in(root, self.target)
        _make_dirs(target)
        libc.mount("tmpfs", target, "tmpfs", self.flags, self.options)


@dataclass(frozen=True)
class Bind:
    """Bind the host path ``source`` onto ``target``.

    ``create``: make a missing target like the source (a directory for a directory, an empty
    file for anything else). ``optional``: do nothing when source or target is missing.
    """

    source: Path
    target: PurePosixPath
    recursive: bool = False
    readonly: bool = False
    create: bool = False
    optional: bool = False
    note: str = ""

    def describe(self) -> str:
        kind = "rbind" if self.recursive else "bind"
        extras = [w for w, on in (("read-only", self.readonly), ("if both exist", self.optional),
                                  (self.note, bool(self.note))) if on]
        tail = f" ({', '.join(extras)})" if extras else ""
        return f"{kind} {self.source} onto {self.target}{tail}"

    def execute(self, root: Path) -> None:
        target = resolve_in(root, self.target)
        if self.optional and not (self.source.exists() and target.exists()):
            return
        if self.create:
            if self.source.is_dir():
                _make_dirs(target)
            else:
                _make_file(target)
        flags = libc.MS_BIND | (libc.MS_REC if self.recursive else 0)
        libc.mount(self.source, target, None, flags)
        if self.readonly:
            libc.mount(None, target, None, flags | libc.MS_REMOUNT | libc.MS_RDONLY)


@dataclass(frozen=True)
class MakeNode:
    """A character device node, owned by root and ``gid``."""

    path: PurePosixPath
    major: int
    minor: int
    mode: int = 0o666
    gid: int = 0

    def describe(self) -> str:
        group = f", gid {self.gid}" if self.gid else ""
        return f"mknod {self.path} c {self.major} {self.minor} (mode {self.mode:o}{group})"

    def execute(self, root: Path) -> None:
        path = resolve_in(root, self.path)
        try:
            os.mknod(path, stat.S_IFCHR | self.mode, os.makedev(self.major, self.minor))
            os.chmod(path, self.mode)
            os.chown(path, 0, self.gid)
        except OSError as exc:
            raise _os_error("mknod", path, exc) from None


@dataclass(frozen=True)
class Symlink:
    """``path`` -> ``target`` (like ``ln -sTf``: an existing symlink is replaced)."""

    path: PurePosixPath
    target: str

    def describe(self) -> str:
        return f"symlink {self.path} -> {self.target}"

    def execute(self, root: Path) -> None:
        path = resolve_in(root, self.path.parent) / self.path.name
        try:
            if path.is_symlink():
                path.unlink()
            os.symlink(self.target, path)
        except OSError as exc:
            raise _os_error("symlink", path, exc) from None


@dataclass(frozen=True)
class WriteFile:
    path: PurePosixPath
    content: str
    mode: int = 0o644
    only_if_missing: bool = False

    def describe(self) -> str:
        cond = ", unless it exists" if self.only_if_missing else ""
        return f"write {self.path} ({len(self.content.encode())} bytes{cond})"

    def execute(self, root: Path) -> None:
        path = resolve_in(root, self.path.parent) / self.path.name  # never follows a final link
        if self.only_if_missing and os.path.lexists(path):
            return
        _make_dirs(path.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, self.mode)
            try:
                os.write(fd, self.content.encode())
                os.fchmod(fd, self.mode)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _os_error("write", path, exc) from None


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


def plan_root(config: Any) -> list[Op]:
    """Make LIVE the subhost's root (SPEC §2.1); execute with ``root=Path("/")``."""
    live = _p(config.live)
    if config.variant == "overlay":
        options = overlay_options(config.lower, config.upper, config.work)
        return [Mount(live, "overlay", config.name, options)]
    if config.variant == "bind":
        return [Bind(Path(config.upper), live)]
    # Pre-mounted: LIVE is used as it is. Binding it onto itself (in the subhost's own mount
    # namespace only) makes sure it is a mount point, which pivot_root requires.
    return [Bind(Path(config.live), live, recursive=True, note="a mount point for pivot_root")]


def _dev_plan() -> list[Op]:
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
    ops: list[Op] = [Tmpfs(dev, 0o755, "4M", flags=libc.MS_NOSUID | libc.MS_STRICTATIME)]
    ops += [MakeNode(dev / n, major, minor, mode, gid) for n, major, minor, mode, gid in nodes]
    ops += [
        Symlink(dev / "ptmx", "pts/ptmx"),
        Symlink(dev / "fd", "/proc/self/fd"),
        Symlink(dev / "stdin", "/proc/self/fd/0"),
        Symlink(dev / "stdout", "/proc/self/fd/1"),
        Symlink(dev / "stderr", "/proc/self/fd/2"),
        Tmpfs(dev / "shm", 0o1777),
        Mount(dev / "pts", "devpts", "devpts", f"newinstance,ptmxmode=0666,mode=620,gid={TTY_GID}",
              libc.MS_NOSUID | libc.MS_NOEXEC),
    ]
    return ops


def _is_lower(source: Path, lower: Iterable[Path]) -> bool:
    real = os.path.realpath(source)
    return any(real == os.path.realpath(p) for p in lower)


def plan_inside(config: Any, journal_socket: Path | None = None) -> list[Op]:
    """What goes into LIVE (SPEC §3); execute with ``root=config.live`` after ``plan_root``."""
    kernel_fs = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
    ops = _dev_plan()
    ops.append(Mount(_p("/proc"), "proc", "proc", flags=kernel_fs))
    ops.append(Mount(_p("/sys"), "sysfs", "sysfs", flags=kernel_fs))
    if config.ram_size is not None:
        ops.append(Tmpfs(_p("/run"), 0o755, config.ram_size))
        ops.append(MakeDir(_p("/run/lock"), 0o1777))
    ops.append(Bind(Path("/etc/adjtime"), _p("/etc/adjtime"), optional=True))
    if journal_socket is not None and journal_socket.exists():
        # A symlink, not a bind onto /dev/log: a syslog daemon started inside can replace it.
        ops.append(Bind(journal_socket, _INSIDE_DEV_LOG, create=True))
        ops.append(Symlink(_p("/dev/log"), str(_INSIDE_DEV_LOG)))
    for share in config.shares:
        if _is_lower(share.source, config.lower):
            continue
        # Not recursive, as 1.6.4's `mount --bind`: mounts below the source stay outside.
        ops.append(Bind(Path(share.source), _p(share.target), create=True))
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
    if os.path.lexists(resolve_in(upper, op.path.parent) / op.path.name):
        return False
    op.execute(upper)
    return True


__all__ = [
    "JOURNAL_DEV_LOG", "Bind", "MakeDir", "MakeNode", "Mount", "Symlink", "Tmpfs",
    "WriteFile", "interfaces_text", "overlay_options", "plan_inside", "plan_root", "resolve_in",
    "write_default_interfaces",
]
