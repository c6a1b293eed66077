"""The status pipe's wire format (overlay_boot/status_wire.py): every message round-trips."""

from __future__ import annotations

import pytest

from overlay_boot import status_wire as wire


@pytest.mark.parametrize("line, parsed", [
    (wire.status("starting web"), ("STATUS", "starting web", "")),
    (wire.status("two\nlines"), ("STATUS", "two lines", "")),
    (wire.service("web", "started"), ("SERVICE", "web", "started")),
    (wire.ready(), ("READY", "", "")),
    (wire.error("mount failed:\n  /x"), ("ERROR", "mount failed: /x", "")),
])
def test_round_trip(line: str, parsed: tuple[str, str, str]) -> None:
    encoded = wire.encode(line)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert wire.parse(encoded[:-1].decode()) == parsed


@pytest.mark.parametrize("line", ["READY now", "HELLO", "", "status x"])
def test_anything_else_is_unknown(line: str) -> None:
    assert wire.parse(line) == ("", line, "")

