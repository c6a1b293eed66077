"""overlay-boot-net: builds the cables of every subhost in one shared process.

Importing pyroute2 costs 100–170 ms, most of a subhost's start budget (SPEC §7). This service
pays it once for all subhosts: systemd starts it on the first request to its socket
(``overlay-boot-net.socket``, passed as fd 3 by ``LISTEN_FDS``) and it exits after ``--idle``
seconds (default 30) without requests; the listening socket stays with systemd, so a request
arriving meanwhile waits in its queue and starts the service again.

Protocol (``AF_UNIX``, ``SOCK_SEQPACKET``, only uid 0, checked with ``SO_PEERCRED``): one
request per connection, one message: JSON ``{"netns": NAME, "cables": [...], "vlans": [...]}``
(``Cable``/``Vlan`` of ``config.py`` as objects, see ``net.encode_request``) with, as
``SCM_RIGHTS``, the client's network namespace, where the host ends are made. The answer is
``{"ok": true}`` or ``{"ok": false, "error": "..."}``. Requests are served one at a time: each
takes a few milliseconds. ``ifup`` is left to the client (see ``net.build_cables_in_child``).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from types import NoneType
from typing import Any

from . import log, net, netns
from .config import Cable, Vlan
from .errors import SubhostError

LISTEN_FDS_START = 3
IDLE_SECONDS = 30.0
RECEIVE_TIMEOUT = 5.0  # a client that connected but sends nothing holds up the others

_CABLE_FIELDS: dict[str, tuple[type, ...]] = {
    "index": (int,), "host_if": (str,), "sub_if": (str,), "bridge": (str, NoneType),
    "mac": (str, NoneType), "line": (int, NoneType)}
_VLAN_FIELDS: dict[str, tuple[type, ...]] = {
    "cable_index": (int,), "tag": (int,), "host_if": (str,), "sub_if": (str,),
    "bridge": (str, NoneType), "line": (int, NoneType)}


class BadRequest(Exception):
    """The request cannot be understood; nothing was done."""


def main(argv: Sequence[str] | None = None) -> int:
    log.configure(tag="overlay-boot-net")
    args = list(sys.argv[1:] if argv is None else argv)
    idle = IDLE_SECONDS
    if len(args) == 2 and args[0] == "--idle" and args[1].replace(".", "", 1).isdigit():
        idle = float(args[1])
    elif args:
        log.error("usage: python3 -m overlay_boot.netd [--idle SECONDS]")
        return 64
    try:
        listener = listening_socket()
    except RuntimeError as exc:
        log.error(str(exc))
        return 1
    started = time.monotonic()
    net._iproute_class(fast=True)
    log.debug(f"pyroute2 loaded in {(time.monotonic() - started) * 1000:.0f} ms")
    serve(listener, idle)
    return 0


def listening_socket() -> socket.socket:
    """The socket systemd passed (``LISTEN_PID``/``LISTEN_FDS``, fd 3)."""
    if (os.environ.get("LISTEN_PID") != str(os.getpid())
            or not os.environ.get("LISTEN_FDS", "0").isdigit()
            or int(os.environ.get("LISTEN_FDS", "0")) < 1):
        raise RuntimeError("no listening socket passed (LISTEN_FDS): start me through "
                           "overlay-boot-net.socket")
    for variable in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(variable, None)
    os.set_inheritable(LISTEN_FDS_START, False)
    sock = socket.socket(fileno=LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        raise RuntimeError("the passed socket is not an AF_UNIX SOCK_SEQPACKET socket")
    sock.setblocking(False)
    return sock


def serve(listener: socket.socket, idle: float) -> None:
    """Answer connections one at a time until none came for IDLE seconds."""
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    while True:
        if not poller.poll(idle * 1000):
            log.debug(f"idle for {idle:g} s: exiting")
            return
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue
        with conn:
            try:
                handle(conn)
            except OSError as exc:  # the client went away: its problem, not ours
                log.debug(f"connection: {exc}")


def handle(conn: socket.socket) -> None:
    """Serve one connection: check the peer, read the request, build, answer."""
    conn.setblocking(True)
    conn.settimeout(RECEIVE_TIMEOUT)
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                      struct.calcsize("3i")))
    # Read the request in any case: closing with unread data would reset the connection
    # and the client would see no answer.
    data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
    try:
        if uid != 0:
            log.warning(f"refused a request of uid {uid} (pid {pid}): only root may build "
                        "cables")
            answer = {"ok": False, "error": "permission denied: only root may build cables"}
        else:
            answer = _serve_request(data, fds, pid)
    finally:
        for fd in fds:
            os.close(fd)
    _answer(conn, answer)


def _serve_request(data: bytes, fds: list[int], pid: int) -> dict[str, Any]:
    started = time.monotonic()
    try:
        name, cables, vlans = decode_request(data)
        if len(fds) != 1:
            raise BadRequest("expected the client's network namespace as the one file "
                             f"descriptor (SCM_RIGHTS), got {len(fds)}")
    except BadRequest as exc:
        log.warning(f"bad request from pid {pid}: {exc}")
        return {"ok": False, "error": f"bad request: {exc}"}
    try:
        build_in(fds[0], name, cables, vlans)
    except SubhostError as exc:
        log.warning(f"cables of subhost {name}: {exc}")
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # an unexpected failure must not end the service for others
        log.error(f"cables of subhost {name}: {type(exc).__name__}: {exc}")
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    log.info(f"cables of subhost {name} built ({len(cables)} cables, {len(vlans)} VLANs) "
             f"in {(time.monotonic() - started) * 1000:.0f} ms")
    return {"ok": True}


def build_in(ns_fd: int, name: str, cables: Sequence[Cable], vlans: Sequence[Vlan]) -> None:
    """``net.build_cables`` in the client's network namespace NS_FD (the service itself stays
    where it is)."""
    netns.in_thread(
        ns_fd,
        lambda: net.build_cables(name, cables, vlans, ifup=False, _fast_import=True),
        "entering the client's network namespace",
    )


def decode_request(data: bytes) -> tuple[str, list[Cable], list[Vlan]]:
    """(netns name, cables, VLANs) of a request; BadRequest says what is wrong with it."""
    try:
        request = json.loads(data)
    except ValueError as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(request, dict) or set(request) != {"netns", "cables", "vlans"}:
        raise BadRequest('expected an object with "netns", "cables" and "vlans"')
    name = request["netns"]
    if (not isinstance(name, str) or not name or "/" in name or "\0" in name
            or name in (".", "..") or len(name) > 255):
        raise BadRequest(f"bad network namespace name {name!r}")
    if not netns.exists(name):
        raise BadRequest(f"there is no network namespace {name} ({netns.path(name)})")
    cables = [Cable(**_fields(item, _CABLE_FIELDS, "cable")) for item in
              _list(request["cables"], "cables")]
    vlans = [Vlan(**_fields(item, _VLAN_FIELDS, "VLAN")) for item in
             _list(request["vlans"], "vlans")]
    return name, cables, vlans


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise BadRequest(f'"{what}" must be a list')
    return value


def _fields(item: object, spec: dict[str, tuple[type, ...]], what: str) -> dict[str, Any]:
    if not isinstance(item, dict) or set(item) != set(spec):
        raise BadRequest(f"a {what} must be an object with exactly {', '.join(spec)}")
    for key, types in spec.items():
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise BadRequest(f"{what} field {key}: unexpected {type(value).__name__}")
    return item


def _answer(conn: socket.socket, answer: dict[str, Any]) -> None:
    conn.send(json.dumps(answer).encode())


if __name__ == "__main__":
    raise SystemExit(main())
