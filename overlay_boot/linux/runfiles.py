"""PID 1's part in the runtime files once it is the unit's main process (after the hand-over
under systemd, docs/ARCHITECTURE.md "Processes"): the runtime record's state and START words
kept current, and the record, control socket and lock removed at a clean end.

Everything goes through a descriptor of RUN_DIR opened before ``pivot_root``: the host's
``/run/overlay-boot`` is out of reach by path afterwards. With USERNS= PID 1 is root of a user
namespace that does not own RUN_DIR, so all of this fails (quietly): the unit's
``ExecStopPost=`` removes what is left. The record's format is ``state.py``'s.
"""

from __future__ import annotations

import json
import os

MAX_RECORD = 1 << 20


def _names(name: str) -> tuple[str, str, str, str]:
    """NAME.json, NAME.tmp (as state.write), NAME.ctl, NAME.lock"""
    return f"{name}.json", f"{name}.tmp", f"{name}.ctl", f"{name}.lock"


def update_record(dir_fd: int, name: str, state: str | None = None,
                  word: str | None = None, service: str | None = None) -> bool:
    """Set the record's subhost STATE and/or the state SERVICE of START word WORD; False
    when the record cannot be read or written."""
    record_name, tmp_name, _, _ = _names(name)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(record_name, flags, dir_fd=dir_fd)
        try:
            data = json.loads(os.read(fd, MAX_RECORD))
        finally:
            os.close(fd)
        if not isinstance(data, dict):
            return False
        if state is not None:
            data["state"] = state
        if word is not None:
            services = dict((str(w), str(s)) for w, s in data.get("services", ()))
            services[word] = str(service)
            data["services"] = [list(pair) for pair in services.items()]
        text = (json.dumps(data, indent=1) + "\n").encode()
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            while text:
                text = text[os.write(fd, text):]
        finally:
            os.close(fd)
        os.rename(tmp_name, record_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return True


def remove(dir_fd: int, name: str, lock_fd: int | None) -> None:
    """Remove the record and the control socket, and the lock file if LOCK_FD is (still) the
    lock at its path: a lock file is unlinked only by whoever holds it (state.py)."""
    record_name, tmp_name, control_name, lock_name = _names(name)
    for entry in (record_name, tmp_name, control_name):
        try:
            os.unlink(entry, dir_fd=dir_fd)
        except OSError:
            pass
    if lock_fd is None:
        return
    try:
        held = os.fstat(lock_fd)
        now = os.stat(lock_name, dir_fd=dir_fd, follow_symlinks=False)
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            os.unlink(lock_name, dir_fd=dir_fd)
    except OSError:
        pass
