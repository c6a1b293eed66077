"""Faults injected into real subhosts on the real kernel (CLI path, no systemd).

Each test breaks something at a known point — `kill -9` of the supervisor at every stage of the
start and while running, `kill -9` of PID 1, a daemon that ignores SIGTERM, the host end of a
cable deleted, UPPER on a full filesystem, start and stop racing, a stop during the start — and
then checks: the commands say what happened, nothing is left on the host (mounts, netns, links,
processes, runtime files), and the next start works. Stages are hit with `Gate`
(tests/subhostkit.py): hooks that block on a FIFO the test controls.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leaks import command, processes_of, snapshot
from tests.reliability import record
from tests.subhostkit import Gate, Lab, alive, env, kill, wait_dead

pytestmark = pytest.mark.root


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    try:
        yield g
    finally:
        g.reset()


def gated_config(lab: Lab, gate: Gate, extra: str = "") -> Path:
    return lab.config(
        f"PREMOUNT={gate.path('premount')}\nPOSTMOUNT={gate.path('postmount')}\n"
        f"SHARE={gate.dir}\nSTART={gate.path('service')}\nCABLES= =\n{extra}"
    )


def restart_works(lab: Lab, conf: Path, name: str) -> None:
    """The next start after a fault succeeds and the subhost is usable; then stop it."""
    started = lab.start(conf)
    assert started.returncode == 0, started.stderr
    assert lab.go(name, "hostname").stdout.strip() == name
    stopped = lab.stop(name)
    assert stopped.returncode == 0, stopped.stderr


def leftovers_after_crash(lab: Lab, name: str) -> list[str]:
    """What a crash left besides what ARCHITECTURE says may survive a `kill -9` (the netns
    bind and the host cable ends); then `overlay-stop --cleanup` (the unit's ExecStopPost=)
    must remove those too."""
    problems = lab.leftovers(name, timeout=5)
    allowed = ("netns ", "link ", "file /run/netns/")
    found = [p for p in problems if not p.startswith(allowed)
             and not (p.startswith("mount ") and p.split()[2].startswith("/run/netns/"))
             and not p.startswith(f"file /run/overlay-boot/{name}")]
    cleanup = lab.cleanup(name)
    if cleanup.returncode != 0:
        found.append(f"overlay-stop --cleanup failed: {cleanup.stderr.strip()}")
    return found + lab.leftovers(name, timeout=5)


# --- kill -9 of the supervisor at each stage of the start -----------------------------------

STAGES = ("premount", "postmount", "service", "running")


@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_of_the_supervisor(lab: Lab, gate: Gate, stage: str) -> None:
    conf = gated_config(lab, gate)
    name = conf.stem
    if stage != "running":
        gate.block(stage)
    starter = lab.start_async(conf)
    if stage == "running":
        assert starter.wait(timeout=60) == 0, starter.stderr.read()
    else:
        gate.wait(stage)
    rec = lab.record(name)
    kill(rec["supervisor_pid"])
    gate.reset()
    assert wait_dead(rec["leader_pid"]), "PID 1 survived its supervisor"
    if stage != "running":
        # The starting command learns that the start failed and says so.
        assert starter.wait(timeout=30) != 0
        err = starter.stderr.read()
        assert "did not start" in err and "Traceback" not in err, err
    assert processes_of(name) == []
    left = leftovers_after_crash(lab, name)
    record("fault", f"kill -9 of the supervisor ({stage})", leaks=left)
    assert left == [], left
    restart_works(lab, conf, name)  # the next start removes what the crash left


def test_kill_9_of_the_supervisor_as_soon_as_the_netns_exists(lab: Lab) -> None:
    """Between `netns.create` and PID 1 (the cables are being built): polled, not gated."""
    conf = lab.config("START=none\nCABLES= = = =\n")
    name = conf.stem
    for _ in range(3):
        starter = lab.start_async(conf)
        deadline = time.monotonic() + 30
        while not Path(f"/run/netns/{name}").exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        supervisor = _supervisor_of(name)
        assert supervisor is not None
        kill(supervisor)
        assert starter.wait(timeout=30) != 0
        assert processes_of(name) == []
        left = leftovers_after_crash(lab, name)
        record("fault", "kill -9 of the supervisor (netns made, cables building)", leaks=left)
        assert left == [], left
    restart_works(lab, conf, name)


def test_temporary_files_of_a_killed_write_are_cleaned_up(lab: Lab) -> None:
    """A `kill -9` while the netns mark or the runtime record is being written (before its
    rename) leaves NAME.netns-tmp or NAME.tmp: `overlay-stop --cleanup` and the next start and
    stop remove them with what they were to become. (The kill lands there by chance in
    test_kill_9_of_the_supervisor_as_soon_as_the_netns_exists: here on purpose.)"""
    conf = lab.config("START=none\nCABLES= =\n")
    name = conf.stem
    run_dir = Path("/run/overlay-boot")
    run_dir.mkdir(mode=0o755, exist_ok=True)
    temporary = [run_dir / f"{name}.netns-tmp", run_dir / f"{name}.tmp"]
    for path in temporary:
        path.write_text("pending\n")
    assert lab.cleanup(name).returncode == 0
    assert [p for p in temporary if p.exists()] == []
    for path in temporary:
        path.write_text("pending\n")
    started = lab.start(conf)
    assert started.returncode == 0, started.stderr
    assert run_dir.joinpath(f"{name}.netns-tmp").exists() is False  # the start's own check
    stopped = lab.stop(name)
    assert stopped.returncode == 0, stopped.stderr
    assert [p for p in temporary if p.exists()] == []


def _supervisor_of(name: str, timeout: float = 10) -> int | None:
    """The PID holding /run/overlay-boot/NAME.lock (it writes its PID there)."""
    path = Path(f"/run/overlay-boot/{name}.lock")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().split()[0])
        time.sleep(0.001)
    return None


def test_kill_9_of_the_supervisor_while_a_bang_command_runs(lab: Lab, gate: Gate) -> None:
    """During the config's `!` commands (before anything is made): the command must not be
    left running on its own (SPEC §3: nothing survives a `kill -9`)."""
    gate.block("service")
    conf = lab.config(f"START=none\nRAM_SIZE=!{gate.path('service')} && echo 8M\n")
    name = conf.stem
    starter = lab.start_async(conf, "--foreground")
    gate.wait("service")
    command_pid = int((gate.dir / "at-service").read_text())
    kill(starter.pid)
    starter.wait(timeout=10)
    orphan = not wait_dead(command_pid, timeout=3)
    record("fault", "kill -9 of the supervisor (while a ! command runs)",
           leaks=[f"process {command_pid}"] if orphan else [])
    gate.reset()
    assert not orphan, "the `!` command outlived the killed supervisor"
    assert lab.leftovers(name) == []


# --- kill -9 of PID 1, a daemon ignoring SIGTERM ---------------------------------------------

def test_kill_9_of_pid1(lab: Lab) -> None:
    conf = lab.config("START=none\nCABLES= =\n")
    name = conf.stem
    assert lab.start(conf).returncode == 0
    rec = lab.record(name, state="running")
    kill(rec["leader_pid"])
    # The supervisor notices, tears down and exits: nothing left, not even the netns.
    assert wait_dead(rec["supervisor_pid"]), "the supervisor outlived PID 1"
    left = lab.leftovers(name)
    record("fault", "kill -9 of the subhost's PID 1", leaks=left)
    assert left == [], left
    restart_works(lab, conf, name)


def test_daemon_ignoring_sigterm_is_killed_after_the_grace_period(lab: Lab) -> None:
    daemon = lab.scratch / "stubborn"
    daemon.write_text("#!/bin/sh\ncase $1 in start) (trap '' TERM; setsid sh -c "
                      "\"trap '' TERM; while :; do sleep 1; done\" </dev/null >/dev/null 2>&1 &)"
                      ";; esac\nexit 0\n")
    daemon.chmod(0o755)
    conf = lab.config(f"START={daemon}\n")
    name = conf.stem
    assert lab.start(conf).returncode == 0
    inside = lab.go(name, "sh", "-c", "ps -eo pid,args | grep -c 'while :'")
    assert int(inside.stdout.strip() or 0) >= 1, inside
    began = time.monotonic()
    stopped = lab.stop(name)
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped.stderr
    left = lab.leftovers(name)
    record("fault", "a daemon that ignores SIGTERM at stop", seconds=round(took, 2), leaks=left)
    assert 4.5 <= took < 20, took  # the 5 s grace period, then SIGKILL
    assert left == [], left
    assert "SIGKILL" in (lab.scratch / name / "subhost.log").read_text()
    restart_works(lab, conf, name)


# --- the network ---------------------------------------------------------------------------

def test_host_cable_end_deleted_while_running(lab: Lab) -> None:
    conf = lab.config("START=none\nCABLES= = =\n")
    name = conf.stem
    assert lab.start(conf).returncode == 0
    subprocess.run(["ip", "link", "del", f"{name}0"], check=True)
    assert lab.go(name, "true").returncode == 0  # the subhost lives on
    stopped = lab.stop(name)
    assert stopped.returncode == 0, stopped.stderr
    left = lab.leftovers(name)
    record("fault", "host end of a cable deleted while running", leaks=left)
    assert left == [], left
    restart_works(lab, conf, name)


# --- UPPER on a tiny, full filesystem --------------------------------------------------------

def test_upper_on_a_full_filesystem(lab: Lab) -> None:
    """A full UPPER makes the start fail with a clear message (it must write
    /etc/network/interfaces there), leaving nothing; once there is room it starts."""
    name = lab.name()
    base = lab.scratch / name
    base.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tfull", str(base)], check=True)
    lab.before = snapshot()  # with the test's own tmpfs
    try:
        conf = lab.config("START=none\nCABLES= =\n", name=name, base=base)
        filler = base / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        for n in range(1000):  # the inodes too
            try:
                (base / f"i{n}").touch()
            except OSError:
                break
        result = lab.start(conf)
        left = lab.leftovers(name)
        record("fault", "UPPER on a tiny, full filesystem", status=result.returncode,
               leaks=left)
        assert result.returncode == 1, (result.returncode, result.stderr)
        assert "No space left on device" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert left == [], left
        filler.unlink()
        for p in base.glob("i*"):
            p.unlink()
        restart_works(lab, conf, name)
        # Full while running: writes inside fail, the subhost and its stop don't.
        assert lab.start(conf).returncode == 0
        fill = lab.go(name, "sh", "-c", "cat /dev/zero > /fill; echo $?")
        assert fill.stdout.strip() != "0"
        assert lab.go(name, "true").returncode == 0
        assert lab.stop(name).returncode == 0
        assert lab.leftovers(name) == []
    finally:
        lab.stop(name)
        subprocess.run(["umount", str(base)], check=False)


# --- races ---------------------------------------------------------------------------------

def test_start_and_stop_racing(lab: Lab) -> None:
    conf = lab.config("START=none\nCABLES= =\n")
    name = conf.stem
    outcomes = []
    for delay in (0, 0.005, 0.02, 0.05, 0.1, 0.2):
        starter = lab.start_async(conf)
        time.sleep(delay)
        stopper = lab.stop(name)
        starter.wait(timeout=60)
        # Whatever won, the state is true: running (and usable) or fully gone.
        if Path(f"/run/overlay-boot/{name}.lock").exists() and _locked(name):
            assert lab.go(name, "hostname").stdout.strip() == name
            assert lab.stop(name).returncode == 0
            outcomes.append("started")
        else:
            outcomes.append("stopped")
        left = lab.leftovers(name)
        assert left == [], (delay, stopper.stderr, left)
    record("fault", "start and stop of the same subhost racing", outcomes=outcomes, leaks=[])
    restart_works(lab, conf, name)


def _locked(name: str) -> bool:
    from overlay_boot import state

    return state.is_locked(name)


def test_two_starts_racing(lab: Lab) -> None:
    conf = lab.config("START=none\n")
    name = conf.stem
    starters = [lab.start_async(conf) for _ in range(4)]
    statuses = [p.wait(timeout=60) for p in starters]
    assert statuses.count(0) == 1, statuses
    assert lab.stop(name).returncode == 0
    left = lab.leftovers(name)
    record("fault", "four starts of the same subhost racing", leaks=left)
    assert left == [], left


@pytest.mark.parametrize("stage", ("premount", "service"))
def test_stop_during_start(lab: Lab, gate: Gate, stage: str) -> None:
    conf = gated_config(lab, gate)
    name = conf.stem
    gate.block(stage)
    starter = lab.start_async(conf)
    gate.wait(stage)
    rec = lab.record(name)
    stopper = subprocess.Popen([*command("stop"), name], env=env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The gate blocks on its FIFO: the stop must end it rather than wait for it forever.
        assert stopper.wait(timeout=60) == 0, stopper.stderr.read()
    finally:
        if stopper.poll() is None:
            stopper.kill()
        stopper.wait()
        stopper.stdout.close()
        stopper.stderr.close()
    assert starter.wait(timeout=30) != 0
    assert not alive(rec["supervisor_pid"])
    left = lab.leftovers(name)
    record("fault", f"stop during the start ({stage})", leaks=left)
    assert left == [], left
    gate.reset()
    restart_works(lab, conf, name)


def test_sigterm_storm_while_starting(lab: Lab, gate: Gate) -> None:
    """Many stop signals at once, while PID 1 is being made: one clean stop."""
    conf = gated_config(lab, gate)
    name = conf.stem
    gate.block("postmount")
    starter = lab.start_async(conf)
    gate.wait("postmount")
    rec = lab.record(name)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGTERM, signal.SIGTERM):
        kill(rec["supervisor_pid"], sig)
    assert wait_dead(rec["supervisor_pid"], timeout=30)
    assert starter.wait(timeout=30) != 0
    left = lab.leftovers(name)
    record("fault", "SIGTERM/SIGHUP storm to the supervisor while starting", leaks=left)
    assert left == [], left
    gate.reset()
    restart_works(lab, conf, name)
