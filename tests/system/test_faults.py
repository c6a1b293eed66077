"""Faults under a really booted systemd (the box): after each, the state systemd reports is
true, nothing is left, and the next `systemctl start` works.

kill -9 of the supervisor during the start and of the subhost's PID 1 while running, a stop
during the start, and a reboot (poweroff + boot of the box) with subhosts enabled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import record
from tests.subhostkit import Gate

from .box import SystemdBox
from .test_units import REPO, Subhosts

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    systemd_box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    systemd_box.run("systemctl", "daemon-reload")
    yield systemd_box


@pytest.fixture
def subhosts(box: SystemdBox) -> Iterator[Subhosts]:
    made = Subhosts(box)
    yield made
    for name in made.names:
        box.run("systemctl", "stop", made.unit(name), check=False)
        box.run("systemctl", "reset-failed", made.unit(name), check=False)
    for name in made.names:
        assert made.leftovers(name) == []


@pytest.fixture
def gate(box: SystemdBox) -> Iterator[Gate]:
    g = Gate(box.scratch / f"gate-{time.monotonic_ns()}")
    try:
        yield g
    finally:
        g.reset()


def wait_state(subhosts: Subhosts, name: str, wanted: tuple[str, ...], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (state := subhosts.state(name)) not in wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return state


def gated(subhosts: Subhosts, gate: Gate) -> str:
    name, _ = subhosts.make(
        f"PREMOUNT={gate.path('premount')}\nSTART={gate.path('service')}\n"
        f"SHARE={gate.dir}\nCABLES= =\n")
    subhosts.box.run("systemctl", "daemon-reload")
    return name


def restart_works(box: SystemdBox, subhosts: Subhosts, name: str) -> None:
    unit = subhosts.unit(name)
    box.run("systemctl", "reset-failed", unit, check=False)
    box.run("systemctl", "start", unit, timeout=60)
    assert subhosts.state(name) == "active"
    assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
    box.run("systemctl", "stop", unit, timeout=60)
    assert subhosts.state(name) == "inactive"
    assert subhosts.leftovers(name) == []


@pytest.mark.parametrize("stage", ("premount", "service"))
def test_kill_9_of_the_supervisor_while_starting(box: SystemdBox, subhosts: Subhosts,
                                                 gate: Gate, stage: str) -> None:
    name = gated(subhosts, gate)
    unit = subhosts.unit(name)
    gate.block(stage)
    box.run("systemctl", "start", "--no-block", unit)
    gate.wait(stage)
    assert subhosts.state(name) == "activating"
    main_pid = box.run("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
    box.run("kill", "-9", main_pid)
    state = wait_state(subhosts, name, ("failed", "inactive"))
    left = subhosts.leftovers(name)
    record("fault", f"systemd: kill -9 of the supervisor while starting ({stage})",
           state=state, leaks=left)
    assert state == "failed"
    assert left == []
    gate.reset()
    restart_works(box, subhosts, name)


def test_kill_9_of_pid1_under_systemd(box: SystemdBox, subhosts: Subhosts) -> None:
    name, _ = subhosts.make("START=none\nCABLES= =\n")
    box.run("systemctl", "daemon-reload")
    unit = subhosts.unit(name)
    box.run("systemctl", "start", unit)
    leader = json.loads(box.run("cat", f"/run/overlay-boot/{name}.json").stdout)["leader_pid"]
    box.run("kill", "-9", str(leader))
    # PID 1 of a subhost killed is a crash of the subhost: the unit must not stay "active".
    state = wait_state(subhosts, name, ("failed", "inactive"))
    left = subhosts.leftovers(name)
    record("fault", "systemd: kill -9 of the subhost's PID 1", state=state, leaks=left)
    assert state == "failed", state
    assert left == []
    # What PID 1 could not remove was removed by the unit started on the failure.
    assert "Deactivated successfully" in box.journal(f"overlay-boot-cleanup@{name}.service",
                                                     "Deactivated successfully")
    restart_works(box, subhosts, name)


def test_stop_during_start_under_systemd(box: SystemdBox, subhosts: Subhosts,
                                         gate: Gate) -> None:
    name = gated(subhosts, gate)
    unit = subhosts.unit(name)
    gate.block("service")
    box.run("systemctl", "start", "--no-block", unit)
    gate.wait("service")
    began = time.monotonic()
    box.run("systemctl", "stop", unit, timeout=60)
    took = time.monotonic() - began
    state = subhosts.state(name)
    left = subhosts.leftovers(name)
    record("fault", "systemd: stop during the start", state=state, seconds=round(took, 2),
           leaks=left)
    assert state in ("inactive", "failed")
    assert left == []
    # PID 1 gives a start script that is running when the stop comes its stop timeout (30 s)
    # before killing it; the unit's TimeoutStopSec= (2 min) must not be what ends it.
    assert took < 45, took
    gate.reset()
    restart_works(box, subhosts, name)


def test_reboot_with_subhosts_enabled(new_box: SystemdBox) -> None:
    new_box.boot()
    new_box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    made = Subhosts(new_box)
    names = [made.make("START=none\nCABLES= =\n")[0] for _ in range(3)]
    new_box.run("systemctl", "daemon-reload")
    new_box.run("systemctl", "enable", "--now", *[made.unit(n) for n in names], timeout=60)
    assert [made.state(n) for n in names] == ["active"] * 3
    for cycle in range(2):
        new_box.poweroff()
        host_left = new_box.leftovers()
        assert host_left == [], host_left
        new_box.boot()
        for name in names:
            assert _wait_active(made, name), new_box.journal(made.unit(name))
            assert new_box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
        # What the shutdown left in the box's /run is gone with its tmpfs; nothing stale in
        # the persistent state (a stale lock or netns would have failed the start).
        record("fault", f"reboot of the booted systemd with subhosts enabled (#{cycle + 1})",
               leaks=host_left)
    new_box.run("systemctl", "disable", "--now", *[made.unit(n) for n in names], timeout=60)
    for name in names:
        assert made.leftovers(name) == []


def _wait_active(made: Subhosts, name: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while made.state(name) != "active":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_scratch_is_shared(box: SystemdBox) -> None:
    """The gates live on the box's scratch directory, seen at the same path inside."""
    probe = box.scratch / "probe"
    probe.write_text("x")
    assert box.run("cat", str(probe)).stdout == "x"
    assert Path(box.scratch).is_dir()
