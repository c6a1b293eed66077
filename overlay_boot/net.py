"""Virtual cables (veth pairs, VLANs, bridge ports): the only user of pyroute2.

pyroute2 is imported lazily and never by the supervisor: ``build_cables_in_child`` asks the
shared, socket-activated cable service (``overlay_boot.netd``, which holds pyroute2 once for all
subhosts) and, where that is not installed or not reachable, builds them in a short-lived forked
child. The client side here is standard library only. Works with Debian's pyroute2 0.7.2 and
PyPI 0.9.x: only plain ``IPRoute()`` calls in the current network namespace are used; work
inside the subhost's netns is done from a thread that ``setns()``-ed into it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from . import log, netns
from .errors import SubhostError

# The supervisor imports this module (for the client side): no typing, shutil, subprocess or
# threading at run time, they cost every supervisor memory.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .config import Cable, Vlan

_HINTS = {
    errno.EEXIST: "the interface exists already",
    errno.EOPNOTSUPP: "not supported by this kernel",
}


# The cable service's socket (units/overlay-boot-net.socket); the variable is for tests.
NET_SOCKET = os.environ.get("OVERLAY_BOOT_NET_SOCKET", "/run/overlay-boot/net.sock")
# Connecting to a listening AF_UNIX socket succeeds at once (systemd holds it while the service
# starts); the answer may wait for the service's start and the requests queued before ours.
CONNECT_TIMEOUT = 1.0
ANSWER_TIMEOUT = 120.0


def build_cables_in_child(netns_name: str, cables: Sequence[Cable],
                          vlans: Sequence[Vlan] = ()) -> None:
    """``build_cables`` without importing pyroute2 here: through the cable service, or, when
    it is not there, in a forked child. The host ends are made in this thread's netns."""
    what = f"cables of subhost {netns_name}"
    if not _build_through_service(netns_name, cables, vlans, what):
        netns.run_in_child(_child_build, netns_name, cables, vlans, what=what)
        return
    # The service skips ifup: what ifup starts (a DHCP client…) belongs to the subhost's
    # unit, not to the service's cgroup, which ends when the service goes idle.
    unbridged = [ifname for ifname, bridge in _host_ends(cables, vlans) if not bridge]
    if unbridged and _have_ifupdown():
        netns.run_in_child(_ifup_all, unbridged, what=f"ifup of the {what}")


def _child_build(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan]) -> None:
    build_cables(netns_name, cables, vlans, _fast_import=True)


def _ifup_all(ifnames: Sequence[str]) -> None:
    for ifname in ifnames:
        _ifup(ifname)


def _build_through_service(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan],
                           what: str) -> bool:
    """Ask the cable service (protocol: ``overlay_boot.netd``). False when there is none to
    ask (nothing was done: build here); SubhostError when it answered with an error."""
    request = encode_request(netns_name, cables, vlans)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(NET_SOCKET)
            ns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                socket.send_fds(sock, [request], [ns_fd])
            finally:
                os.close(ns_fd)
        except OSError as exc:
            log.debug(f"cable service at {NET_SOCKET} not used ({exc}): building in a child")
            return False
        sock.settimeout(ANSWER_TIMEOUT)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise SubhostError(f"{what}: the cable service ({NET_SOCKET}) did not answer "
                               f"within {ANSWER_TIMEOUT:g} s") from None
        except OSError as exc:
            data = b""
            log.debug(f"cable service: {exc}")
    finally:
        sock.close()
    if not data:  # it went away before answering (failed to start, crashed)
        log.warning(f"the cable service ({NET_SOCKET}) closed the connection without an "
                    "answer; building the cables here")
        return False
    try:
        answer = json.loads(data)
        ok = answer["ok"]
    except (ValueError, TypeError, KeyError):
        raise SubhostError(f"{what}: the cable service answered nonsense: {data[:200]!r}") from None
    if ok is not True:
        raise SubhostError(f"{what}: {answer.get('error') or 'the cable service failed'}")
    return True


def encode_request(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan]) -> bytes:
    """The cable service's request: JSON, the Cable and Vlan dataclasses as objects."""
    return json.dumps({"netns": netns_name,
                       "cables": [dict(vars(c)) for c in cables],
                       "vlans": [dict(vars(v)) for v in vlans]}).encode()


def _have_ifupdown() -> bool:
    """Whether ``ifquery`` and ``ifup`` are on PATH (``shutil.which`` without shutil)."""
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return all(any(os.access(os.path.join(d, command), os.X_OK) for d in path if d)
               for command in ("ifquery", "ifup"))


def build_cables(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan] = (), *,
                 ifup: bool = True, _fast_import: bool = False) -> None:
    """Create the cables of the subhost whose netns is ``/run/netns/NETNS_NAME``.

    Each cable is a veth pair, host end in this netns, subhost end inside with the configured
    MAC; each VLAN a pair of VLAN interfaces on the two ends. Host ends carry the alias
    ``overlay-boot:NETNS_NAME`` (netns.link_tag: cleanup removes only those), are enslaved to
    their bridge and brought up; unbridged ones are then handed to ``ifup`` where ifupdown
    knows them (unless IFUP is false). Subhost ends stay down: the subhost's own networking
    brings them up. On failure the host ends made so far are deleted (with their peers) and
    SubhostError names the interface.
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
                with _step(f"tagging {ifname} as a cable end of subhost {netns_name}"):
                    ipr.link("set", index=index, ifalias=netns.link_tag(netns_name))
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
    if ifup:
        _ifup_all([ifname for ifname, bridge in _host_ends(cables, vlans) if not bridge])


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
    if not _have_ifupdown():
        return
    import subprocess

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
    """Run FUNC inside the named netns, in a thread (see netns.in_thread)."""
    try:
        fd = os.open(netns.path(netns_name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SubhostError(f"entering network namespace {netns_name}: {exc}") from exc
    try:
        netns.in_thread(fd, func, f"entering network namespace {netns_name}")
    finally:
        os.close(fd)


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

_iproute: Any = None  # the class, once imported


def _iproute_class(fast: bool) -> Any:
    """pyroute2's IPRoute. With FAST (in a throw-away child or the cable service, which use
    nothing else of pyroute2), skip the package ``__init__``, which loads ndb, ipdb,
    conntrack… (about half the import time) and is not needed by ``pyroute2.iproute.linux``;
    fall back to the normal import if that fails."""
    global _iproute
    if _iproute is None:
        _iproute = _import_iproute(fast)
    return _iproute


def _import_iproute(fast: bool) -> Any:
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
