"""overlay-stop's own weight: what a stop from the command line loads (every module is time
on the path of `overlay-stop CONF`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What the usual path (a config named, the unit asked about, the supervisor signalled)
# imports, then what only removing leftovers needs, which must not come with it.
CHILD = """
import sys
sys.path.insert(0, {repo!r})
import overlay_boot.cli.stop
from overlay_boot import config, naming, state, systemd
print(" ".join(sorted(sys.modules)))
"""
CLEANUP_ONLY = ("overlay_boot.cleanup", "overlay_boot.netns", "overlay_boot.linux.libc",
                "ctypes", "subprocess")


@pytest.mark.parametrize("python", ["/usr/bin/python3", sys.executable])
def test_a_stop_loads_nothing_of_the_cleanup(python: str) -> None:
    out = subprocess.run([python, "-I", "-c", CHILD.format(repo=str(REPO))],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    loaded = set(out.split())
    assert "overlay_boot.cli.stop" in loaded
    assert loaded.isdisjoint(CLEANUP_ONLY), sorted(loaded.intersection(CLEANUP_ONLY))
