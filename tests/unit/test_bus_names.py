"""Object paths and cable ends of the D-Bus control plane (overlay_boot.bus.names)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from overlay_boot.bus.names import (
    SUBHOST_PREFIX,
    escape_label,
    name_from_path,
    subhost_end,
    subhost_path,
    unescape_label,
)


def test_escaping_is_sd_bus_s() -> None:
    # the same as `systemd-escape`-like sd_bus_path_encode(): letters stay, the rest _xx,
    # a leading digit too
    assert escape_label("web") == "web"
    assert escape_label("web-1") == "web_2d1"
    assert escape_label("a_b") == "a_5fb"
    assert escape_label("1st") == "_31st"
    assert escape_label("") == "_"
    assert subhost_path("web-1") == f"{SUBHOST_PREFIX}/web_2d1"


@given(st.text())
def test_escaping_round_trips(text: str) -> None:
    label = escape_label(text)
    assert label and all(c.isascii() and (c.isalnum() or c == "_") for c in label)
    assert unescape_label(label) == text.encode("utf-8", "replace").decode("utf-8", "replace")


def test_name_from_path() -> None:
    assert name_from_path(subhost_path("t-x_1")) == "t-x_1"
    for name in ("web.1", "web@1+x", "sübhöst", ".x"):  # NAMEs 1.6.4 took (compat c2)
        assert name_from_path(subhost_path(name)) == name
    assert name_from_path(SUBHOST_PREFIX) is None
    assert name_from_path(SUBHOST_PREFIX + "/a/b") is None
    assert name_from_path("/org/other/a") is None


def test_subhost_end_of_a_host_end() -> None:
    assert subhost_end("web", "web0") == "eth0"
    assert subhost_end("web", "web12") == "eth12"
    assert subhost_end("web", "web1.100") == "eth1.100"
    assert subhost_end("web", "other0") == ""
