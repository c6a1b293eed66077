"""overlay-reset: remove upper entries of a stopped subhost so that the lower version shows.

    overlay-reset NAME|CONF [--dry-run] [--backup FILE | --no-backup] PATH...
    overlay-reset NAME|CONF [--dry-run] [--backup FILE | --no-backup] --shadowed

Removes, for each PATH (inside the subhost), UPPER's entry there with everything below it (a
copied-up file, a whiteout, an opaque or a merged directory), or every entry overlay-diff
reports as shadowed. Only for a stopped subhost: its lock is held while the layers change, so
it cannot start meanwhile. First a tarball of what goes (xattrs, whiteouts, owners and modes
kept) that ``tar --xattrs --xattrs-include='*' -xpf FILE -C UPPER`` restores. UPPER is the
subhost's and untrusted: everything is opened by descriptor with O_NOFOLLOW and removed with
unlinkat/rmdir relative to its directory, so no symlink planted in UPPER leads outside it.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tarfile
import time
from dataclasses import dataclass

from ..errors import SubhostError, printable
from .common import UsageError, require_root, run_main
from .diff import Parser, locate, subhost_paths

BACKUP_DIR = os.environ.get("OVERLAY_BOOT_BACKUP_DIR", "/var/backups/overlay-boot")


@dataclass(frozen=True)
class Target:
    rel: str  # relative to UPPER, no leading slash
    entries: int  # upper entries it holds (itself included)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="overlay-reset",
        description="Remove a stopped subhost's upper entries at the given paths (or every "
                    "shadowed one) so that the lower version shows again.",
        epilog="A backup tarball of what is removed is written first unless --no-backup; "
               "restore it with tar --xattrs --xattrs-include='*' -xpf FILE -C UPPER.")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.add_argument("--backup", metavar="FILE",
                        help=f"write the backup here (default: {BACKUP_DIR}/NAME-TIME.tar)")
    parser.add_argument("--no-backup", action="store_true", help="write no backup")
    parser.add_argument("--shadowed", action="store_true",
                        help="reset every entry that shadows a newer lower version")
    parser.add_argument("target", metavar="NAME|CONF")
    parser.add_argument("paths", metavar="PATH", nargs="*")
    args = parser.parse_intermixed_args(argv)
    if bool(args.paths) == args.shadowed:
        parser.error("give either PATH arguments or --shadowed")
    if args.backup and args.no_backup:
        parser.error("--backup and --no-backup exclude each other")
    return run_main(lambda: _main(args), "overlay-reset")


def _main(args: argparse.Namespace) -> int:
    from .. import drift, state

    require_root()
    paths = subhost_paths(args.paths)
    if any(drift.normalize(p) == "" for p in paths):
        raise UsageError("resetting / would empty UPPER: give the paths below it")
    name, config, _ = locate(args.target, "overlay-reset")
    layers = drift.layers_of(config)
    lock_existed = state.lock_path(name).exists()
    try:
        lock = state.acquire(name)
    except state.AlreadyRunning:
        raise SubhostError(f"subhost {name} is running: stop it first (the layers of a "
                           "mounted overlay must not change)") from None
    try:
        upper_fd = os.open(layers.upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _reset(args, name, layers, upper_fd)
        finally:
            os.close(upper_fd)
    finally:
        if not lock_existed:
            try:
                os.unlink(state.lock_path(name))
            except OSError:
                pass
        os.close(lock)


def _reset(args: argparse.Namespace, name: str, layers, upper_fd: int) -> int:
    from .. import drift

    if args.shadowed:
        rels = [drift.normalize(e.path) for e in drift.walk(layers, shadowed_only=True)]
    else:
        rels = [drift.normalize(p) for p in args.paths]
    rels = outermost(rels)
    targets = [Target(rel, count_entries(upper_fd, rel)) for rel in rels]
    missing = [t.rel for t in targets if t.entries == 0]
    if missing and not args.shadowed:
        raise SubhostError("nothing in UPPER at " + ", ".join(
            printable("/" + rel) for rel in missing) + f" (subhost {name}): nothing to reset")
    targets = [t for t in targets if t.entries]
    if not targets:
        print(f"subhost {name}: nothing to reset")
        return 0
    for t in targets:
        opaque = opaque_ancestor(upper_fd, t.rel)
        if opaque is not None:
            sys.stderr.write(f"overlay-reset: warning: /{printable(t.rel)} is under the opaque "
                             f"directory /{printable(opaque)}: the lower version shows only "
                             "once that is reset too\n")
    if args.dry_run:
        for t in targets:
            print(f"would remove /{printable(t.rel)} ({t.entries} upper entries)")
        return 0
    backup = None
    if not args.no_backup:
        backup = args.backup or default_backup(name)
        try:
            write_backup(upper_fd, [t.rel for t in targets], backup)
        except OSError as exc:
            raise SubhostError(f"cannot write the backup {backup}: {exc}; nothing was "
                               "removed") from None
        print(f"backup: {backup} (restore: tar --xattrs --xattrs-include='*' -xpf {backup} "
              f"-C {layers.upper})")
    for t in targets:
        try:
            remove(upper_fd, t.rel)
        except OSError as exc:
            kept = f"; the backup {backup} has it all" if backup else ""
            raise SubhostError(f"cannot remove /{printable(t.rel)} from UPPER: {exc}{kept}"
                               ) from None
        print(f"removed /{printable(t.rel)} ({t.entries} upper entries)")
    return 0


def outermost(rels: list[str]) -> list[str]:
    """RELS without those below another one, sorted."""
    kept: list[str] = []
    for rel in sorted(set(rels)):
        if not any(rel.startswith(k + "/") for k in kept):
            kept.append(rel)
    return kept


def _split(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent, name


def _open_dir(upper_fd: int, rel: str) -> int:
    from ..drift import DIR_FLAGS, open_in_upper

    return open_in_upper(upper_fd, rel, DIR_FLAGS) if rel else os.dup(upper_fd)


def count_entries(upper_fd: int, rel: str) -> int:
    """Upper entries at REL and below it (0 when UPPER has nothing there)."""
    parent, name = _split(rel)
    try:
        parent_fd = _open_dir(upper_fd, parent)
    except OSError:
        return 0
    try:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            return 0
        if not stat.S_ISDIR(st.st_mode):
            return 1
        return sum(1 for _ in _entries(parent_fd, name, name))
    finally:
        os.close(parent_fd)


def opaque_ancestor(upper_fd: int, rel: str) -> str | None:
    from ..drift import DIR_FLAGS, is_opaque_fd

    parts = rel.split("/")[:-1]
    fd = os.dup(upper_fd)
    try:
        for i, part in enumerate(parts):
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = child
            if is_opaque_fd(fd):
                return "/".join(parts[: i + 1])
        return None
    finally:
        os.close(fd)


def _entries(parent_fd: int, name: str, rel: str):
    """(directory fd, name, rel, lstat) of NAME in PARENT_FD and everything below it, parents
    first; directories are opened with O_NOFOLLOW and walked by descriptor."""
    from ..drift import DIR_FLAGS

    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    yield parent_fd, name, rel, st
    if not stat.S_ISDIR(st.st_mode):
        return
    stack = [(os.open(name, DIR_FLAGS, dir_fd=parent_fd), rel, None)]
    try:
        while stack:
            fd, dir_rel, names = stack[-1]
            if names is None:
                with os.scandir(fd) as it:
                    names = sorted((e.name for e in it), reverse=True)
                stack[-1] = (fd, dir_rel, names)
            if not names:
                os.close(fd)
                stack.pop()
                continue
            child = names.pop()
            child_rel = f"{dir_rel}/{child}"
            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
            yield fd, child, child_rel, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((os.open(child, DIR_FLAGS, dir_fd=fd), child_rel, None))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def default_backup(name: str) -> str:
    os.makedirs(BACKUP_DIR, mode=0o700, exist_ok=True)
    return os.path.join(BACKUP_DIR, f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.tar")


def write_backup(upper_fd: int, rels: list[str], path: str) -> None:
    """A PAX tarball of RELS (paths relative to UPPER) and everything below them."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as exc:
        raise SubhostError(f"cannot write the backup {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w",
                                                    format=tarfile.PAX_FORMAT) as tar:
            for rel in rels:
                parent, name = _split(rel)
                parent_fd = _open_dir(upper_fd, parent)
                try:
                    for dir_fd, entry, entry_rel, st in _entries(parent_fd, name, rel):
                        _add(tar, dir_fd, entry, entry_rel, st)
                finally:
                    os.close(parent_fd)
    except BaseException:
        os.unlink(path)
        raise


