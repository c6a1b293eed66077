"""Virtual cables (veth pairs, VLANs, bridge ports): the only user of pyroute2.

pyroute2 is imported lazily and, in the supervisor, only inside a short-lived forked child
(``build_cables_in_child``), so the long-lived processes never hold it. Works with Debian's
pyroute2 0.7.2 and PyPI 0.9.x: only plain ``IPRoute()`` calls in the current network namespace
are used; work inside the subhost's netns is done from a thread that ``setns()``-ed into it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import log, netns
from .errors import SubhostError

if TYPE_CHECKING:
    from .config import Cable, Vlan

_HINTS = {
    errno.EEXIST: "the interface exists already",
    errno.EOPNOTSUPP: "not supported by this kernel",
}


def build_cables_in_child(netns_name: str, cables: Sequence[Cable],
                          vlans: Sequence[Vlan] = ()) -> None:
    """``build_cables`` in a forked child, so this process never imports pyroute2."""
    netns.run_in_child(_child_build, netns_name, cables, vlans,
                       what=f"cables of subhost {netns_name}")


def _child_build(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan]) -> None:
    build_cables(netns_name, cables, vlans, _fast_import=True)


def build_cables(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan] = (), *,
                 _fast_import: bool = False) -> None:
    """Create the cables of the subhost whose netns is ``/run/netns/NETNS_NAME``.

    Each cable is a veth pair, host end in this netns, subhost end inside with the configured
    MAC; each VLAN a pair of VLAN interfaces on the two ends. Host ends are enslaved to their
    bridge and brought up; unbridged ones are then handed to ``ifup`` where ifupdown knows them.
    Subhost ends stay down: the subhost's own networking brings them up. On failure the host
    ends made so far are deleted (with their peers) and SubhostError names the interface.
    """
    iproute = _iproute_class(fast=_fast_import)
    by_index = {c.index: c for c in cables}
    created: list[str] = []
    try:
        with iproute() as ipr:
            for cable in cables:
                peer = {"ifname": cable.sub_if, "net_ns_fd": netns_name}
                if cable.mac:
                    peer["address"] = cable.mac
                with _step(f"creating veth pair {cable.host_if} / {cable.sub_if} "
                           f"(in netns {netns_name})"):
                    ipr.link("add", ifname=cable.host_if, kind="veth", peer=peer)
                created.append(cable.host_if)
            for vlan in vlans:
                carrier = _carrier(by_index, vlan)
                with _step(f"creating VLAN interface {vlan.host_if} on {carrier.host_if}"):
                    ipr.link("add", ifname=vlan.host_if, kind="vlan",
                             link=_index(ipr, carrier.host_if), vlan_id=vlan.tag)
            for ifname, bridge in _host_ends(cables, vlans):
                index = _index(ipr, ifname)
                if bridge:
                    with _step(f"adding {ifname} to bridge {bridge}"):
                        ipr.link("set", index=index, master=_index(ipr, bridge, "bridge"))
                with _step(f"bringing up {ifname}"):
                    ipr.link("set", index=index, state="up")
        if vlans:
            _in_netns(netns_name, lambda: _inner_vlans(iproute, by_index, vlans))
    except BaseException:
        try:
            netns.delete_links(created)
        except SubhostError as exc:
            log.warning(f"cleaning up after a failed cable setup: {exc}")
        raise
    for ifname, bridge in _host_ends(cables, vlans):
        if not bridge:
            _ifup(ifname)


def remove_host_ends(ifnames: Sequence[str]) -> None:
    """Delete host cable ends (and so their peers and VLANs); absent ones are ignored.

    Plain rtnetlink from the standard library: the supervisor calls this in-process.
    """
    netns.delete_links(ifnames)


# -- steps --------------------------------------------------------------------------------

def _host_ends(cables: Sequence[Cable], vlans: Sequence[Vlan]) -> list[tuple[str, str | None]]:
    return [(c.host_if, c.bridge) for c in cables] + [(v.host_if, v.bridge) for v in vlans]


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
            with _step(f"creating VLAN interface {vlan.sub_if} on {carrier.sub_if} "
                       "inside the subhost"):
                ipr.link("add", ifname=vlan.sub_if, kind="vlan",
                         link=_index(ipr, carrier.sub_if), vlan_id=vlan.tag)


def _index(ipr: Any, ifname: str, kind: str = "interface") -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise SubhostError(f"{kind} {ifname} does not exist")
    return found[0]


def _ifup(ifname: str) -> None:
    """``ifup IFNAME`` where ifupdown is installed and has a stanza for it (as 1.6.4 did)."""
    if shutil.which("ifquery") is None or shutil.which("ifup") is None:
        return
    known = subprocess.run(["ifquery", ifname], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if known.returncode != 0:
        return
    result = subprocess.run(["ifup", ifname], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0:
        log.warning(f"ifup {ifname} failed (exit status {result.returncode}); "
                    f"the interface is up but unconfigured{': ' + output if output else ''}")
    elif output:
        log.info(output, source=f"ifup {ifname}")


def _in_netns(netns_name: str, func: Callable[[], None]) -> None:
    """Run FUNC in a thread that has entered the named netns (setns is per thread), so this
    process stays where it is; pyroute2's sockets made there belong to that netns."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(netns.path(netns_name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                netns.setns(fd)
            finally:
                os.close(fd)
            func()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"netns {netns_name}")
    thread.start()
    thread.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, OSError):
            raise SubhostError(f"entering network namespace {netns_name}: {exc}") from exc
        raise exc


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn pyroute2's NetlinkError (and OSError) into SubhostError naming the step."""
    try:
        yield
    except SubhostError as exc:
        raise SubhostError(f"{what}: {exc}") from exc
    except Exception as exc:
        code = getattr(exc, "code", None)
        if not isinstance(code, int):
            code = getattr(exc, "errno", None)
        if not isinstance(code, int):
            raise
        reason = os.strerror(code)
        hint = _HINTS.get(code)
        raise SubhostError(f"{what}: {reason}{f' ({hint})' if hint else ''}") from exc


# -- importing pyroute2 -------------------------------------------------------------------

def _iproute_class(fast: bool) -> Any:
    """pyroute2's IPRoute. With FAST (in a throw-away child only), skip the package
    ``__init__``, which loads ndb, ipdb, conntrack… (about half the import time) and is not
    needed by ``pyroute2.iproute.linux``; fall back to the normal import if that fails."""
    if fast and "pyroute2" not in sys.modules:
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
