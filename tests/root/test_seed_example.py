"""The original project's minimal example, verbatim (seed README), on the host without systemd.

    # mkdir /ex1 /ex1/work /ex1/root /ex1/live
    # echo BASE=. > /ex1/ex1.conf
    # overlay-boot /ex1/ex1.conf
    # overlay-go ex1
    # overlay-stop /ex1/ex1.conf
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.leaks import run_command, snapshot, wait_clean

pytestmark = pytest.mark.root

EX1 = Path("/ex1")


def log_file() -> Path:
    """The example's log: the default log directory, which the test session points elsewhere."""
    return Path(os.environ.get("OVERLAY_BOOT_LOG_DIR", "/var/log/overlay-boot")) / "ex1.log"


@pytest.fixture
def ex1():
    if EX1.exists():
        pytest.fail("/ex1 exists already on this machine: the verbatim example needs it free")
    try:
        yield
    finally:
        run_command("stop", "/ex1/ex1.conf")
        shutil.rmtree(EX1, ignore_errors=True)
        log_file().unlink(missing_ok=True)


def test_minimal_example_verbatim(ex1) -> None:
    before = snapshot()
    subprocess.run("mkdir /ex1 /ex1/work /ex1/root /ex1/live", shell=True, check=True)
    subprocess.run("echo BASE=. > /ex1/ex1.conf", shell=True, check=True)
    started = run_command("boot", "/ex1/ex1.conf")
    assert started.returncode == 0, started.stderr
    # The default START is "networking ssh": both are tried; ssh is not installed here, which
    # is logged and does not stop the subhost.
    log = log_file().read_text()
    assert "networking" in log and "ssh" in log
    entered = run_command("go", "ex1", input="hostname; exit 3\n")
    assert entered.returncode == 3, entered.stderr
    assert "ex1" in entered.stdout
    stopped = run_command("stop", "/ex1/ex1.conf")
    assert stopped.returncode == 0, stopped.stderr
    assert not wait_clean(before, "ex1")
