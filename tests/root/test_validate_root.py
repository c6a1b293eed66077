"""validate.py against real interfaces: a bridge passes, other interfaces do not."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot.config import load_config
from overlay_boot.validate import check_host, vlan_supported

pytestmark = pytest.mark.root


@pytest.fixture
def links() -> Iterator[list[str]]:
    made: list[str] = []
    try:
        yield made
    finally:
        for name in made:
            subprocess.run(["ip", "link", "del", name], check=False)


def test_bridges(tmp_path: Path, links: list[str]) -> None:
    br, dummy = f"t{secrets.token_hex(3)}b", f"t{secrets.token_hex(3)}d"
    subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)
    links.append(br)
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name", dummy + "p"],
                   check=True)
    links.append(dummy)
    for d in ("live", "root", "work"):
        (tmp_path / d).mkdir()
    conf = tmp_path / "v.conf"
    conf.write_text(f"BASE=.\nCABLES={br}= {dummy}= tnone{secrets.token_hex(2)}=\n")
    problems = check_host(load_config(conf))
    assert [p.variable for p in problems] == ["CABLES", "CABLES"]
    assert f"{dummy} exists but is not a bridge" in problems[0].message
    assert "does not exist" in problems[1].message


def _vlan_config(tmp_path: Path) -> Path:
    for d in ("live", "root", "work"):
        (tmp_path / d).mkdir()
    conf = tmp_path / "v.conf"
    conf.write_text("BASE=.\nCABLES= = =.5\n")
    return conf


@pytest.mark.needs("no-8021q")
def test_vlan_refused_without_kernel_support(tmp_path: Path) -> None:
    """A VLAN cable is refused up front where the kernel has no 802.1Q."""
    assert not vlan_supported()
    problems = check_host(load_config(_vlan_config(tmp_path)))
    assert [p.variable for p in problems] == ["CABLES"]
    assert "802.1Q" in problems[0].message
    assert problems[0].line == 2


@pytest.mark.needs("8021q")
def test_vlan_accepted_with_kernel_support(tmp_path: Path) -> None:
    assert vlan_supported()
    assert check_host(load_config(_vlan_config(tmp_path))) == []


def _messages(conf: Path) -> list[str]:
    return [str(p) for p in check_host(load_config(conf))]


def test_permissions_of_file_symlink_and_directories(tmp_path: Path) -> None:
    (tmp_path / "opt").mkdir()
    for d in ("live", "root", "work"):
        (tmp_path / "opt" / d).mkdir()
    real = tmp_path / "opt" / "v.conf"
    real.write_text(f"BASE={tmp_path / 'opt'}\n")  # (BASE=. would be the link's directory)
    real.chmod(0o600)
    links = tmp_path / "etc"
    links.mkdir()
    (links / "v.conf").symlink_to(real)
    assert _messages(links / "v.conf") == []
    links.chmod(0o777)  # anyone could replace the symlink
    probs = _messages(links / "v.conf")
    assert probs == [f"{links / 'v.conf'}: directory {links} is writable by group and others "
                     "(mode 0777); '!' values run as root, so only root may write it"]
    links.chmod(0o755)
    real.chmod(0o620)
    assert any(f"config file {real} is writable by group (mode 0620)" in p
               for p in _messages(links / "v.conf"))
    real.chmod(0o644)
    os.chown(real, 65534, -1)
    assert any(f"config file {real} is owned by uid 65534, not root" in p
               for p in _messages(links / "v.conf"))
