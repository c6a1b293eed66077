"""Object paths and cable ends of the D-Bus control plane (overlay_boot.bus.names)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from overlay_boot.bus.names import SUBHOST_PREFIX, escape_label, subhost_path


def unescape_label(label: str) -> str:
    """The inverse of `escape_label` (only the tests need it: it shows no two NAMEs share a
    path)."""
    if label == "_":
        return ""
    data = bytearray()
    i = 0
    while i < len(label):
        if label[i] == "_":
            data.append(int(label[i + 1:i + 3], 16))
            i += 3
        else:
            data.append(ord(label[i]))
            i += 1
    return data.decode("utf-8", "replace")


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
