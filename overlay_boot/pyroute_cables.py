"""Cables built with pyroute2 (what VLANs need): the cable service's and the fallback child's.

Never imported by a long-lived per-subhost process: the supervisor makes plain cables with
``rtnl`` and hands subhosts with VLANs to the cable service (``netd``) or a forked child
(``net.build_through_service``), which call ``build``. Works with Debian's pyroute2 0.7.2 and
PyPI 0.9.x: only plain ``IPRoute()`` calls in the current network namespace are used; work
inside the subhost's netns is done from a thread that ``setns()``-ed into it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import net, netns
from .config import Cable, Vlan
from .errors import SubhostError


def build(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan] = (), *,
          ifup: bool = True) -> None:
    """Create the cables of the subhost whose netns is ``/run/netns/NETNS_NAME``.

    What ``net.build_plain`` does, plus the VLANs: each a pair of VLAN interfaces on the two
    ends of its cable, the host one tagged, bridged and up like a host end. Unbridged host
    ends are then handed to ``ifup`` (unless IFUP is false). On failure the host ends made so
    far are deleted (with their peers) and SubhostError names the interface.
    """
    iproute = load_iproute()
    by_index = {c.index: c for c in cables}
    created: list[str] = []
    try:
        with iproute() as ipr:
            for cable in cables:
                peer = {"ifname": cable.sub_if, "net_ns_fd": netns_name}
                if cable.mac:
                    peer["address"] = cable.mac
                with net.step(net.creating_veth(netns_name, cable)):
                    ipr.link("add", ifname=cable.host_if, kind="veth", peer=peer)
                created.append(cable.host_if)
            for vlan in vlans:
                carrier = _carrier(by_index, vlan)
                with net.step(f"creating VLAN interface {vlan.host_if} on {carrier.host_if}"):
                    ipr.link("add", ifname=vlan.host_if, kind="vlan",
                             link=_index(ipr, carrier.host_if), vlan_id=vlan.tag)
            for ifname, bridge in net.host_ends(cables, vlans):
                index = _index(ipr, ifname)
                with net.step(net.tagging(netns_name, ifname)):
                    ipr.link("set", index=index, ifalias=netns.link_tag(netns_name))
                if bridge:
                    with net.step(net.adding_to_bridge(ifname, bridge)):
                        ipr.link("set", index=index, master=_index(ipr, bridge, "bridge"))
                with net.step(net.bringing_up(ifname)):
                    ipr.link("set", index=index, state="up")
        if vlans:
            _in_netns(netns_name, lambda: _inner_vlans(iproute, by_index, vlans))
    except BaseException:
        net.remove_created(created)
        raise
    if ifup:
        net.ifup_unbridged(netns_name, cables, vlans)


def _carrier(by_index: dict[int, Cable], vlan: Vlan) -> Cable:
    try:
        return by_index[vlan.cable_index]
    except KeyError:
        raise SubhostError(f"VLAN {vlan.host_if}: there is no cable {vlan.cable_index} "
                           "to carry it") from None


def _inner_vlans(iproute: Any, by_index: dict[int, Cable], vlans: Sequence[Vlan]) -> None:
    with iproute() as ipr:
        for vlan in vlans:
            carrier = _carrier(by_index, vlan)
            with net.step(f"creating VLAN interface {vlan.sub_if} on {carrier.sub_if} "
                          "inside the subhost"):
                ipr.link("add", ifname=vlan.sub_if, kind="vlan",
                         link=_index(ipr, carrier.sub_if), vlan_id=vlan.tag)


def _index(ipr: Any, ifname: str, kind: str = "interface") -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise SubhostError(f"{kind} {ifname} does not exist")
    return found[0]


def _in_netns(netns_name: str, func: Callable[[], None]) -> None:
    """Run FUNC inside the named netns, in a thread (see netns.in_thread)."""
    try:
        fd = os.open(netns.path(netns_name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SubhostError(f"entering network namespace {netns_name}: {exc}") from exc
    try:
        netns.in_thread(fd, func, f"entering network namespace {netns_name}")
    finally:
        os.close(fd)


# -- importing pyroute2 -------------------------------------------------------------------

_iproute: Any = None  # the class, once imported


def load_iproute() -> Any:
    """pyroute2's IPRoute, imported once. Skips the package ``__init__``, which loads ndb,
    ipdb, conntrack… (about half the import time) and is not needed by
    ``pyroute2.iproute.linux``; falls back to the normal import if that fails. Only for
    processes that use nothing else of pyroute2 (this module's users)."""
    global _iproute
    if _iproute is None:
        _iproute = _import_iproute()
    return _iproute


def _import_iproute() -> Any:
    if "pyroute2" not in sys.modules:
        import importlib.util

        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.submodule_search_locations is not None:
            sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)
            try:
                from pyroute2.iproute.linux import IPRoute

                return IPRoute
            except Exception:
                for module in [m for m in sys.modules if m.partition(".")[0] == "pyroute2"]:
                    del sys.modules[module]
    from pyroute2 import IPRoute

    return IPRoute
