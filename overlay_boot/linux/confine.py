"""Confine PID 1 of a subhost, and so every process it ever starts, once its tree is built.

Called by PID 1 right after ``pivot_root`` (``linux/boot.py``), before any process of the
subhost exists. In this order, because each step needs what the next one takes away:

1. not dumpable: ``/proc/1/fd``, ``/proc/1/mem``… are out of reach of the subhost's root;
2. a seccomp filter (installed while CAP_SYS_ADMIN is still held, so without
   ``no_new_privs``: setuid programs such as ``su`` and ``passwd`` keep working) refusing the
   kernel keyring calls — the keyring of uid 0 is the host root's, and no capability guards it;
3. the capability bounding set cut down to the kept set (``overlay_boot/capabilities.py``),
   ambient and inheritable capabilities cleared, PID 1's own sets reduced to the kept set.
   Capabilities of kernels newer than this table are dropped too.
"""

from __future__ import annotations

import errno
import struct

from overlay_boot import log
from overlay_boot.linux import libc

TYPE_CHECKING = False
if TYPE_CHECKING:  # capabilities.py is a dataclass: not in PID 1's memory
    from overlay_boot.capabilities import Grant

# struct seccomp_data: nr at offset 0, arch at offset 4.
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_AND_K = 0x54
_BPF_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_X32_SYSCALL_BIT = 0x40000000

#: (AUDIT_ARCH_*, add_key, request_key, keyctl) for the ABIs a process here may use.
_AUDIT_ARCH_X86_64 = 0xC000003E
_KEYRING_CALLS = (
    (_AUDIT_ARCH_X86_64, 248, 249, 250),  # x86_64 (and x32, with the x32 bit masked off)
    (0x40000003, 286, 287, 288),  # i386 (32-bit programs on x86_64)
    (0xC00000B7, 217, 218, 219),  # aarch64
    (0x40000028, 309, 310, 311),  # arm (32-bit programs on aarch64)
)
#: ENOSYS, as a kernel built without keys would answer: programs fall back gracefully.
KEYRING_ERRNO = errno.ENOSYS


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def keyring_filter() -> bytes:
    """The seccomp program: ``add_key``, ``request_key`` and ``keyctl`` fail, all else runs.

    One block per architecture: load the arch, skip the block unless it matches, load the
    call number, compare it with the three calls (equal: jump to the final "deny"), allow.
    """
    program: list[bytes | int] = []  # an int: "compare with this call number, equal: deny"
    for arch, *calls in _KEYRING_CALLS:
        body: list[bytes | int] = [_insn(_BPF_LD_W_ABS, 0)]
        if arch == _AUDIT_ARCH_X86_64:
            body.append(_insn(_BPF_AND_K, ~_X32_SYSCALL_BIT & 0xFFFFFFFF))
        body += calls
        body.append(_insn(_BPF_RET_K, _RET_ALLOW))
        program += [_insn(_BPF_LD_W_ABS, 4), _insn(_BPF_JEQ_K, arch, 0, len(body)), *body]
    program.append(_insn(_BPF_RET_K, _RET_ALLOW))  # an architecture not listed
    program.append(_insn(_BPF_RET_K, _RET_ERRNO | KEYRING_ERRNO))
    deny = len(program) - 1
    return b"".join(
        _insn(_BPF_JEQ_K, insn, deny - index - 1, 0) if isinstance(insn, int) else insn
        for index, insn in enumerate(program)
    )


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        return int(f.read())


class Confinement:
    """What ``confine`` needs of a ``capabilities.Grant``, as plain values PID 1 is given."""

    __slots__ = ("added", "everything", "mask")

    def __init__(self, added: tuple[str, ...], everything: bool, mask: int) -> None:
        self.added = tuple(added)
        self.everything = everything
        self.mask = mask  # kept capabilities, up to this kernel's last_cap()

    @classmethod
    def of(cls, grant: Grant) -> Confinement:
        return cls(grant.added, grant.everything, grant.mask(last_cap()))

    def as_json(self) -> dict:
        return {"added": list(self.added), "everything": self.everything, "mask": self.mask}


def confine(grant: Grant | Confinement, name: str) -> None:
    """Apply the confinement to the calling process (PID 1, after ``pivot_root``)."""
    rules = grant if isinstance(grant, Confinement) else Confinement.of(grant)
    if rules.added:
        what = ("every capability: unconfined, as in 1.6.4" if rules.everything
                else "capabilities beyond the default confinement")
        log.warning(f"subhost {name}: CAPABILITIES={' '.join(rules.added)} grants {what}")
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    if not rules.everything:
        libc.seccomp_filter(keyring_filter())
    top = last_cap()
    kept = rules.mask & libc.capget()[1]  # what we have (a host may have less)
    for number in range(top + 1):
        if not kept >> number & 1:
            libc.prctl(libc.PR_CAPBSET_DROP, number)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    libc.capset(effective=kept, permitted=kept, inheritable=0)
