"""Cleanup removes only what overlay-boot made (security review M2), on the real kernel: a
network namespace or an interface with a subhost's name that someone else made survives
`overlay-stop NAME`, `overlay-stop --cleanup NAME` and a start, which is refused with a message
naming the object and what to do.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.subhostkit import Lab

pytestmark = pytest.mark.root

RUN_DIR = Path("/run/overlay-boot")


@contextlib.contextmanager
def _foreign_netns(name: str) -> Iterator[None]:
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name",
                        "d1"], check=True)
        yield
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _netns_listed(name: str) -> bool:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return name in out.split()


def test_a_foreign_netns_survives_stop_and_refuses_a_start(lab: Lab) -> None:
    conf = lab.config("START=none\n")
    name = conf.stem
    with _foreign_netns(name):
        stopped = lab.stop(name)
        assert stopped.returncode != 0  # not running
        assert _netns_listed(name), stopped.stderr
        assert lab.cleanup(name).returncode == 0
        assert _netns_listed(name)
        started = lab.start(conf)
        assert started.returncode != 0
        assert f"network namespace {name}" in started.stderr
        assert f"ip netns delete {name}" in started.stderr
        assert _netns_listed(name)
        links = subprocess.run(["ip", "-n", name, "-o", "link"], capture_output=True,
                               text=True).stdout
        assert "d0" in links
        assert not (RUN_DIR / f"{name}.netns").exists()
        assert not (RUN_DIR / f"{name}.json").exists()
    assert lab.start(conf).returncode == 0  # once it is gone
    assert lab.stop(name).returncode == 0
    assert not (RUN_DIR / f"{name}.netns").exists()


def test_a_foreign_veth_with_a_cable_name_survives_a_start(lab: Lab) -> None:
    conf = lab.config("START=none\nCABLES= =\n")
    name = conf.stem
    subprocess.run(["ip", "link", "add", f"{name}0", "type", "veth", "peer", "name",
                    f"{name}p"], check=True)
    try:
        started = lab.start(conf)
        assert started.returncode != 0
        assert f"interface {name}0 exists" in started.stderr
        assert Path(f"/sys/class/net/{name}0").exists()
        assert Path(f"/sys/class/net/{name}p").exists()
        assert not _netns_listed(name)
        assert lab.cleanup(name).returncode == 0
        assert Path(f"/sys/class/net/{name}0").exists()
    finally:
        subprocess.run(["ip", "link", "delete", f"{name}0"], check=False)
    assert lab.start(conf).returncode == 0
    alias = Path(f"/sys/class/net/{name}0/ifalias").read_text().strip()
    assert alias == f"overlay-boot:{name}"
    assert lab.stop(name).returncode == 0
