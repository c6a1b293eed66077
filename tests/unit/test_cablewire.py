"""The cable service's wire format (cablewire.py): what the client encodes is what the service
decodes, field for field, with the fields read from config.Cable and config.Vlan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overlay_boot import cablewire
from overlay_boot.cablewire import BadRequest, Record
from overlay_boot.config import Cable, Vlan
from overlay_boot.record import Record as Plain
from overlay_boot.record import fields

REPO = Path(__file__).resolve().parents[2]
CABLES = [Cable(0, "s0", "eth0", "br0", "02:00:00:00:00:01", 4),
          Cable(1, "s1", "eth1", None, None, None)]
VLANS = [Vlan(0, 7, "s0.7", "eth0.7", None, 5), Vlan(1, 4094, "s1.4094", "eth1.4094", "br1")]


def test_records_have_the_config_records_fields() -> None:
    assert tuple(cablewire.CABLE.fields) == fields(Cable)
    assert tuple(cablewire.VLAN.fields) == fields(Vlan)
    assert cablewire.CABLE.fields["bridge"] == (str, type(None))
    assert cablewire.VLAN.fields["tag"] == (int,)


def test_request_round_trip() -> None:
    data = cablewire.encode_request("s", CABLES, VLANS)
    assert cablewire.decode_request(data) == ("s", CABLES, VLANS)
    request = json.loads(data)
    assert request["cables"][0] == {"index": 0, "host_if": "s0", "sub_if": "eth0",
                                    "bridge": "br0", "mac": "02:00:00:00:00:01", "line": 4}


def test_a_new_field_of_cable_is_carried() -> None:
    """Cable with one more field, as a later version might have: encoded, checked and
    rebuilt with no change to cablewire."""
    class WiderCable(Cable):
        mtu: int | None = None

    wider = WiderCable
    record = Record(wider, "cable")
    cable = wider(0, "s0", "eth0", None, None, 3, 9000)
    encoded = json.loads(json.dumps(record.encode(cable)))
    assert encoded["mtu"] == 9000
    assert record.decode(encoded) == cable
    with pytest.raises(BadRequest, match="cable field mtu: unexpected str"):
        record.decode({**encoded, "mtu": "9000"})
    with pytest.raises(BadRequest, match="exactly index, host_if, sub_if, bridge, mac, line, mtu"):
        record.decode({k: v for k, v in encoded.items() if k != "mtu"})


def test_a_field_json_cannot_carry_is_refused_at_once() -> None:
    class WithPath(Plain):
        where: Path

    with pytest.raises(TypeError, match="WithPath.where"):
        Record(WithPath, "thing")


@pytest.mark.parametrize(("request_", "message"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "expected an object"),
    (json.dumps({"netns": "s", "cables": []}).encode(), "expected an object"),
    (json.dumps({"netns": "../etc", "cables": [], "vlans": []}).encode(),
     "bad network namespace"),
    (json.dumps({"netns": "s", "cables": {}, "vlans": []}).encode(), '"cables" must be a list'),
    (json.dumps({"netns": "s", "cables": [{"index": 0}], "vlans": []}).encode(),
     "a cable must be an object with exactly"),
    (json.dumps({"netns": "s", "cables": [{**vars(CABLES[1]), "index": True}],
                 "vlans": []}).encode(), "cable field index: unexpected bool"),
    (json.dumps({"netns": "s", "cables": [], "vlans": [{"tag": 5}]}).encode(),
     "a VLAN must be an object with exactly"),
])
def test_bad_requests(request_: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        cablewire.decode_request(request_)


def test_answers() -> None:
    assert cablewire.decode_answer(cablewire.encode_answer(None)) is None
    assert cablewire.decode_answer(cablewire.encode_answer("no bridge")) == "no bridge"
    assert cablewire.decode_answer(b'{"ok": false}') == "the cable service failed"
    for nonsense in (b"", b"[]", b'{"error": "x"}', b"\xff"):
        with pytest.raises(ValueError, match="answered nonsense"):
            cablewire.decode_answer(nonsense)


def test_the_supervisor_side_imports_neither_pyroute2_nor_the_wire_format() -> None:
    """What the supervisor imports for plain cables: no pyroute2, nothing of the service's side."""
    code = ("import sys; from overlay_boot import net; "
            "print(sorted(m for m in sys.modules if m.startswith(('pyroute2', 'asyncio', "
            "'overlay_boot.cablewire', 'overlay_boot.pyroute_cables', "
            "'overlay_boot.netd', 'typing', 'threading'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    assert out.strip() == "[]"
