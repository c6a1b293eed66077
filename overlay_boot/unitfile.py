"""systemd unit-file text: path escaping for unit names, quoting of setting values.

Pure functions, standard library only (the generator imports this). The rules follow
systemd.unit(5) "String Escaping for Inclusion in Unit Names" and the unquoting that
``RequiresMountsFor=`` and ``Environment=`` apply to their values.
"""

from __future__ import annotations

import posixpath
import re

# Characters systemd keeps as they are in an escaped unit name (VALID_CHARS, minus '-' and '\').
_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.")
# Characters a setting value may hold without quotes (no whitespace, quotes, '\' or specifiers).
_PLAIN = re.compile(r"[A-Za-z0-9/._+@:,=~^%-]+")
_CONTROL = r"[\x00-\x1f\x7f]"  # compiled when first needed: plain text never is


def escape_path(path: str) -> str:
    """``systemd-escape --path PATH``: ``/sys/a-b`` → ``sys-a\\x2db``; ``/`` → ``-``.

    Raises ValueError for a path systemd would refuse (relative, or with ``..``).
    """
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError(f"path is not normalised: {path!r}")
    if not parts:
        return "-"
    return escape("/".join(parts), path_mode=True)


def escape(text: str, *, path_mode: bool = False) -> str:
    """``systemd-escape TEXT``: every byte outside ``[A-Za-z0-9:_.]`` becomes ``\\xNN``.

    A leading ``.`` is escaped too; ``/`` becomes ``-``.
    """
    out: list[str] = []
    for i, byte in enumerate(text.encode("utf-8")):
        c = chr(byte)
        if c == "/":
            out.append("-")
        elif c in _KEEP and not (i == 0 and c == "."):
            out.append(c)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def net_device_unit(ifname: str) -> str:
    """The device unit udev creates for a network interface (e.g. a bridge)."""
    return escape_path(posixpath.join("/sys/subsystem/net/devices", ifname)) + ".device"


def unit_value_problem(text: str) -> str | None:
    """Why ``text`` cannot be written into a unit file setting at all, or None."""
    if re.search(_CONTROL, text):
        return f"{text!r} contains a control character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{text!r} is not UTF-8, which a unit file must be"
    return None


def specifiers(text: str) -> str:
    """Escape ``%`` so systemd's specifier expansion gives back ``text``."""
    return text.replace("%", "%%")


def quote(text: str) -> str:
    """A word for settings that unquote their value (``RequiresMountsFor=``, ``Environment=``).

    Plain text stays as it is; anything else is double-quoted with ``\\`` and ``"`` escaped by
    a backslash, which both the plain and the C-unescaping parsers read back the same. ``%`` is
    always doubled. Raises ValueError for control characters.
    """
    if _PLAIN.fullmatch(text):  # printable ASCII only (the usual path): nothing to check
        return specifiers(text)
    why = unit_value_problem(text)
    if why:
        raise ValueError(why)
    text = specifiers(text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
