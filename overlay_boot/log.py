"""Logging for every overlay-boot process: one line per message on stderr.

Under systemd (``JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog priority prefix,
which journald turns into the entry's priority. A ``LOG=`` file gets the same lines, plain.
Deliberately not the ``logging`` package: PID 1 and the supervisor live for the whole life of a
subhost and should hold as little as possible.
"""

from __future__ import annotations

import os
import sys
import time

EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)

_extra_fd: int | None = None
_tag = "overlay-boot"
_debug = bool(os.environ.get("OVERLAY_BOOT_DEBUG")) or (
    os.environ.get("SYSTEMD_LOG_LEVEL") == "debug"
)


def _journal_prefix_wanted() -> bool:
    return "JOURNAL_STREAM" in os.environ


_prefix = _journal_prefix_wanted()


def configure(tag: str | None = None, extra_fd: int | None = None) -> None:
    """Set the tag shown on a terminal and an extra file descriptor (LOG=) to copy lines to."""
    global _tag, _extra_fd, _prefix
    if tag is not None:
        _tag = tag
    _extra_fd = extra_fd
    _prefix = _journal_prefix_wanted()


def extra_fd() -> int | None:
    """The LOG= file's descriptor, when one is configured."""
    return _extra_fd


def debug_enabled() -> bool:
    return _debug


def write(priority: int, message: str, source: str | None = None) -> None:
    """Write one message (possibly several lines) at a syslog priority."""
    if priority == DEBUG and not _debug:
        return
    label = f"{source}: " if source else ""
    out = []
    extra = []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S ") if _extra_fd is not None else ""
    for line in message.splitlines() or [""]:
        out.append(f"<{priority}>{label}{line}\n" if _prefix else f"{_tag}: {label}{line}\n")
        if _extra_fd is not None:
            extra.append(f"{stamp}{_tag}: {label}{line}\n")
    _write_all(2, "".join(out))
    if _extra_fd is not None:
        _write_all(_extra_fd, "".join(extra))


def _write_all(fd: int, text: str) -> None:
    data = text.encode("utf-8", "replace")
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # a closed log must never take a subhost down


def error(message: str, source: str | None = None) -> None:
    write(ERR, message, source)


def warning(message: str, source: str | None = None) -> None:
    write(WARNING, message, source)


def notice(message: str, source: str | None = None) -> None:
    write(NOTICE, message, source)


def info(message: str, source: str | None = None) -> None:
    write(INFO, message, source)


def debug(message: str, source: str | None = None) -> None:
    write(DEBUG, message, source)


def flush() -> None:
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
