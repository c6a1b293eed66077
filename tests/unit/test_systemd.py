"""The pystemd adapter's pure parts: sd_notify over a real socket, under both interpreters.

Starting and stopping units needs a booted systemd: tests/system/ does that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot import systemd

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield s
    finally:
        s.close()


def test_notify_sends_the_datagram(notify_socket: socket.socket) -> None:
    assert systemd.notify(ready=True, status="Started ssh\nand more")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=Started ssh and more"
    assert systemd.notify(status="Mounting")
    assert notify_socket.recv(4096) == b"STATUS=Mounting"


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"overlay-boot-test-{os.getpid()}-{os.urandom(4).hex()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify(ready=True)
        assert s.recv(4096) == b"READY=1"


def test_notify_is_a_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.notify(ready=True)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not systemd.notify(ready=True)  # never raises
    monkeypatch.setenv("NOTIFY_SOCKET", "relative")
    assert not systemd.notify(ready=True)


def test_notify_with_nothing_to_say(notify_socket: socket.socket) -> None:
    assert not systemd.notify()


CHILD = """
import os, socket, sys
sys.path.insert(0, {repo!r})
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind({path!r})
os.environ["NOTIFY_SOCKET"] = {path!r}
from overlay_boot import systemd
assert systemd.notify(ready=True, status="up")
print(s.recv(4096).decode().replace("\\n", "|"))
print(any(m.startswith("pystemd") for m in sys.modules))
"""


@pytest.mark.parametrize("python", ["/usr/bin/python3", sys.executable])
def test_notify_under_both_interpreters(python: str, tmp_path: Path) -> None:
    """Debian's /usr/bin/python3 (what the units run) and the venv's: no pystemd is loaded."""
    code = CHILD.format(repo=str(REPO), path=str(tmp_path / "n"))
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    assert out[0] == "READY=1|STATUS=up"
    assert out[1] == "False"


def test_importing_the_adapter_loads_no_pystemd() -> None:
    code = "import sys, overlay_boot.systemd; print([m for m in sys.modules if 'pystemd' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_booted_reflects_run_systemd_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERLAY_BOOT_NO_SYSTEMD", raising=False)
    assert systemd.booted() == os.path.isdir("/run/systemd/system")
    monkeypatch.setenv("OVERLAY_BOOT_NO_SYSTEMD", "1")
    assert not systemd.booted()


def test_unit_names_are_checked_before_any_bus_call() -> None:
    for bad in ("", "a/b", "x\n.service"):
        with pytest.raises(systemd.SubhostError):
            systemd.unit_state(bad)
