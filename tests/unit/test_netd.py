"""The cable service's request format: what net.py's client sends is what netd.py checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from overlay_boot import net, netd
from overlay_boot.config import Cable, Vlan

REPO = Path(__file__).resolve().parents[2]


def test_checked_fields_are_the_dataclass_fields() -> None:
    assert set(netd._CABLE_FIELDS) == {f.name for f in fields(Cable)}
    assert set(netd._VLAN_FIELDS) == {f.name for f in fields(Vlan)}


def test_request_carries_every_field_and_rebuilds() -> None:
    cables = [Cable(0, "s0", "eth0", "br0", "02:00:00:00:00:01", 4),
              Cable(1, "s1", "eth1", None, None, None)]
    vlans = [Vlan(0, 7, "s0.7", "eth0.7", None, 5)]
    request = json.loads(net.encode_request("s", cables, vlans))
    assert request["netns"] == "s"
    assert [Cable(**netd._fields(c, netd._CABLE_FIELDS, "cable"))
            for c in request["cables"]] == cables
    assert [Vlan(**netd._fields(v, netd._VLAN_FIELDS, "VLAN"))
            for v in request["vlans"]] == vlans


def test_importing_the_client_does_not_import_pyroute2() -> None:
    code = ("import sys; from overlay_boot import net; "
            "print(sorted(m for m in sys.modules if m.startswith(('pyroute2', 'asyncio'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    assert out.strip() == "[]"
