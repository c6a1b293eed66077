"""Host paths whose owner decides what root does: the config file (its ``!`` values run as
root), the LOG= file (root appends to it) and SHARE sources (bound into a subhost).

A path is trusted when only root can change what it leads to: every directory walked through
belongs to root and is not writable by group or others (unless sticky, as /tmp), and an entry
of a directory others may write (sticky) belongs to root, since its owner could replace it.
Paths are walked from ``/`` one component at a time by descriptor, following symlinks by hand,
so what is checked is what is opened: nothing can be swapped in between. Standard library only.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from pathlib import Path

from overlay_boot.config import Config, load_config, read_config_fd
from overlay_boot.errors import ConfigError, Problem

MAX_LINKS = 40  # the kernel's limit of symlinks in one lookup
CONFIG_WHY = "'!' values run as root"
LOG_WHY = "root appends to LOG"
SHARE_WHY = "whoever can change it can bind any host directory into the subhost"

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class Walked:
    """Where a walk ended: the last component NAME in directory PARENT (an O_PATH fd).

    ``fd`` is an O_PATH descriptor of the entry itself (-1 when it was not opened: the walk
    stopped at the last component or before a missing one), ``missing`` the first component
    that does not exist (when missing ones are allowed), ``problems`` what makes the path
    untrustworthy, ``real`` its resolved path.
    """

    __slots__ = ("parent", "name", "real", "fd", "missing", "problems")

    def __init__(self, parent: int, name: str, real: str, fd: int = -1,
                 missing: str | None = None, problems: list[str] | None = None) -> None:
        self.parent = parent
        self.name = name
        self.real = real
        self.fd = fd
        self.missing = missing
        self.problems = [] if problems is None else problems

    def close(self) -> None:
        for fd in (self.fd, self.parent):
            if fd >= 0:
                os.close(fd)
        self.fd = self.parent = -1


def _who(mode: int) -> str:
    return " and ".join(w for bit, w in ((0o020, "group"), (0o002, "others")) if mode & bit)


def _others_may_write(st: os.stat_result) -> bool:
    return bool(stat.S_IMODE(st.st_mode) & 0o022)


def owner_problem(what: str, shown: str, st: os.stat_result, why: str) -> str | None:
    if st.st_uid == 0:
        return None
    return f"{what} {shown} is owned by uid {st.st_uid}, not root; {why}, so it must belong to root"


def writable_problem(what: str, shown: str, st: os.stat_result, why: str,
                     sticky_ok: bool) -> str | None:
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o022 or (sticky_ok and mode & stat.S_ISVTX):
        return None
    return (f"{what} {shown} is writable by {_who(mode)} (mode {mode:04o}); "
            f"{why}, so only root may write it")


class _Walk:
    """One walk of an absolute path (see `walk`)."""

    def __init__(self, why: str, create: bool, allow_missing: bool):
        self.why = why
        self.create = create
        self.allow_missing = allow_missing
        self.problems: list[str] = []
        self.stack: list[tuple[int, str, os.stat_result]] = []  # fd, real path, stat

    def problem(self, message: str | None) -> None:
        if message and message not in self.problems:  # a directory may be passed twice
            self.problems.append(message)

    def push(self, fd: int, real: str, st: os.stat_result) -> None:
        self.problem(owner_problem("directory", real, st, self.why))
        self.problem(writable_problem("directory", real, st, self.why, sticky_ok=True))
        self.stack.append((fd, real, st))

    def to_root(self) -> None:
        while len(self.stack) > 1:
            os.close(self.stack.pop()[0])

    def shown(self, name: str) -> str:
        return os.path.join(self.stack[-1][1], name)

    def entry(self, name: str, is_last: bool) -> int:
        """O_PATH fd of NAME in the current directory (a missing directory made if asked)."""
        parent = self.stack[-1][0]
        try:
            return os.open(name, _PATH_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not self.create or is_last or self.problems:  # never in an untrusted place
                raise
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            pass
        return os.open(name, _PATH_FLAGS, dir_fd=parent)

    def check_entry(self, name: str, st: os.stat_result) -> None:
        """In a directory others may write (sticky), an entry's owner could replace it."""
        parent_st = self.stack[-1][2]
        if _others_may_write(parent_st) and st.st_uid != 0:
            self.problem(
                f"{self.shown(name)} is owned by uid {st.st_uid} in directory "
                f"{self.stack[-1][1]}, which others may write (mode "
                f"{stat.S_IMODE(parent_st.st_mode):04o}); {self.why}, so it must belong to root"
            )

    def follow(self, name: str, fd: int) -> str:
        """The target of symlink NAME (open at FD, closed here); an absolute one restarts
        the walk at ``/``."""
        try:
            target = os.readlink(name, dir_fd=self.stack[-1][0])
        finally:
            os.close(fd)
        if target.startswith("/"):
            self.to_root()
        return target

    def run(self, path: str, last: bool) -> Walked:
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.push(root, "/", os.fstat(root))
        todo = deque(path.split("/"))
        links = 0
        try:
            while True:
                while todo and todo[0] in ("", "."):
                    todo.popleft()
                if not todo:
                    raise IsADirectoryError(errno.EISDIR, "is a directory", path)
                name = todo.popleft()
                if name == "..":
                    if len(self.stack) > 1:
                        os.close(self.stack.pop()[0])
                    continue
                is_last = all(c in ("", ".") for c in todo)
                if is_last and not last:
                    return self.result(name)
                try:
                    fd = self.entry(name, is_last)
                except FileNotFoundError:
                    if not (self.allow_missing or self.create and self.problems):
                        raise FileNotFoundError(errno.ENOENT, "does not exist",
                                                self.shown(name)) from None
                    return self.result(name, missing=self.shown(name))
                st = os.fstat(fd)
                self.check_entry(name, st)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        os.close(fd)
                        raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                    todo.extendleft(reversed(self.follow(name, fd).split("/")))
                    continue
                if is_last:
                    return self.result(name, fd=fd)
                if not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise NotADirectoryError(errno.ENOTDIR, "is not a directory",
                                             self.shown(name))
                self.push(fd, self.shown(name), st)
        except BaseException:
            self.close_all()
            raise

    def result(self, name: str, fd: int = -1, missing: str | None = None) -> Walked:
        parent = self.stack.pop()
        self.close_all()
        return Walked(parent[0], name, os.path.join(parent[1], name), fd, missing,
                      self.problems)

    def close_all(self) -> None:
        while self.stack:
            os.close(self.stack.pop()[0])


