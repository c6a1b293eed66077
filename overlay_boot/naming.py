"""Names: subhost NAME rules, interface names of the cables, systemd unit names.

Pure functions, standard library only (the generator imports this).
"""

from __future__ import annotations

import re
from pathlib import Path

SYS_CLASS_NET = Path("/sys/class/net")  # where the kernel lists the interfaces of our netns
NAME_MAX = 64  # bytes: NAME is the subhost's hostname (the kernel's HOST_NAME_MAX)
IFNAMSIZ = 16
IFNAME_MAX = IFNAMSIZ - 1  # the kernel's limit for an interface name, without the NUL
UNIT_PREFIX = "overlay-boot@"
UNIT_SUFFIX = ".service"
UNIT_NAME_MAX = 255  # systemd's UNIT_NAME_MAX without the NUL

# Bytes the kernel's isspace() is true for (lib/ctype.c: 0xa0 too): dev_valid_name refuses them.
_KERNEL_SPACE = frozenset(b"\t\n\v\f\r \xa0")
# 1.6.4 could not keep these in a NAME either (its eval and read took them apart).
_SHELL_QUOTING = "'\"\\"


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a usable subhost NAME, or None when it is.

    What 1.6.4 accepted and everything NAME is used for can carry: the hostname, the network
    namespace /run/netns/NAME, the runtime files NAME.json/.lock/.ctl, the escaped systemd
    unit and D-Bus object path. Interface names NAME<i> are checked with the cables
    (`ifname_problem`): a subhost without cables needs none.
    """
    if not name:
        return "name is empty"
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return (f"name {name!r} is not UTF-8 text (the journal, D-Bus and systemd carry it "
                "as text)")
    if len(raw) > NAME_MAX:
        return (f"name {name!r} is longer than {NAME_MAX} bytes (it is the subhost's "
                "hostname)")
    if name in (".", ".."):
        return f"name {name!r} cannot name a network namespace (/run/netns/{name})"
    if name.startswith("-"):
        return f"name {name!r} must not start with '-' (commands would take it for an option)"
    if _UNIT_KEEP.issuperset(raw):
        return None  # the usual NAME (letters, digits, ":_.-"): its unit name is short too
    for c in name:
        if c == "/":
            return f"name {name!r} contains '/', which no file name (/run/netns/NAME) can hold"
        if c.isspace() or not c.isprintable():
            return (f"name {name!r} contains {c!r}: blanks and control characters cannot be "
                    "shown in a log line or passed as one word")
        if c in _SHELL_QUOTING:
            return (f"name {name!r} contains {c!r}: 1.6.4 could not keep quotes or "
                    "backslashes in a NAME either")
        if c in "*?[":
            return (f"name {name!r} contains {c!r}: 1.6.4 expanded its unquoted $NAME as a "
                    "glob")
    unit = unit_name(name)
    if len(unit) > UNIT_NAME_MAX:
        return f"name {name!r} is too long for a systemd unit name once escaped ({unit!r})"
    return None


def is_valid_name(name: str) -> bool:
    return name_problem(name) is None


def name_from_file(file_name: str) -> str:
    """The default NAME of a config file: its file name without ``.conf`` (1.6.4's
    ``basename $CONFIG .conf``); a file named ``.conf`` keeps its name."""
    if file_name.endswith(".conf") and file_name != ".conf":
        return file_name[: -len(".conf")]
    return file_name


def host_if(name: str, i: int) -> str:
    """Host end of cable ``i``."""
    return f"{name}{i}"


def sub_if(i: int) -> str:
    """Subhost end of cable ``i``."""
    return f"eth{i}"


def host_vlan_if(name: str, i: int, tag: int) -> str:
    """Host end of VLAN ``tag`` carried on cable ``i``."""
    return f"{name}{i}.{tag}"


def sub_vlan_if(i: int, tag: int) -> str:
    """Subhost end of VLAN ``tag`` carried on cable ``i``."""
    return f"eth{i}.{tag}"


def subhost_end(name: str, host_end: str) -> str:
    """The subhost's end of a cable from its host end (the inverse of `host_if` and
    `host_vlan_if`): NAME<i> is eth<i>, NAME<i>.<tag> is eth<i>.<tag>; "" for another link."""
    rest = host_end[len(name):] if host_end.startswith(name) else ""
    index, dot, tag = rest.partition(".")
    if not index.isdigit():
        return ""
    return f"eth{index}{dot}{tag}"


def ifname_problem(ifname: str) -> str | None:
    """Why the kernel would refuse ``ifname`` (its dev_valid_name(): at most 15 bytes, not
    "." or "..", no '/', ':' or blank), or None. Control characters are refused too: an
    interface name is shown in logs and passed to commands."""
    if not ifname:
        return "interface name is empty"
    raw = ifname.encode("utf-8", "surrogateescape")
    if len(raw) > IFNAME_MAX:
        return f"interface name {ifname!r} is longer than {IFNAME_MAX} bytes"
    if ifname in (".", ".."):
        return f"interface name {ifname!r} is not allowed"
    if _IFNAME_PLAIN.issuperset(raw):
        return None  # the usual name (letters, digits, "_.-"): no character to look at
    for c in ifname:
        if c in "/:" or c.isspace() or not c.isprintable():
            return f"interface name {ifname!r} contains {c!r}"
    if _KERNEL_SPACE & set(raw):
        return f"interface name {ifname!r} contains a byte the kernel takes for a blank (0xa0)"
    return None


# Bytes kept as they are in a unit's instance name: systemd's valid unit name characters
# except '\\' (the escape character itself). '-' stays too, so NAME web-1 keeps its unit
# overlay-boot@web-1.service (systemd-escape would write web\\x2d1: %i passes both as given).
_UNIT_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.-")
_IFNAME_PLAIN = _UNIT_KEEP - frozenset(b":")  # bytes an interface name may always hold


def escape_instance(name: str) -> str:
    """NAME as a systemd instance name: other bytes (and a leading '.') become ``\\xNN``."""
    if name.isascii() and _UNIT_KEEP.issuperset(name.encode()) and not name.startswith("."):
        return name  # the usual NAME: nothing to escape
    out = []
    for i, byte in enumerate(name.encode("utf-8", "surrogateescape")):
        if byte in _UNIT_KEEP and not (i == 0 and byte == ord(".")):
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def unescape_instance(instance: str) -> str | None:
    """NAME from an instance name as `escape_instance` writes it; None for anything else (a
    different spelling of the same NAME would be a second unit for one subhost)."""
    data = bytearray()
    i = 0
    while i < len(instance):
        if instance.startswith("\\x", i) and _is_hex(instance[i + 2:i + 4]):
            data.append(int(instance[i + 2:i + 4], 16))
            i += 4
        else:
            data += instance[i].encode("utf-8", "surrogateescape")
            i += 1
    try:
        name = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if escape_instance(name) == instance else None


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def unit_name(name: str) -> str:
    """The systemd unit of subhost ``name``: ``overlay-boot@NAME.service``, NAME escaped."""
    return f"{UNIT_PREFIX}{escape_instance(name)}{UNIT_SUFFIX}"


def name_from_argument(text: str) -> str | None:
    """The NAME a command-line argument or a unit's ``%i`` means: NAME itself, or its escaped
    instance form (``web\\x2b1`` for ``web+1``); None when it is neither."""
    if is_valid_name(text):
        return text
    name = unescape_instance(text)
    return name if name is not None and is_valid_name(name) else None


_MACHINE_LABEL = r"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*"  # compiled when first used (machined)
MACHINE_NAME_MAX = 64


def machine_name_ok(name: str) -> bool:
    """Whether systemd-machined takes NAME as a machine name (its hostname rules: labels of
    letters, digits and inner '-', separated by single dots; at most 64 bytes)."""
    return (len(name.encode("utf-8", "surrogateescape")) <= MACHINE_NAME_MAX
            and all(re.fullmatch(_MACHINE_LABEL, label) for label in name.split(".")))
