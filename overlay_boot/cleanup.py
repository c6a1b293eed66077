"""Removing what a subhost leaves on the host: its netns and the host ends of its cables.

Used at the end of every stop without systemd, at the start of every start (what a crash left
behind) and by ``overlay-stop --cleanup`` (overlay-boot-cleanup@NAME.service, ExecStopPost=).
Everything here is idempotent, and removes only what overlay-boot made (netns.ours,
netns.tagged): a start over someone else's netns or link is refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import log, netns
from .errors import SubhostError

SYS_NET = Path("/sys/class/net")
IFSTATE_DIR = Path("/run/network")
IFUPDOWN_DIRS = ("/usr/sbin", "/sbin")


def remove_stale(name: str, host_ifs: Sequence[str]) -> None:
    """Before a start: remove what an earlier run of NAME left behind, if anything; refuse
    (SubhostError) when a netns or an interface the start needs belongs to someone else."""
    refuse_foreign(name, host_ifs)
    leftovers = [i for i in host_ifs if (SYS_NET / i).exists()]
    if netns.exists(name) or leftovers:
        log.notice(f"removing stale state of subhost {name}: netns and {leftovers or 'no links'}")
        teardown(name, host_ifs)
    else:
        netns.forget(name)
        forget_ifupdown_state(host_ifs)


def refuse_foreign(name: str, host_ifs: Sequence[str]) -> None:
    """SubhostError naming the first netns or interface of NAME's that overlay-boot did not make."""
    if netns.foreign(name):
        raise SubhostError(
            f"network namespace {name} ({netns.path(name)}) exists and was not made by "
            f"overlay-boot for subhost {name}: left alone. Remove it (ip netns delete {name}) "
            "or rename the subhost, then start again")
    for ifname in host_ifs:
        if os.path.lexists(SYS_NET / ifname) and not netns.tagged(ifname, name):
            raise SubhostError(
                f"interface {ifname} exists and is not a cable end of subhost {name}: left "
                f"alone. Remove or rename it (ip link delete {ifname}), or change CABLES, then "
                "start again")


def teardown(name: str, host_ifs: Sequence[str]) -> None:
    """Remove NAME's netns and its host cable ends, if overlay-boot made them; wait until the
    kernel has removed them. Someone else's are left alone (with a warning)."""
    forget_ifupdown_state([i for i in host_ifs if netns.tagged(i, name)])
    if netns.ours(name):
        netns.remove(name)
    else:
        if netns.exists(name):
            log.warning(f"network namespace {name} ({netns.path(name)}) was not made by "
                        f"overlay-boot for subhost {name}: left alone")
        netns.forget(name)
    # Destroying the netns destroys the veth pairs, asynchronously.
    remaining = netns.wait_gone([i for i in host_ifs if netns.tagged(i, name)], timeout=3.0)
    ours = [i for i in remaining if netns.tagged(i, name)]
    if ours:
        netns.delete_links(ours)
    foreign = [i for i in host_ifs if (SYS_NET / i).exists() and not netns.tagged(i, name)]
    if foreign:
        log.warning(f"interfaces {', '.join(foreign)} exist but are not cable ends of subhost "
                    f"{name}: left alone")


def _ifupdown_configured(ifname: str) -> bool:
    """ifupdown keeps a state file per interface; it holds the name while configured."""
    try:
        return bool((IFSTATE_DIR / f"ifstate.{ifname}").read_text().strip())
    except OSError:
        return False


def forget_ifupdown_state(host_ifs: Sequence[str]) -> None:
    """Deconfigure host ends that ifupdown brought up, so the next `ifup` works again."""
    stale = [i for i in host_ifs if _ifupdown_configured(i)]
    if not stale or not any(os.access(f"{d}/ifdown", os.X_OK) for d in IFUPDOWN_DIRS):
        return
    import subprocess

    for ifname in stale:
        result = subprocess.run(
            ["ifdown", "--force", ifname],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=30,
        )
        if result.returncode != 0:
            log.warning(f"ifdown {ifname}: {result.stdout.decode(errors='replace').strip()}")
