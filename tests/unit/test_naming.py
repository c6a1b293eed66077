"""Subhost names, interface names and unit names."""

from __future__ import annotations

import pytest

from overlay_boot import naming


@pytest.mark.parametrize("name", [
    "a", "xmpl", "mta-1", "A_b-C", "0", "abcdefghijkl", "_x",
    # 1.6.4 took these (c2): the kernel and every escaped use can carry them
    "web.1", "mail.example", "web@1", "a+b", "sübhöst", ".x", "abcdefghijklm", "a:b", "x" * 64,
    "." + "x" * 63, "a" + ":" * 63,
])
def test_valid_names(name: str) -> None:
    assert naming.is_valid_name(name)
    assert naming.name_problem(name) is None


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"),
    ("x" * 65, "longer than 64 bytes"),
    ("é" * 33, "longer than 64 bytes"),
    ("-x", "must not start with '-'"),
    ("a/b", "contains '/'"),
    ("a b", "contains ' '"),
    ("a\x1bb", "control characters"),
    (".", "cannot name a network namespace"),
    ("..", "cannot name a network namespace"),
    ("a'b", "quotes or backslashes"),
    ("a\\b", "quotes or backslashes"),
    ("web*", "glob"),
    ("caf\udce9", "not UTF-8"),
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
    ("a\tb", False), ("x.302", True), ("web.10", True), ("sübhöst0", True),
    ("ééééééé0", True), ("ééééééé01", False),  # 15 and 16 bytes: the kernel counts bytes
    ("à0", False),  # UTF-8 c3 a0: the kernel's isspace() is true for 0xa0
])
def test_ifname_rules(ifname: str, ok: bool) -> None:
    assert (naming.ifname_problem(ifname) is None) is ok


def test_unit_names_round_trip() -> None:
    assert naming.unit_name("mta") == "overlay-boot@mta.service"
    assert naming.name_from_argument("mta") == "mta"
    assert naming.name_from_argument("") is None
    assert naming.name_from_argument("..") is None


@pytest.mark.parametrize(("name", "instance"), [
    ("web-1", "web-1"),  # '-' kept: existing units keep their names
    ("web.1", "web.1"), ("a:b_c", "a:b_c"),
    ("web+1", "web\\x2b1"), ("web@1", "web\\x401"),
    (".x", "\\x2ex"),  # a leading dot is escaped, as systemd-escape does
    ("sü", "s\\xc3\\xbc"),
])
def test_unit_name_escaping(name: str, instance: str) -> None:
    assert naming.escape_instance(name) == instance
    assert naming.unit_name(name) == f"overlay-boot@{instance}.service"
    assert naming.unescape_instance(instance) == name
    assert naming.name_from_argument(instance) == name
    assert naming.name_from_argument(name) == name


def test_unit_name_matches_systemd_escape() -> None:
    """Where systemd-escape and we agree (everything but '-'), the unit names are the same."""
    import shutil
    import subprocess

    tool = shutil.which("systemd-escape")
    assert tool, "systemd-escape (package systemd) is needed"
    for name in ("web.1", "web+1", "sübhöst", "a:b_c", ".x", "web@1"):
        out = subprocess.run([tool, name], capture_output=True, text=True, check=True).stdout
        assert naming.escape_instance(name) == out.strip(), name


def test_other_spellings_are_not_units() -> None:
    # a second spelling of one NAME would be a second unit for one subhost
    assert naming.unescape_instance("web\\x2d1") is None
    assert naming.unescape_instance("w\\x65b") is None
    assert naming.unescape_instance("a\\x2fb") == "a/b"  # decodes, but is no NAME:
    assert naming.name_from_argument("a\\x2fb") is None


@pytest.mark.parametrize(("name", "ok"), [
    ("web", True), ("web-1", True), ("mail.example", True), ("a1.b2.c3", True),
    ("web_1", False), ("web+1", False), ("-x", False), ("x-", False), (".x", False),
    ("a..b", False), ("sübhöst", False), ("x" * 65, False),
])
def test_machine_names(name: str, ok: bool) -> None:
    assert naming.machine_name_ok(name) is ok


@pytest.mark.parametrize(("name", "safe"), [
    ("mta", True), ("a-b_c", True), ("web.1", True), ("x.conf", True), ("a" * 13, True),
    ("", False), ("..", False), ("../etc", False), ("a/b", False), ("/etc/passwd", False),
    (".", False), ("-x", False), ("a\\x2fb", False), ("a" * 65, False),
    ("a\0b", False), ("a\nb", False),
])
def test_instance_names_select_no_file_outside(name: str, safe: bool) -> None:
    assert naming.is_valid_name(name) is safe


def test_subhost_end_of_a_host_end() -> None:
    assert naming.subhost_end("web", "web0") == "eth0"
    assert naming.subhost_end("web", "web12") == "eth12"
    assert naming.subhost_end("web", "web1.100") == "eth1.100"
    assert naming.subhost_end("web", "other0") == ""
    assert naming.subhost_end("web", naming.host_vlan_if("web", 3, 7)) == naming.sub_vlan_if(3, 7)


@pytest.mark.parametrize(("file_name", "name"), [
    ("mta.conf", "mta"), ("my.host.conf", "my.host"), ("noext", "noext"), (".conf", ".conf"),
    ("x.conf.conf", "x.conf"), ("x.confx", "x.confx"),
])
def test_name_from_file(file_name: str, name: str) -> None:
    assert naming.name_from_file(file_name) == name