def walk(path: str | Path, why: str, *, last: bool = True, create: bool = False,
         allow_missing: bool = False) -> Walked:
    """Walk PATH (relative to the working directory) from ``/`` by descriptor.

    Every directory passed through is checked (`Walked.problems`, each ending with WHY).
    With ``last`` the last component is resolved too (followed when a symlink) and opened
    O_PATH; without, the walk stops in its directory. ``create`` makes missing directories
    (0755) unless a problem was found on the way (the walk then stops there, as with
    ``allow_missing``, which stops at the first missing component instead of raising).
    Raises OSError (with the path reached in ``filename``) when the path is unusable.
    """
    text = os.fspath(path)
    if not text.startswith("/"):
        text = os.getcwd() + "/" + text
    return _Walk(why, create, allow_missing).run(text, last)


def _os_problem(e: OSError, given: str) -> str:
    where = e.filename if isinstance(e.filename, str) else given
    return f"{where} {e.strerror or e}" if where != given else f"cannot read: {e.strerror or e}"


# ---------------------------------------------------------------------------------------------
# the config file


def open_config(path: Path) -> tuple[int, str]:
    """A read-only fd of the config file at PATH and its real path, once every check passed:
    each directory walked through (including those of symlinks to it) and the file itself
    belong to root and only root may write them. Raises `ConfigError` with every problem."""
    where = str(path)
    try:
        walked = walk(path, CONFIG_WHY)
    except OSError as e:
        raise ConfigError(Problem(where, _os_problem(e, where))) from None
    try:
        st = os.fstat(walked.fd)
        problems = list(walked.problems)
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{walked.real} is not a regular file")
        for why in (owner_problem("config file", walked.real, st, CONFIG_WHY),
                    writable_problem("config file", walked.real, st, CONFIG_WHY,
                                     sticky_ok=False)):
            if why:
                problems.append(why)
        if problems:
            raise ConfigError([Problem(where, m) for m in problems])
        fd = _reopen(walked, os.O_RDONLY | os.O_NONBLOCK, st, where)
    finally:
        walked.close()
    return fd, walked.real


