"""The subhost's ``/dev/log``, relayed by PID 1 to the host's journal.

A datagram sent to the host's syslog socket is attributed to its sender's unit by the cgroup
journald looks up for the sender's PID; a ``logger`` or cron job that has already exited by
then is lost from ``journalctl -u overlay-boot@NAME``. So the subhost's ``/dev/log`` is a
socket of PID 1's own: PID 1 — alive as long as the unit — passes each datagram on unchanged
(journald still reads the sender's identifier, PID and priority from the syslog header), and
bounds the rate, so that one subhost cannot flood the host's journal.

The socket to the host's journal is connected before ``pivot_root`` (afterwards the host's
path is gone); the subhost's socket is bound after it, inside the subhost's own tree.
"""

from __future__ import annotations

import os
import socket
import time

from overlay_boot import log

INSIDE_PATH = "/run/systemd/journal/dev-log"
RATE = 1000.0  # datagrams per second, on average
BURST = 10000  # datagrams at once (journald's own per-service burst is 10000 per 30 s)
_MAX_DATAGRAM = 65536
_BATCH = 256  # datagrams per wake-up, so that other work of PID 1 is never starved


def connect_host(path: str) -> socket.socket | None:
    """A datagram socket connected to the host's journal syslog socket (None without one)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def bind_inside(path: str = INSIDE_PATH) -> socket.socket:
    """The subhost's syslog socket at PATH (in the subhost's own tree, after pivot_root)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        os.unlink(path)  # a socket left by an earlier run (RAM_SIZE=none: /run is in UPPER)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)  # every user's programs log
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Relay:
    """Pass datagrams from ``inside`` to ``host``, at most RATE a second (BURST at once).

    A plain class: PID 1 holds it, and ``dataclasses`` alone costs PID 1 more than a MiB."""

    __slots__ = ("inside", "host", "rate", "burst", "tokens", "refilled", "dropped", "reported")

    def __init__(self, inside: socket.socket, host: socket.socket, rate: float = RATE,
                 burst: float = BURST, tokens: float = BURST) -> None:
        self.inside = inside
        self.host = host
        self.rate = rate
        self.burst = burst
        self.tokens = tokens
        self.refilled = 0.0
        self.dropped = 0
        self.reported = 0.0

    def fileno(self) -> int:
        return self.inside.fileno()

    def pump(self) -> None:
        """Relay what is waiting (up to a batch); called when ``inside`` is readable."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        for _ in range(_BATCH):
            try:
                data = self.inside.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if self.tokens < 1:
                self.dropped += 1
                continue
            self.tokens -= 1
            try:
                self.host.send(data)
            except OSError:  # full (EAGAIN, ENOBUFS) or gone: this line is lost, PID 1 goes on
                self.dropped += 1
        if self.dropped and now - self.reported >= 10:
            log.warning(f"{self.dropped} log lines from inside dropped (more than "
                        f"{self.rate:g} a second, or the journal was busy)")
            self.dropped, self.reported = 0, now
