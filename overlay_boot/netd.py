"""overlay-boot-net: builds the cables of every subhost in one shared process.

Importing pyroute2 costs 100–170 ms, most of a subhost's start budget (SPEC §7). This service
pays it once for all subhosts: systemd starts it on the first request to its socket
(``overlay-boot-net.socket``, passed as fd 3 by ``LISTEN_FDS``) and it exits after ``--idle``
seconds (default 30) without requests; the listening socket stays with systemd, so a request
arriving meanwhile waits in its queue and starts the service again.

Since plain cables are made by the supervisor itself (``net.build_plain``, stdlib rtnetlink),
only subhosts with VLANs ask it; so they alone pay its start. Requests and answers are the
messages of ``cablewire``; only uid 0 is served (``SO_PEERCRED``). Requests are served one at
a time: each takes a few milliseconds. ``ifup`` is left to the client (see
``net.build_through_service``).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence

from . import log, netns, pyroute_cables
from .cablewire import BadRequest, decode_request, encode_answer
from .config import Cable, Vlan
from .errors import SubhostError

LISTEN_FDS_START = 3
IDLE_SECONDS = 30.0
RECEIVE_TIMEOUT = 5.0  # a client that connected but sends nothing holds up the others

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
    pyroute_cables.load_iproute()
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
            answer = "permission denied: only root may build cables"
        else:
            answer = _serve_request(data, fds, pid)
    finally:
        for fd in fds:
            os.close(fd)
    conn.send(encode_answer(answer))


def _serve_request(data: bytes, fds: list[int], pid: int) -> str | None:
    """Build what DATA asks for; None on success, else the error to answer."""
    started = time.monotonic()
    try:
        name, cables, vlans = decode_request(data)
        if not netns.exists(name):
            raise BadRequest(f"there is no network namespace {name} ({netns.path(name)})")
        if len(fds) != 1:
            raise BadRequest("expected the client's network namespace as the one file "
                             f"descriptor (SCM_RIGHTS), got {len(fds)}")
    except BadRequest as exc:
        log.warning(f"bad request from pid {pid}: {exc}")
        return f"bad request: {exc}"
    try:
        build_in(fds[0], name, cables, vlans)
    except SubhostError as exc:
        log.warning(f"cables of subhost {name}: {exc}")
        return str(exc)
    except Exception as exc:  # an unexpected failure must not end the service for others
        log.error(f"cables of subhost {name}: {type(exc).__name__}: {exc}")
        return f"{type(exc).__name__}: {exc}"
    log.info(f"cables of subhost {name} built ({len(cables)} cables, {len(vlans)} VLANs) "
             f"in {(time.monotonic() - started) * 1000:.0f} ms")
    return None


def build_in(ns_fd: int, name: str, cables: Sequence[Cable], vlans: Sequence[Vlan]) -> None:
    """``pyroute_cables.build`` in the client's network namespace NS_FD (the service itself
    stays where it is)."""
    netns.in_thread(
        ns_fd,
        lambda: pyroute_cables.build(name, cables, vlans, ifup=False),
        "entering the client's network namespace",
    )


if __name__ == "__main__":
    raise SystemExit(main())
