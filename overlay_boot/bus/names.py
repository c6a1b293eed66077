"""Names of the D-Bus control plane: bus name, object paths, interfaces (standard library only).

Object paths of subhosts escape NAME like sd-bus does (`sd_bus_path_encode`): letters and
digits stay, every other byte becomes ``_`` and two lower-case hex digits, so ``web-1`` is
``/org/overlayboot/OverlayBoot1/subhost/web_2d1``.
"""

from __future__ import annotations

import string

BUS_NAME = "org.overlayboot.OverlayBoot1"
MANAGER_PATH = "/org/overlayboot/OverlayBoot1"
MANAGER_IFACE = "org.overlayboot.OverlayBoot1.Manager"
SUBHOST_IFACE = "org.overlayboot.OverlayBoot1.Subhost"
SUBHOST_PREFIX = MANAGER_PATH + "/subhost"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"

ERROR_PREFIX = "org.overlayboot.OverlayBoot1.Error."
ERROR_NO_SUCH_SUBHOST = ERROR_PREFIX + "NoSuchSubhost"
ERROR_FAILED = ERROR_PREFIX + "Failed"
ERROR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

_PLAIN = frozenset(string.ascii_letters + string.digits)


def escape_label(text: str) -> str:
    """One path element for any text (sd-bus's bus_label_escape); "" becomes "_"."""
    if not text:
        return "_"
    out = []
    for i, byte in enumerate(text.encode()):
        char = chr(byte)
        if char in _PLAIN and not (i == 0 and char.isdigit()):
            out.append(char)
        else:
            out.append(f"_{byte:02x}")
    return "".join(out)


def unescape_label(label: str) -> str:
    """The inverse of `escape_label`."""
    if label == "_":
        return ""
    data = bytearray()
    i = 0
    while i < len(label):
        if label[i] == "_" and _is_hex(label[i + 1:i + 3]):
            data.append(int(label[i + 1:i + 3], 16))
            i += 3
        else:
            data.append(ord(label[i]))
            i += 1
    return data.decode("utf-8", "replace")


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in string.hexdigits for c in text)


def subhost_path(name: str) -> str:
    """The object path of subhost NAME."""
    return f"{SUBHOST_PREFIX}/{escape_label(name)}"


def name_from_path(path: str) -> str | None:
    """NAME from a subhost's object path; None for any other path."""
    prefix = SUBHOST_PREFIX + "/"
    if not path.startswith(prefix) or "/" in path[len(prefix):] or path == prefix:
        return None
    return unescape_label(path[len(prefix):])


def subhost_end(name: str, host_end: str) -> str:
    """The subhost's end of a cable from its host end: NAME<i> is eth<i>, NAME<i>.<tag> is
    eth<i>.<tag> (naming.host_if / host_vlan_if)."""
    rest = host_end[len(name):] if host_end.startswith(name) else ""
    index, dot, tag = rest.partition(".")
    if not index.isdigit():
        return ""
    return f"eth{index}{dot}{tag}"
