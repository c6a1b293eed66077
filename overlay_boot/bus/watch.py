"""Wake-ups for the D-Bus service when the runtime records may have changed (inotify).

One inotify watch on the runtime directory (``/run/overlay-boot``): a record written (the
rename of ``state.write``) or removed, a lock file closed by a supervisor that ended, crashed
or not. The watch only says *that* something changed there; the service then re-reads the
records itself, so an event lost to a full queue (``IN_Q_OVERFLOW``) costs nothing but a
rescan. Our own reads (``O_RDONLY``) raise no event of the mask, so watching is no loop.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000

MASK = (IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF
        | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
GONE = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF  # the directory itself went away
WATCHED_SUFFIXES = (".json", ".lock")  # records and locks; not NAME.tmp, NAME.ctl
HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
READ_SIZE = 64 * 1024

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int


class DirectoryWatch:
    """An inotify descriptor watching DIRECTORY for changes of records and locks."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.watching = False

    def fileno(self) -> int:
        return self.fd

    def watch(self) -> bool:
        """(Re)add the watch; False while the directory does not exist."""
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(self.directory), MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOENT, errno.ENOTDIR):
                self.watching = False
                return False
            raise OSError(code, f"inotify_add_watch {self.directory}: {os.strerror(code)}")
        self.watching = True
        return True

    def changed(self) -> bool:
        """Drain the queued events: True if a record or a lock may have changed, or if the
        watch was lost (the directory removed: ``watching`` is then False)."""
        relevant = False
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return relevant
            for mask, name in events(data):
                if mask & GONE:
                    self.watching = False
                    relevant = True
                elif mask & IN_Q_OVERFLOW or name.endswith(WATCHED_SUFFIXES):
                    relevant = True

    def close(self) -> None:
        os.close(self.fd)


def events(data: bytes) -> list[tuple[int, str]]:
    """(mask, file name) of each event in DATA as read from an inotify descriptor."""
    found = []
    offset = 0
    while offset + HEADER.size <= len(data):
        _wd, mask, _cookie, length = HEADER.unpack_from(data, offset)
        offset += HEADER.size
        raw = data[offset:offset + length].split(b"\0", 1)[0]
        offset += length
        found.append((mask, os.fsdecode(raw)))
    return found
