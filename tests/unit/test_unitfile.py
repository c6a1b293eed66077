"""Unit-file escaping and quoting, checked against systemd's own tools."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay_boot import unitfile


@pytest.mark.parametrize("path", ["/", "/sys/subsystem/net/devices/br-lan", "/a//b/./c/",
                                  "/.hidden/x", "/x y/ü", "/a\\b", "/a:b_c.d"])
def test_escape_path_like_systemd_escape(path: str) -> None:
    expected = subprocess.run(["systemd-escape", "--path", path], capture_output=True,
                              text=True, check=True).stdout.strip()
    assert unitfile.escape_path(path) == expected


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
               max_size=15).filter(lambda s: "/" not in s and s not in (".", "..")))
def test_escape_path_property(name: str) -> None:
    path = "/sys/subsystem/net/devices/" + name
    expected = subprocess.run(["systemd-escape", "--path", "--", path], capture_output=True,
                              text=True, check=True).stdout.strip()
    assert unitfile.escape_path(path) == expected


def test_escape_path_refuses_what_systemd_refuses() -> None:
    for bad in ("relative", "/a/../b"):
        with pytest.raises(ValueError):
            unitfile.escape_path(bad)


def test_net_device_unit() -> None:
    assert unitfile.net_device_unit("br-lan") == r"sys-subsystem-net-devices-br\x2dlan.device"
    assert unitfile.net_device_unit("br0") == "sys-subsystem-net-devices-br0.device"


def test_quote() -> None:
    assert unitfile.quote("/srv/web") == "/srv/web"
    assert unitfile.quote("A=/etc/x.conf") == "A=/etc/x.conf"
    assert unitfile.quote("/a b") == '"/a b"'
    assert unitfile.quote("/50%") == "/50%%"
    assert unitfile.quote('/a"b\\c') == '"/a\\"b\\\\c"'
    assert unitfile.quote("") == '""'
    with pytest.raises(ValueError):
        unitfile.quote("/a\nb")
