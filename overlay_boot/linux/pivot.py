"""PID 1 switches into the subhost's root: ``pivot_root`` into LIVE, the host's tree detached,
the subhost's ``/dev/log`` bound, the confinement applied.

The last start steps, run by PID 1 itself once the tree is built (``linux/boot.py``): by the
lean interpreter exec'd for PID 1 (``linux/entry.py``), or in the forked process of the tests.
Nothing here may import a module afterwards: from then on the files are the subhost's.
"""

from __future__ import annotations

import os

from overlay_boot import log
from overlay_boot.linux import confine, journal, libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable


class StepError(Exception):
    """A start step failed; the message names the step and the path."""


def step(what: str, func: Callable[..., object], *args: object) -> None:
    log.debug(what)
    try:
        func(*args)
    except OSError as exc:
        raise StepError(f"{what}: {exc.strerror or exc}") from exc


def enter_root(name: str, live: str, host_journal: socket.socket | None,
               rules: confine.Confinement, *, in_live: bool = False) -> journal.Relay | None:
    """Switch to LIVE (already the working directory when IN_LIVE: USERNS=), confine; returns
    the relay of the subhost's /dev/log to the host's journal (HOST_JOURNAL, connected before)."""
    # pivot_root(".", ".") stacks the old root on top of the new one; the lazy unmount then
    # drops the whole host tree from this mount namespace, so no path from inside (not
    # /proc/1/root either) leads back to the host's root. /proc is mounted in LIVE already
    # (mounts.plan_inside), as anything reading mountinfo afterwards needs it.
    if not in_live:
        step(f"chdir {live}", os.chdir, live)
    step(f"pivot_root {live}", libc.pivot_root, ".", ".")
    step(f"detach the host root from {live}", libc.umount2, ".", libc.MNT_DETACH)
    step("chdir /", os.chdir, "/")
    relay = None
    if host_journal is not None:
        try:
            relay = journal.Relay(journal.bind_inside(), host_journal)
        except OSError as exc:  # e.g. a read-only /run: the subhost runs, without /dev/log
            log.warning(f"subhost {name}: no /dev/log: {journal.INSIDE_PATH}: {exc.strerror}")
            host_journal.close()
    # Before any process of the subhost exists. Processes PREMOUNT or POSTMOUNT left running
    # keep every capability, and so stay out of reach: the subhost's root has no
    # CAP_SYS_PTRACE (their /proc/PID/cwd, /fd, /root need it).
    step("confine the subhost (capabilities, seccomp)", confine.confine, rules, name)
    return relay
