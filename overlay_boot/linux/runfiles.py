"""PID 1's part in the runtime files once it is the unit's main process (after the hand-over
under systemd, docs/ARCHITECTURE.md "Processes"): the runtime record's state and START words
kept current, and at a clean end the netns bind ``/run/netns/NAME`` with its mark, the record,
control socket and lock removed.

Everything goes through descriptors of RUN_DIR and of ``/run/netns`` opened before
``pivot_root``: the host's ``/run`` is out of reach by path afterwards. With USERNS= PID 1 is
root of a user namespace that owns neither, so all of this fails (quietly): the unit's
``ExecStopPost=`` (kept for USERNS=) removes what is left. The record's format is
``state.py``'s, the mark's ``netns.py``'s.
"""

from __future__ import annotations

import os

from overlay_boot import jsonlite

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
            data = jsonlite.loads(os.read(fd, MAX_RECORD))
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
        text = jsonlite.record_text(data).encode()
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


def remove_netns(netns_dir_fd: int, run_dir_fd: int, name: str) -> bool:
    """Remove ``/run/netns/NAME`` if it is the netns overlay-boot made for NAME (its
    device:inode is the mark's, ``netns.ours``), and the mark; False if it is left.

    An unlink, not ``umount`` + unlink: PID 1 cannot unmount in the host's mount namespace,
    but a file that is a mount point only in *other* mount namespaces may be unlinked, and
    the kernel then detaches every mount on it, in all of them (as a lazy unmount would).
    PID 1's own namespace, where it would be refused (EBUSY), no longer has the bind: the
    host's tree was detached at ``pivot_root``."""
    mark_name = f"{name}.netns"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(mark_name, flags, dir_fd=run_dir_fd)
        try:
            marked = os.read(fd, 100).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        bound = os.stat(name, dir_fd=netns_dir_fd, follow_symlinks=False)
        if f"{bound.st_dev}:{bound.st_ino}" != marked:
            return False
        os.unlink(name, dir_fd=netns_dir_fd)
        os.unlink(mark_name, dir_fd=run_dir_fd)
    except OSError:
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