_TAR_TYPES = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE,
              stat.S_IFLNK: tarfile.SYMTYPE, stat.S_IFCHR: tarfile.CHRTYPE,
              stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}


def _add(tar: tarfile.TarFile, dir_fd: int, name: str, rel: str, st: os.stat_result) -> None:
    kind = _TAR_TYPES.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        sys.stderr.write(f"overlay-reset: warning: /{printable(rel)}: a socket cannot be kept "
                         "in the backup\n")
        return
    info = tarfile.TarInfo(rel)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""  # numeric owners: the subhost's, not the host's names
    info.mtime = st.st_mtime
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if kind == tarfile.SYMTYPE:
        info.linkname = os.readlink(name, dir_fd=dir_fd)
    info.pax_headers = {f"SCHILY.xattr.{attr}": value.decode("utf-8", "surrogateescape")
                        for attr, value in _xattrs(dir_fd, name)}
    if kind != tarfile.REGTYPE:
        tar.addfile(info)
        return
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        info.size = os.fstat(fd).st_size
        tar.addfile(info, f)


def _xattrs(dir_fd: int, name: str) -> list[tuple[str, bytes]]:
    where = f"/proc/self/fd/{dir_fd}/{name}"
    try:
        names = os.listxattr(where, follow_symlinks=False)
    except OSError:
        return []
    found = []
    for attr in sorted(names):
        try:
            found.append((attr, os.getxattr(where, attr, follow_symlinks=False)))
        except OSError:
            pass
    return found


