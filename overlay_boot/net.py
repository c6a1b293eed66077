"""Virtual cables of a subhost (veth pairs, bridge ports, VLANs): what the supervisor calls.

``build_cables`` makes cables without VLANs, the common case, right here with raw rtnetlink
(``rtnl``, standard library: no import, no other process, nothing to start). VLANs need
pyroute2, which this process never imports: the cables of a subhost with VLANs are
built by the shared, socket-activated cable service (``netd``, wire format in ``cablewire``)
or, where that is not installed or not reachable, in a short-lived forked child
(``pyroute_cables``). Host ends are made in the calling thread's netns.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from . import log, netns, proc
from .errors import SubhostError

# The supervisor imports this module: no json, typing, shutil, subprocess or threading at run
# time (they cost every supervisor memory), nothing of the service's side.
TYPE_CHECKING = False
if TYPE_CHECKING:
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


def build_cables(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan] = ()) -> None:
    """Make the cables of the subhost whose netns is ``/run/netns/NETNS_NAME``, then ``ifup``
    the unbridged host ends ifupdown knows. SubhostError names the step that failed; nothing
    is left then."""
    if vlans:
        build_through_service(netns_name, cables, vlans)
        return
    queries = _ask_ifquery(cables, ())  # ifupdown answers while the cables are made
    try:
        build_plain(netns_name, cables)
    except BaseException as exc:
        _known_to_ifupdown(queries)  # reaped
        if isinstance(exc, (SubhostError, OSError)):  # OSError: no netlink socket at all
            raise SubhostError(f"cables of subhost {netns_name}: {exc}") from exc
        raise
    ifup_unbridged(netns_name, cables, (), queries)


def build_plain(netns_name: str, cables: Sequence[Cable]) -> None:
    """Cables without VLANs, in this process (stdlib rtnetlink).

    Each cable is a veth pair, host end in this netns, subhost end inside with the configured
    MAC. Host ends carry the alias ``overlay-boot:NETNS_NAME`` (netns.link_tag: cleanup removes
    only those), are enslaved to their bridge and brought up; subhost ends stay down (the
    subhost's own networking brings them up). On failure the host ends made so far are
    deleted (with their peers) and SubhostError names the step.
    """
    from . import rtnl  # not loaded by the supervisors of subhosts without cables

    created: list[str] = []
    try:
        try:
            ns_fd = os.open(netns.path(netns_name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SubhostError(f"opening network namespace {netns_name}: {exc}") from exc
        try:
            with rtnl.Rtnl() as link:
                for cable in cables:
                    with step(creating_veth(netns_name, cable)):
                        link.add_veth(cable.host_if, cable.sub_if, ns_fd, cable.mac)
                    created.append(cable.host_if)
                for ifname, bridge in host_ends(cables, ()):
                    with step(tagging(netns_name, ifname)):
                        link.set_alias(ifname, netns.link_tag(netns_name))
                    if bridge:
                        with step(adding_to_bridge(ifname, bridge)):
                            link.set_master(ifname, _bridge_index(bridge))
                    with step(bringing_up(ifname)):
                        link.set_up(ifname)
        finally:
            os.close(ns_fd)
    except BaseException:
        remove_created(created)
        raise


def _bridge_index(bridge: str) -> int:
    try:
        return socket.if_nametoindex(bridge)
    except OSError:
        raise SubhostError(f"bridge {bridge} does not exist") from None


def build_through_service(netns_name: str, cables: Sequence[Cable],
                          vlans: Sequence[Vlan] = ()) -> None:
    """The cables built with pyroute2 without importing it here: by the cable service, or,
    when it is not there, in a forked child (``pyroute_cables.build``); then ``ifup``."""
    what = f"cables of subhost {netns_name}"
    if not _ask_service(netns_name, cables, vlans, what):
        proc.call_in_fork(_child_build, netns_name, cables, vlans, what=what)
        return
    # The service skips ifup: what ifup starts (a DHCP client…) belongs to the subhost's
    # unit, not to the service's cgroup, which ends when the service goes idle.
    ifup_unbridged(netns_name, cables, vlans)


def _child_build(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan]) -> None:
    from . import pyroute_cables

    pyroute_cables.build(netns_name, cables, vlans)


def _ask_service(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan],
                 what: str) -> bool:
    """Ask the cable service (messages: ``cablewire``). False when there is none to ask
    (nothing was done: build here); SubhostError when it answered with an error."""
    from . import cablewire

    request = cablewire.encode_request(netns_name, cables, vlans)
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
        error = cablewire.decode_answer(data)
    except ValueError as exc:
        raise SubhostError(f"{what}: {exc}") from None
    if error is not None:
        raise SubhostError(f"{what}: {error}")
    return True


# -- shared by both ways of building ------------------------------------------------------

def host_ends(cables: Sequence[Cable], vlans: Sequence[Vlan]) -> list[tuple[str, str | None]]:
    """(host interface, its bridge or None) of every cable and VLAN."""
    return [(c.host_if, c.bridge) for c in cables] + [(v.host_if, v.bridge) for v in vlans]


def remove_created(created: Sequence[str]) -> None:
    """After a failed build: delete the host ends made so far (a warning if that fails)."""
    try:
        netns.delete_links(created)
    except SubhostError as exc:
        log.warning(f"cleaning up after a failed cable setup: {exc}")


def creating_veth(netns_name: str, cable: Cable) -> str:
    return f"creating veth pair {cable.host_if} / {cable.sub_if} (in netns {netns_name})"


def tagging(netns_name: str, ifname: str) -> str:
    return f"tagging {ifname} as a cable end of subhost {netns_name}"


def adding_to_bridge(ifname: str, bridge: str) -> str:
    return f"adding {ifname} to bridge {bridge}"


def bringing_up(ifname: str) -> str:
    return f"bringing up {ifname}"


@contextmanager
def step(what: str) -> Iterator[None]:
    """Turn an OSError (or pyroute2's NetlinkError) into SubhostError naming the step."""
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


# -- ifup ---------------------------------------------------------------------------------

def ifup_unbridged(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan],
                   queries: dict[str, int] | None = None) -> None:
    """``ifup`` the unbridged host ends that ifupdown knows (as 1.6.4 did), where it is
    installed. QUERIES: the ``ifquery`` processes already asked (``_ask_ifquery``), else they
    are asked now. ``ifup`` itself, rarely needed, runs in a forked child."""
    known = _known_to_ifupdown(_ask_ifquery(cables, vlans) if queries is None else queries)
    if known:
        proc.call_in_fork(_ifup_all, known, what=f"ifup of the cables of subhost {netns_name}")


def _ask_ifquery(cables: Sequence[Cable], vlans: Sequence[Vlan]) -> dict[str, int]:
    """Start ``ifquery IFNAME`` for each unbridged host end, where ifupdown is installed:
    {IFNAME: PID}. Spawned (``proc.spawn_quiet``: no fork of this process, no subprocess
    import), output to nowhere; it reads only ifupdown's configuration, so it can run while
    the cables are made."""
    unbridged = [ifname for ifname, bridge in host_ends(cables, vlans) if not bridge]
    if not unbridged or not _have_ifupdown():
        return {}
    queries = {}
    for ifname in unbridged:
        try:
            queries[ifname] = proc.spawn_quiet(["ifquery", ifname])
        except OSError as exc:
            log.warning(f"ifquery {ifname}: {exc}; not configuring it with ifup")
    return queries


def _known_to_ifupdown(queries: dict[str, int]) -> list[str]:
    """Wait for the ``ifquery`` processes; the names whose query succeeded (ifupdown has a
    stanza for them)."""
    known = []
    for ifname, pid in queries.items():
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            known.append(ifname)
    return known


def _have_ifupdown() -> bool:
    """Whether ``ifquery`` and ``ifup`` are on PATH (``shutil.which`` without shutil)."""
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return all(any(os.access(os.path.join(d, command), os.X_OK) for d in path if d)
               for command in ("ifquery", "ifup"))


def _ifup_all(ifnames: Sequence[str]) -> None:
    """In a forked child: ``ifup`` each of IFNAMES (ifquery knows them)."""
    import subprocess

    for ifname in ifnames:
        result = subprocess.run(["ifup", ifname], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = result.stdout.decode(errors="replace").strip()
        if result.returncode != 0:
            log.warning(f"ifup {ifname} failed (exit status {result.returncode}); the "
                        f"interface is up but unconfigured{': ' + output if output else ''}")
        elif output:
            log.info(output, source=f"ifup {ifname}")
