"""Removing what a subhost leaves on the host: its netns and the host ends of its cables.

Used at the end of every stop, at the start of every start (what a crash left behind) and by
the unit's ExecStopPost=. Everything here is idempotent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import log, netns

SYS_NET = Path("/sys/class/net")
IFSTATE_DIR = Path("/run/network")
IFUPDOWN_DIRS = ("/usr/sbin", "/sbin")


def remove_stale(name: str, host_ifs: Sequence[str]) -> None:
    """Before a start: remove what an earlier run of NAME left behind, if anything."""
    leftovers = [i for i in host_ifs if (SYS_NET / i).exists()]
    if netns.exists(name) or leftovers:
        log.notice(f"removing stale state of subhost {name}: netns and {leftovers or 'no links'}")
        teardown(name, host_ifs)
    else:
        forget_ifupdown_state(host_ifs)


def teardown(name: str, host_ifs: Sequence[str]) -> None:
    """Remove NAME's netns and its host cable ends; wait until the kernel has removed them."""
    forget_ifupdown_state(host_ifs)
    netns.remove(name)
    # Destroying the netns destroys the veth pairs, asynchronously.
    remaining = netns.wait_gone(list(host_ifs), timeout=3.0)
    ours = [i for i in remaining if _is_peer_link(i)]
    if ours:
        from . import net

        net.remove_host_ends(ours)
    foreign = [i for i in remaining if i not in ours and (SYS_NET / i).exists()]
    if foreign:
        log.warning(f"interfaces {', '.join(foreign)} exist but are not cable ends: left alone")


def _is_peer_link(ifname: str) -> bool:
    """A veth end or a VLAN: its iflink names another interface (a cable end of ours)."""
    try:
        ifindex = (SYS_NET / ifname / "ifindex").read_text().strip()
        iflink = (SYS_NET / ifname / "iflink").read_text().strip()
    except OSError:
        return False
    return ifindex != iflink


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