def remove(upper_fd: int, rel: str) -> None:
    """Remove REL and everything below it, by descriptor (children before their directory)."""
    from ..drift import DIR_FLAGS

    parent, name = _split(rel)
    parent_fd = _open_dir(upper_fd, parent)
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return
        # frames: (fd, name in parent, parent fd, subdirectories left)
        stack = [_clear(os.open(name, DIR_FLAGS, dir_fd=parent_fd), name, parent_fd)]
        try:
            while stack:
                fd, dir_name, dir_parent, subdirs = stack[-1]
                if subdirs:
                    child = subdirs.pop()
                    stack.append(_clear(os.open(child, DIR_FLAGS, dir_fd=fd), child, fd))
                    continue
                stack.pop()
                os.close(fd)
                os.rmdir(dir_name, dir_fd=dir_parent)
        finally:
            for fd, _, _, _ in stack:
                os.close(fd)
    finally:
        os.close(parent_fd)


def _clear(fd: int, name: str, parent_fd: int) -> tuple[int, str, int, list[str]]:
    """Unlink the non-directories in FD; the frame with its subdirectories still to do."""
    subdirs = []
    try:
        with os.scandir(fd) as it:
            children = [e.name for e in it]
        for child in children:
            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(child)
            else:
                os.unlink(child, dir_fd=fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, name, parent_fd, subdirs


if __name__ == "__main__":
    sys.exit(main())
