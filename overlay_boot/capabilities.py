"""Which capabilities a subhost's processes keep: the default set and the CAPABILITIES= variable.

Pure data and parsing (the generator and the config reader use it); ``linux/confine.py``
applies the result. Root inside a subhost is root of the host's user namespace, so every
capability it keeps acts on the host's kernel: the default keeps what a whole Debian system
needs to run its services (setuid programs, ports below 1024, ``chown``, ``chroot``, network
configuration of its own namespace) and drops what reaches beyond the subhost. The reasons are
in overlay-boot.conf(5), "CAPABILITIES".
"""

from __future__ import annotations

from overlay_boot.record import Record

#: Capability names by number (linux/capability.h), lower case, without ``cap_``.
NAMES: tuple[str, ...] = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin",
    "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace",
    "sys_pacct", "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
    "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read",
    "perfmon", "bpf", "checkpoint_restore",
)
NUMBERS: dict[str, int] = {name: number for number, name in enumerate(NAMES)}

#: Kept by default (systemd-nspawn's retained set, less what reaches the host's kernel).
DEFAULT_KEPT: frozenset[str] = frozenset((
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_owner", "sys_chroot", "sys_nice", "sys_resource", "sys_tty_config", "lease",
    "audit_write", "setfcap",
))

ALL = "all"


class Grant(Record):
    """What CAPABILITIES= adds to the default: capability names, or everything (``all``)."""

    names: frozenset[str] = frozenset()
    everything: bool = False

    @property
    def kept(self) -> frozenset[str]:
        """Every known capability the subhost keeps."""
        return frozenset(NAMES) if self.everything else DEFAULT_KEPT | self.names

    @property
    def added(self) -> tuple[str, ...]:
        """The granted names beyond the default, sorted (for messages)."""
        return (ALL,) if self.everything else tuple(sorted(self.names - DEFAULT_KEPT))

    @property
    def kernel_interfaces_writable(self) -> bool:
        """``/proc/sys``, ``/sys`` and the masked ``/proc`` files are left as the kernel has them.

        With CAP_SYS_ADMIN the subhost could unmount any read-only bind or mask anyway.
        """
        return self.everything or "sys_admin" in self.names

    def mask(self, last_cap: int) -> int:
        """The kept capabilities as a bit mask up to ``last_cap`` (unknown newer ones: dropped,
        unless everything is granted)."""
        if self.everything:
            return (1 << (last_cap + 1)) - 1
        return sum(1 << NUMBERS[n] for n in self.kept if NUMBERS[n] <= last_cap)


def parse(value: str) -> tuple[Grant, str | None]:
    """``CAPABILITIES=`` text → (grant, problem or None). Names: ``sys_ptrace``,
    ``CAP_SYS_PTRACE``…, separated by blanks or commas; ``all`` alone for every capability."""
    words = [w for w in value.replace(",", " ").split() if w]
    lowered = [w.lower() for w in words]
    if ALL in lowered:
        if len(lowered) > 1:
            return Grant(), "'all' must be the only word"
        return Grant(everything=True), None
    names: set[str] = set()
    unknown: list[str] = []
    for word, low in zip(words, lowered, strict=True):
        name = low[4:] if low.startswith("cap_") else low
        if name in NUMBERS:
            names.add(name)
        else:
            unknown.append(word)
    if unknown:
        return Grant(), (f"unknown capabilit{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(unknown)} (names as in capabilities(7), e.g. sys_ptrace, "
                         "or 'all')")
    return Grant(frozenset(names)), None
