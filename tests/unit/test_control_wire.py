"""The control socket's wire format (overlay_boot/control_wire.py): every message round-trips
through its encoder and decoder, over a real socket pair where descriptors ride along."""

from __future__ import annotations

import json
import os
import socket

import pytest

from overlay_boot import control_wire as wire


def test_run_request_round_trip_with_descriptors() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        request = wire.run_request(["sh", "-c", "x"], {"A": "1"}, "/tmp", True, tty=False)
        wire.send_message(a, request, [r, w, r])
        message, fds, flags = wire.receive_message(b)
        assert not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) and len(fds) == 3
        for fd in fds:
            assert not os.get_inheritable(fd)
            os.close(fd)
        assert wire.parse_request(message) == {"op": "run", "argv": ["sh", "-c", "x"],
                                               "env": {"A": "1"}, "cwd": "/tmp",
                                               "login": True, "tty": False}
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


def test_tty_request_clamps_and_checks_the_size() -> None:
    request = wire.run_request([], None, None, False, tty=True, rows=0, cols=70000)
    assert (request["rows"], request["cols"]) == (1, 65535)
    parsed = wire.parse_request(json.dumps(request).encode())
    assert (parsed["rows"], parsed["cols"]) == (1, 65535)
    with pytest.raises(ValueError, match="rows"):
        wire.parse_request(json.dumps(dict(request, rows=70000)).encode())


@pytest.mark.parametrize("bad, error", [
    ({"op": "nope"}, "unknown request"),
    ([1], "unknown request"),
    ({"op": "run", "argv": "sh"}, "argv"),
    ({"op": "run", "argv": ["a\0b"]}, "argv"),
    ({"op": "run", "env": {"A=B": "x"}}, "env"),
    ({"op": "run", "cwd": "relative"}, "cwd"),
])
def test_bad_requests_are_refused(bad: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        wire.parse_request(json.dumps(bad).encode())


def test_modules_request() -> None:
    assert wire.parse_request(b'{"op": "modules"}') == {"op": "modules"}


def test_signal_and_exit_round_trip() -> None:
    assert wire.parse_signal(wire.signal_message(15)) == 15
    assert wire.parse_signal(b'{"exit": 1}') is None
    assert wire.parse_exit(json.dumps(wire.exit_message(3 << 8)).encode()) == 3
    assert wire.parse_exit(json.dumps(wire.exit_message(9)).encode()) == 128 + 9
    assert wire.parse_exit(b"junk") is None
