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


def subhost_path(name: str) -> str:
    """The object path of subhost NAME."""
    return f"{SUBHOST_PREFIX}/{escape_label(name)}"
