"""The generator's list of the configs it parsed, for the starts that mask other subhosts.

Parsing every known config at each start (`neighbours`) costs ~0.3 ms per config. The
generator parses them all at boot and at each ``daemon-reload`` anyway, so it leaves what a
start needs of each (NAME, BASE, UPPER, WORK, LIVE, USERNS) in its output directory:
``/run/systemd/generator/overlay-boot-known.list`` (root's tmpfs, emptied by systemd before each
generator run; no unit name, so systemd ignores it), root's, mode 0600.

A start uses the list only when it is root's own regular file in a directory only root can
change, opened without following a symlink, and fresh: the config directories and
/etc/subhosts.conf are the ones this start reads, and they and every listed config file still
have the change times (ctime) the generator saw. Adding, removing, renaming or editing a config
changes one of them; then the start parses the configs itself, as it does without systemd. (A
file changed within 0.1 s before the generator ran makes the list stale from the start: the
kernel's ctime clock is coarse, and a second change in the same tick would not show.)

The format: NUL-terminated fields (paths are bytes, as the kernel's; none holds a NUL): a magic
field, then counted groups: sources (path, ctime), config files (path, ctime), configs (path,
device, inode, NAME, BASE, UPPER, WORK, LIVE, USERNS); an empty field is an unknown value.
Standard library only: the generator imports this (and not json, which costs it ~3 ms).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from overlay_boot import discovery
from overlay_boot.config import Config, IdRange
from overlay_boot.record import Record

GENERATOR_DIR = "/run/systemd/generator"
NAME = "overlay-boot-known.list"
PATH_ENV = "OVERLAY_BOOT_KNOWN_LIST"  # another path, for tests
MAGIC = b"overlay-boot-known-1"
MAX_SIZE = 64 << 20


class Neighbour(Record):
    """What a start needs of another subhost's config. The directories are strings (a
    Path's, normalised): a start reads one of these per known config and only compares
    them, and making Path objects of them cost it ~2.5 ms per 100 configs (issue #13)."""

    name: str
    base: str | None
    upper: str | None
    work: str | None
    live: str | None
    userns: IdRange | None

    @classmethod
    def of(cls, config: Config) -> Neighbour:
        return cls(config.name, *(None if p is None else str(p) for p in (
            config.base, config.upper, config.work, config.live)), config.userns)


Entry = tuple[tuple[int, int], Neighbour, Path]  # (device, inode) of the file, what, where


def path() -> str:
    return os.environ.get(PATH_ENV) or os.path.join(GENERATOR_DIR, NAME)


#: A change time this close to the generator's run may hide a second change in the same clock
#: tick (the kernel stamps ctime with a coarse clock): such a list is never taken as fresh.
RECENT_NS = 100_000_000
TOO_RECENT = b"-"  # never a change time


def _ctime(name: str | bytes, recent: int | None = None) -> bytes:
    try:
        ns = os.stat(name).st_ctime_ns
    except OSError:
        return b""
    return TOO_RECENT if recent is not None and ns >= recent else str(ns).encode()


def _sources() -> list[bytes]:
    """What discovery reads, in its order: the config directories, then subhosts.conf."""
    return [os.fsencode(d) for d in discovery.config_dirs()] + \
        [os.fsencode(discovery.subhosts_conf())]


def _text(value: object) -> str:
    return "" if value is None else str(value)


def render(parsed: Iterable[tuple[Config, Path]],
           statuses: Mapping[str, os.stat_result] | None = None) -> bytes:
    """The list of every config that parsed (duplicates of a NAME included). STATUSES: each
    config file's status as it was read (before it was parsed: a change after that shows as
    another ctime), by its path; a file not in it is stat'ed here."""
    recent = time.time_ns() - RECENT_NS
    too_recent = TOO_RECENT.decode()
    # Each file's and each config's fields as one NUL-terminated text, encoded at once.
    files: list[str] = []
    configs: list[str] = []
    for config, where in parsed:
        name = str(where)
        st = statuses.get(name) if statuses else None
        if st is None:
            try:
                st = os.stat(where)
            except OSError:
                continue
        files.append(f"{name}\0{too_recent if st.st_ctime_ns >= recent else st.st_ctime_ns}\0")
        ids = config.userns
        configs.append("\0".join((
            name, str(st.st_dev), str(st.st_ino), config.name, _text(config.base),
            _text(config.upper), _text(config.work), _text(config.live),
            "" if ids is None else f"{ids.base}:{ids.count}", "")))
    sources = [x for s in _sources() for x in (s, _ctime(s, recent))]
    head = [MAGIC, str(len(sources) // 2).encode(), *sources]
    return b"".join(f + b"\0" for f in head) + os.fsencode(
        f"{len(files)}\0{''.join(files)}{len(configs)}\0{''.join(configs)}")


def write(directory: str, parsed: Iterable[tuple[Config, Path]],
          statuses: Mapping[str, os.stat_result] | None = None) -> None:
    """Write the list into the generator's output DIRECTORY (0600, by a rename)."""
    target = os.path.join(directory, NAME)
    temporary = os.path.join(directory, f".{NAME}.new")
    data = render(parsed, statuses)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                 | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(temporary, target)


def _open(where: str) -> int | None:
    """The list's descriptor if it is root's own regular file, not writable by others, in a
    directory only root can change (the last component not followed), else None."""
    parent, name = os.path.split(where)
    try:
        dfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(dfd)
        if st.st_uid != 0 or st.st_mode & 0o022:
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022 \
            or st.st_size > MAX_SIZE:
        os.close(fd)
        return None
    return fd


def _path(value: bytes) -> str | None:
    return os.fsdecode(value) if value else None


def _groups(fields: Iterator[bytes], width: int) -> list[list[bytes]]:
    count = int(next(fields))
    return [[next(fields) for _ in range(width)] for _ in range(count)]


def read(where: str | None = None) -> list[Entry] | None:
    """The list, or None when it is absent, not root's, malformed or stale."""
    fd = _open(where or path())
    if fd is None:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_SIZE + 1)
        if not data.endswith(b"\0"):
            return None
        fields = iter(data[:-1].split(b"\0"))
        if next(fields) != MAGIC:
            return None
        sources = _groups(fields, 2)
        if [s for s, _ in sources] != _sources():
            return None  # another set of config directories than this start's
        files = _groups(fields, 2)
        if any(_ctime(name) != ctime for name, ctime in sources + files):
            return None
        entries: list[Entry] = []
        for where_, dev, ino, name, *dirs, ids in _groups(fields, 9):
            base, _, count = ids.partition(b":")
            entries.append(((int(dev), int(ino)), Neighbour(
                os.fsdecode(name), *(_path(d) for d in dirs),
                IdRange(int(base), int(count)) if ids else None), Path(os.fsdecode(where_))))
        if next(fields, None) is not None:
            return None
        return entries
    except (OSError, ValueError, StopIteration):
        return None
