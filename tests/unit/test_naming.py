"""Subhost names, interface names and unit names."""

from __future__ import annotations

import pytest

from overlay_boot import naming


@pytest.mark.parametrize("name", ["a", "xmpl", "mta-1", "A_b-C", "0", "abcdefghijkl", "_x"])
def test_valid_names(name: str) -> None:
    assert naming.is_valid_name(name)
    assert naming.name_problem(name) is None


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"),
    ("abcdefghijklm", "longer than 12"),
    ("-x", "must not start with '-'"),
    ("my.host", "may only contain"),
    ("a/b", "may only contain"),
    ("a b", "may only contain"),
    ("café", "may only contain"),
    ("..", "may only contain"),
])
def test_invalid_names(name: str, why: str) -> None:
    assert not naming.is_valid_name(name)
    assert why in (naming.name_problem(name) or "")


def test_interface_names() -> None:
    assert naming.host_if("xmpl", 0) == "xmpl0"
    assert naming.sub_if(3) == "eth3"
    assert naming.host_vlan_if("xmpl", 0, 302) == "xmpl0.302"
    assert naming.sub_vlan_if(1, 5) == "eth1.5"
    assert naming.IFNAME_MAX == 15


@pytest.mark.parametrize(("ifname", "ok"), [
    ("br0", True), ("abcdefghijklmno", True), ("abcdefghijklmnop", False), ("", False),
    (".", False), ("..", False), ("a/b", False), ("a:b", False), ("a b", False),
    ("a\tb", False), ("x.302", True),
])
def test_ifname_rules(ifname: str, ok: bool) -> None:
    assert naming.is_valid_ifname(ifname) is ok


def test_unit_names_round_trip() -> None:
    assert naming.unit_name("mta") == "overlay-boot@mta.service"
    assert naming.instance_from_unit("overlay-boot@mta.service") == "mta"
    assert naming.instance_from_unit("overlay-boot@.service") is None
    assert naming.instance_from_unit("other@mta.service") is None
    assert naming.instance_from_unit("overlay-boot@mta.socket") is None
    assert naming.instance_from_unit("overlay-boot@..service") is None


@pytest.mark.parametrize(("name", "safe"), [
    ("mta", True), ("a-b_c", True),
    ("", False), ("..", False), ("../etc", False), ("a/b", False), ("/etc/passwd", False),
    (".", False), ("x.conf", False), ("-x", False), ("a\\x2fb", False), ("a" * 13, False),
    ("a\0b", False), ("a\nb", False),
])
def test_is_safe_instance(name: str, safe: bool) -> None:
    assert naming.is_safe_instance(name) is safe