def _reopen(walked: Walked, flags: int, st: os.stat_result, where: str) -> int:
    """Open the checked entry for real (never through a symlink) and make sure it is the one
    that was checked."""
    try:
        fd = os.open(walked.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=walked.parent)
    except OSError as e:
        raise ConfigError(Problem(where, f"cannot open: {e.strerror or e}")) from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise ConfigError(Problem(where, "changed while it was being checked"))
    return fd


def config_file_problems(path: Path) -> list[Problem]:
    """What keeps the config file at PATH from being trusted (see `open_config`)."""
    try:
        fd, _ = open_config(path)
    except ConfigError as e:
        return e.problems
    os.close(fd)
    return []


def load_trusted(path: Path, *, command_timeout: float = 30.0) -> Config:
    """Check the config file (`open_config`), parse what was read from that very descriptor,
    and only then run its ``!`` values."""
    fd, real = open_config(path)
    try:
        text = read_config_fd(fd, str(path))
    finally:
        os.close(fd)
    from overlay_boot.proc import run_command

    return load_config(path, run=run_command, command_timeout=command_timeout, text=text,
                       real_path=real)


# ---------------------------------------------------------------------------------------------
# LOG= and SHARE sources


def log_path_problems(path: Path) -> list[str]:
    """Why root must not append to PATH: an untrusted directory on the way, a symlink (never
    followed) or something else than a regular file. Missing directories are fine (created)."""
    try:
        walked = walk(path, LOG_WHY, last=False, allow_missing=True)
    except OSError as e:
        where = e.filename if isinstance(e.filename, str) else str(path)
        return [f"cannot be created: {where} {e.strerror or e}"]
    try:
        problems = list(walked.problems)
        if walked.missing is None:
            try:
                st = os.stat(walked.name, dir_fd=walked.parent, follow_symlinks=False)
            except FileNotFoundError:
                return problems
            if stat.S_ISLNK(st.st_mode):
                problems.append("is a symlink, which LOG is never opened through")
            elif stat.S_ISDIR(st.st_mode):
                problems.append("is a directory")
            elif not stat.S_ISREG(st.st_mode):
                problems.append("is not a regular file")
        return problems
    finally:
        walked.close()


def open_log_file(path: Path) -> int:
    """Open LOG= for appending (created 0640, its directories 0755), never through a symlink
    and only below directories that only root may change. Raises `ConfigError` (no variable
    line is known here) with the reason."""
    where = str(path)
    try:
        walked = walk(path, LOG_WHY, last=False, create=True)
    except OSError as e:
        raise ConfigError(Problem(where, f"LOG cannot be opened: {_os_problem(e, where)}",
                                  "LOG")) from None
    try:
        if walked.problems:
            raise ConfigError([Problem(where, m, "LOG") for m in walked.problems])
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(walked.name, flags | os.O_CLOEXEC, 0o640, dir_fd=walked.parent)
        except OSError as e:
            why = ("is a symlink, which LOG is never opened through" if e.errno == errno.ELOOP
                   else f"cannot be opened: {e.strerror or e}")
            raise ConfigError(Problem(where, f"LOG {why}", "LOG")) from None
    finally:
        walked.close()
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(Problem(where, "LOG is not a regular file", "LOG"))
    os.set_blocking(fd, True)
    return fd


def source_problems(path: Path) -> tuple[bool, list[str]]:
    """Whether the SHARE source PATH exists, and what lets someone else than root swap it."""
    try:
        walked = walk(path, SHARE_WHY)
    except FileNotFoundError:
        return False, []
    except OSError as e:
        where = e.filename if isinstance(e.filename, str) else str(path)
        return True, [f"{where} {e.strerror or e}"]
    walked.close()
    return True, walked.problems
