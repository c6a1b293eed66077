"""Paths inside a subhost's tree, resolved by descriptor as if that tree were ``/``.

Everything PID 1 mounts onto, creates or writes in LIVE or UPPER goes through here: the tree's
contents belong to the subhost (its root may have planted any symlink there), so a path is
resolved with ``openat2(RESOLVE_IN_ROOT)`` on a descriptor of the tree's root — an absolute or
``//`` symlink, ``..`` or a magic link can never lead out of it — and the caller acts on the
descriptor it gets (``mount`` onto ``/proc/self/fd/N``, ``*at`` calls on the parent), never on
a path string that could be redirected between the check and the use.

Missing components are created when asked (directories 0755, an empty 0644 file at the end),
also through a dangling symlink, whose target is then created inside the tree.
"""

from __future__ import annotations

import errno
import os
import posixpath

from overlay_boot.linux import libc

_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_MAX_LINKS = 40

DIR = "dir"
FILE = "file"


def open_root(path: str | os.PathLike[str]) -> int:
    """An ``O_PATH`` descriptor of a tree's root directory (a trusted host path)."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def fd_path(fd: int) -> str:
    """The path through which mount(2) and friends reach what ``fd`` refers to."""
    return f"/proc/self/fd/{fd}"


def open_in(root_fd: int, path: str | os.PathLike[str], create: str | None = None,
            _links: int = 0) -> int:
    """An ``O_PATH`` descriptor of ``path`` inside the tree ``root_fd`` (symlinks followed,
    within the tree). ``create``: None (must exist), ``DIR`` or ``FILE`` (made when missing)."""
    rel = _relative(path)
    try:
        return libc.openat2(root_fd, rel, os.O_PATH, _IN_ROOT)
    except FileNotFoundError:
        if create is None:
            raise
    parent, name = _split(rel)
    parent_fd = open_in(root_fd, parent, DIR, _links)
    try:
        link = _readlink(parent_fd, name)
        if link is not None:  # dangling: create what it points to, inside the tree
            if _links >= _MAX_LINKS:
                raise OSError(errno.ELOOP, f"open {rel}: {os.strerror(errno.ELOOP)}")
            if not link.startswith("/"):
                link = posixpath.join(path_inside(root_fd, parent_fd), link)
            return open_in(root_fd, link, create, _links + 1)
        if create == DIR:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=parent_fd))
        return libc.openat2(parent_fd, name, os.O_PATH,
                            libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS)
    finally:
        os.close(parent_fd)


def open_parent_in(root_fd: int, path: str | os.PathLike[str]) -> tuple[int, str]:
    """The directory holding ``path``'s last component (resolved, created when missing) and
    that component's name, *not* followed: for ``*at`` calls that must not follow it."""
    parent, name = _split(_relative(path))
    return open_in(root_fd, parent, DIR), name


def path_inside(root_fd: int, fd: int) -> str:
    """Where ``fd`` (a descriptor below ``root_fd``) is, as an absolute path inside the tree."""
    root = os.readlink(fd_path(root_fd))
    here = os.readlink(fd_path(fd))
    inside = posixpath.relpath(here, root)
    return "/" if inside == "." else "/" + inside


def _relative(path: str | os.PathLike[str]) -> str:
    return os.fspath(path).lstrip("/") or "."


def _split(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rstrip("/").rpartition("/")
    if name in ("", ".", ".."):
        raise OSError(errno.EINVAL, f"open {rel}: no name to create")
    return parent or ".", name


def _readlink(dir_fd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:  # missing, or not a symlink
        return None
