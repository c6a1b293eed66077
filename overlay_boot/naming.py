"""Names: subhost NAME rules, interface names of the cables, systemd unit names.

Pure functions, standard library only (the generator imports this).
"""

from __future__ import annotations

import re

NAME_MAX = 12
IFNAMSIZ = 16
IFNAME_MAX = IFNAMSIZ - 1  # the kernel's limit for an interface name, without the NUL
UNIT_PREFIX = "overlay-boot@"
UNIT_SUFFIX = ".service"

_NAME_CHARS = re.compile(r"[A-Za-z0-9_-]*")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid subhost NAME, or None when it is."""
    if not name:
        return "name is empty"
    if len(name) > NAME_MAX:
        return f"name {name!r} is longer than {NAME_MAX} characters"
    if not _NAME_CHARS.fullmatch(name):
        return f"name {name!r} may only contain letters, digits, '_' and '-'"
    if name.startswith("-"):
        return f"name {name!r} must not start with '-'"
    return None


def is_valid_name(name: str) -> bool:
    return name_problem(name) is None


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


def ifname_problem(ifname: str) -> str | None:
    """Why the kernel would refuse ``ifname`` (see dev_valid_name()), or None."""
    if not ifname:
        return "interface name is empty"
    if len(ifname) > IFNAME_MAX:
        return f"interface name {ifname!r} is longer than {IFNAME_MAX} characters"
    if ifname in (".", ".."):
        return f"interface name {ifname!r} is not allowed"
    for c in ifname:
        if c in "/:" or c.isspace() or not c.isprintable():
            return f"interface name {ifname!r} contains {c!r}"
    return None


def is_valid_ifname(ifname: str) -> bool:
    return ifname_problem(ifname) is None


def unit_name(name: str) -> str:
    """The systemd unit of subhost ``name``: ``overlay-boot@NAME.service``."""
    return f"{UNIT_PREFIX}{name}{UNIT_SUFFIX}"


def instance_from_unit(unit: str) -> str | None:
    """NAME from ``overlay-boot@NAME.service``; None for any other unit or an unsafe NAME."""
    if not (unit.startswith(UNIT_PREFIX) and unit.endswith(UNIT_SUFFIX)):
        return None
    instance = unit[len(UNIT_PREFIX):-len(UNIT_SUFFIX)]
    return instance if is_safe_instance(instance) else None


def is_safe_instance(name: str) -> bool:
    """True when ``name`` may select ``<config dir>/NAME.conf``.

    Same rules as NAME, so no ``/``, no ``..``, no escapes, nothing hidden: an instance name can
    never reach a file outside the config directories.
    """
    return is_valid_name(name) and "/" not in name and ".." not in name
