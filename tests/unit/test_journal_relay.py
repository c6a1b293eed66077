"""PID 1's relay of the subhost's /dev/log (linux/journal.py), on real datagram sockets."""

from __future__ import annotations

import socket
from pathlib import Path

from overlay_boot.linux import journal


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def test_datagrams_pass_unchanged_up_to_the_burst_then_are_dropped() -> None:
    sender, inside = _pair()
    host, journal_end = _pair()
    relay = journal.Relay(inside, host, rate=0.001, burst=10, tokens=10)
    for i in range(30):
        sender.send(b"<13>tag[%d]: line %d" % (i, i))
    relay.pump()
    assert _drain(journal_end) == [b"<13>tag[%d]: line %d" % (i, i) for i in range(10)]
    assert relay.dropped == 0 and relay.reported > 0  # reported (a warning) and reset


def test_a_gone_journal_drops_lines_and_pid1_goes_on() -> None:
    sender, inside = _pair()
    host, journal_end = _pair()
    journal_end.close()
    relay = journal.Relay(inside, host)
    sender.send(b"<13>x: y")
    relay.pump()  # no exception: PID 1 must never die of its relay


def test_bind_inside_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "run/systemd/journal/dev-log"
    first = journal.bind_inside(str(path))
    first.close()  # the file stays, as after an earlier run with /run in UPPER
    second = journal.bind_inside(str(path))
    try:
        assert path.stat().st_mode & 0o777 == 0o666
    finally:
        second.close()
