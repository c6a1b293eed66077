"""Raw rtnetlink link requests, standard library only (``socket`` and ``struct``).

What the start path needs of netlink and nothing more: make a veth pair whose peer goes into
another network namespace, set an interface's alias, master and IFF_UP, delete interfaces.
Each request asks for an acknowledgement; a refusal is raised as OSError with the kernel's
errno. Importing pyroute2 for these costs 100–300 ms; here a veth pair costs what the kernel
takes to make it (about a millisecond), so the supervisor makes plain cables itself
(``net.build_plain``).
"""

from __future__ import annotations

import os
import socket
import struct

_NETLINK_ROUTE = 0
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_NLMSG_ERROR = 2
_HEADER = struct.Struct("IHHII")  # struct nlmsghdr
_IFINFO = struct.Struct("BxHiII")  # struct ifinfomsg

_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFLA_MASTER = 10
_IFLA_LINKINFO = 18
_IFLA_IFALIAS = 20
_IFLA_NET_NS_FD = 28
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_VETH_INFO_PEER = 1
IFF_UP = 0x1


class Rtnl:
    """A NETLINK_ROUTE socket of the calling thread's network namespace; use with ``with``."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   _NETLINK_ROUTE)
        self._seq = 0
        try:
            self._sock.bind((0, 0))
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def add_veth(self, ifname: str, peer: str, peer_netns_fd: int,
                 peer_mac: str | None = None) -> None:
        """A veth pair IFNAME (here, down) / PEER (in PEER_NETNS_FD, down, MAC PEER_MAC)."""
        peer_attrs = _attr(_IFLA_IFNAME, _name(peer))
        if peer_mac:
            peer_attrs += _attr(_IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
        peer_attrs += _attr(_IFLA_NET_NS_FD, struct.pack("I", peer_netns_fd))
        info = (_attr(_IFLA_INFO_KIND, b"veth")
                + _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, _ifinfo() + peer_attrs)))
        self._request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL,
                      _ifinfo() + _attr(_IFLA_IFNAME, _name(ifname)) + _attr(_IFLA_LINKINFO, info))

    def set_alias(self, ifname: str, alias: str) -> None:
        self._set(ifname, _attr(_IFLA_IFALIAS, alias.encode()))

    def set_master(self, ifname: str, master_index: int) -> None:
        self._set(ifname, _attr(_IFLA_MASTER, struct.pack("I", master_index)))

    def set_up(self, ifname: str) -> None:
        self._set(ifname, b"", flags=IFF_UP, change=IFF_UP)

    def delete(self, ifname: str) -> None:
        self._request(_RTM_DELLINK, 0, _ifinfo() + _attr(_IFLA_IFNAME, _name(ifname)))

    def _set(self, ifname: str, attrs: bytes, flags: int = 0, change: int = 0) -> None:
        self._request(_RTM_NEWLINK, 0,
                      _ifinfo(flags, change) + _attr(_IFLA_IFNAME, _name(ifname)) + attrs)

    def _request(self, msg_type: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its acknowledgement; OSError if it was refused."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_HEADER.pack(_HEADER.size + len(body), msg_type,
                                     _NLM_F_REQUEST | _NLM_F_ACK | flags, seq, 0) + body)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _, rseq, _ = _HEADER.unpack_from(data, offset)
                if kind == _NLMSG_ERROR and rseq == seq:
                    err = -struct.unpack_from("i", data, offset + _HEADER.size)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    return
                offset += max(_HEADER.size, (length + 3) & ~3)



def _ifinfo(flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, 0, flags, change)


def _name(ifname: str) -> bytes:
    return ifname.encode() + b"\0"


def _attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (struct nlattr), padded to 4 bytes."""
    data = struct.pack("HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)
