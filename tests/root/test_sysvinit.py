"""The LSB init script of the Debian package, on this host: it has no systemd as PID 1
(no /run/systemd/system), as a Devuan host or a sysvinit Debian has not."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.leaks import REPO, command
from tests.subhostkit import Lab

pytestmark = pytest.mark.root

SCRIPT = REPO / "packaging/debian/overlay-boot.init"


@pytest.fixture
def init_script(tmp_path: Path):
    """Run the script with the checkout's commands on PATH and the test's own config places."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for prog, module in (("overlay-boot", "boot"), ("overlay-stop", "stop")):
        shim = bin_dir / prog
        shim.write_text("#!/bin/sh\nexec " + " ".join(command(module)) + ' "$@"\n')
        shim.chmod(0o755)
    conf_dir = tmp_path / "etc-overlay-boot"
    conf_dir.mkdir()
    # A run directory of the test's own: `stop` and `status` see only its subhosts.
    run_dir = tmp_path / "run"

    def run(action: str, subhosts: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(REPO),
                   OVERLAY_BOOT_CONFIG_DIR=str(conf_dir), OVERLAY_BOOT_SUBHOSTS_CONF=str(subhosts),
                   OVERLAY_BOOT_RUN_DIR=str(run_dir))
        return subprocess.run(["sh", str(SCRIPT), action], env=env, capture_output=True,
                              text=True, timeout=120)

    run.conf_dir = conf_dir  # type: ignore[attr-defined]
    run.run_dir = run_dir  # type: ignore[attr-defined]
    return run


def _running(run_dir: Path, name: str) -> bool:
    return (run_dir / f"{name}.json").exists()


def _leader(run_dir: Path, name: str) -> int:
    return json.loads((run_dir / f"{name}.json").read_text())["leader_pid"]


def test_start_status_restart_stop(lab: Lab, init_script, tmp_path: Path) -> None:
    assert not Path("/run/systemd/system").exists()  # what makes the script act
    listed = lab.config("START=none\n")
    linked = lab.config("START=none\n")
    (init_script.conf_dir / linked.name).symlink_to(linked)
    subhosts = tmp_path / "subhosts.conf"
    subhosts.write_text(f"# the boot list, as 1.6.4 has it\n{listed}\n")
    names = [listed.stem, linked.stem]

    started = init_script("start", subhosts)
    assert started.returncode == 0, started.stderr
    assert all(_running(init_script.run_dir, n) for n in names), started.stdout + started.stderr
    status = init_script("status", subhosts)
    assert status.returncode == 0 and all(n in status.stdout for n in names), status.stdout
    leaders = {n: _leader(init_script.run_dir, n) for n in names}

    restarted = init_script("restart", subhosts)
    assert restarted.returncode == 0, restarted.stderr
    assert all(_running(init_script.run_dir, n) for n in names)
    assert all(_leader(init_script.run_dir, n) != leaders[n] for n in names)  # restarted

    stopped = init_script("stop", subhosts)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_running(init_script.run_dir, n) for n in names)
    for name in names:
        assert lab.leftovers(name) == []
    assert init_script("status", subhosts).returncode == 3
