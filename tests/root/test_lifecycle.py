"""End to end on the real kernel, without systemd: overlay-boot / overlay-go / overlay-stop."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from overlay_boot.linux import mounts
from tests.leaks import REPO, command, run_command, snapshot, wait_clean
from tests.root.subhosts import make_base

pytestmark = pytest.mark.root


@pytest.fixture
def name() -> str:
    return "t" + secrets.token_hex(3)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


@pytest.fixture
def subhost(scratch: Path, name: str):
    """Start/stop helpers for one subhost; always stopped and checked for leaks at the end."""
    before = snapshot()
    started: list[Path] = []

    class Subhost:
        def __init__(self) -> None:
            self.name = name
            self.log = scratch / "subhost.log"

        def config(self, text: str) -> Path:
            return make_base(scratch, name, f"LOG={self.log}\n{text}")

        def start(self, conf: Path, *extra: str, expect: int = 0) -> subprocess.CompletedProcess:
            result = run_command("boot", *extra, str(conf))
            started.append(conf)
            assert result.returncode == expect, (result.stdout, result.stderr, self.read_log())
            return result

        def stop(self, target: str) -> subprocess.CompletedProcess:
            return run_command("stop", target)

        def go(self, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
            return run_command("go", name, "--", *cmd, **kwargs)

        def read_log(self) -> str:
            return self.log.read_text() if self.log.exists() else ""

    yield Subhost()
    for conf in started:
        run_command("stop", str(conf))
    problems = wait_clean(before, name)
    assert not problems, problems


@pytest.mark.parametrize("name", ["t" + secrets.token_hex(2) + ".é+1"])
def test_name_as_1_6_4_took_it(subhost, name: str) -> None:
    """c2: a NAME with '.', '+' and a non-ASCII letter (here the default, from the file name
    NAME.conf) names the hostname, the network namespace, the cable's host end and the
    runtime files; overlay-stop finds it by NAME."""
    conf = subhost.config("BASE=.\nSTART=none\nCABLES==\n")
    subhost.start(conf)
    assert subhost.go("hostname").stdout.strip() == name
    assert Path(f"/run/netns/{name}").exists()
    assert Path(f"/sys/class/net/{name}0").exists()
    assert Path(f"/run/overlay-boot/{name}.json").exists()
    assert subhost.go("ip", "-o", "link", "show", "eth0").returncode == 0
    assert subhost.stop(name).returncode == 0
    assert not Path(f"/sys/class/net/{name}0").exists()


def test_minimal_start_go_stop(subhost) -> None:
    conf = subhost.config("BASE=.\nSTART=none\n")
    subhost.start(conf)
    result = subhost.go("hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == subhost.name
    # PID 1 of the subhost is ours, and the shell's view is the subhost's.
    result = subhost.go("cat", "/proc/1/comm")
    assert result.returncode == 0
    assert result.stdout.strip() != "systemd"
    stopped = subhost.stop(str(conf))
    assert stopped.returncode == 0, stopped.stderr


def test_refuses_second_start(subhost) -> None:
    conf = subhost.config("BASE=.\nSTART=none\n")
    subhost.start(conf)
    again = run_command("boot", str(conf))
    assert again.returncode != 0
    assert "already running" in again.stderr
    assert subhost.stop(subhost.name).returncode == 0


def test_upper_is_persistent_and_host_untouched(subhost, scratch: Path) -> None:
    conf = subhost.config("BASE=.\nSTART=none\n")
    subhost.start(conf)
    marker = f"/etc/ob-test-{subhost.name}"
    assert subhost.go("sh", "-c", f"echo inside > {marker}").returncode == 0
    assert not Path(marker).exists(), "a write inside the subhost reached the host's /"
    assert (scratch / subhost.name / "root" / marker.lstrip("/")).read_text() == "inside\n"
    assert subhost.stop(subhost.name).returncode == 0


def test_services_start_in_order_and_stop_in_reverse(subhost, scratch: Path) -> None:
    shared = scratch / "shared"  # not the whole scratch: LOG= may not be in a SHARE source
    shared.mkdir()
    record = shared / "services.log"
    scripts = []
    for word in ("one", "two", "three"):
        script = shared / f"svc-{word}"
        script.write_text(f"#!/bin/sh\necho \"$1 {word}\" >> {record}\n")
        script.chmod(0o755)
        scripts.append(str(script))
    conf = subhost.config(f"BASE=.\nSHARE={shared}\nSTART={' '.join(scripts)}\n")
    subhost.start(conf)
    assert record.read_text().split("\n")[:3] == ["start one", "start two", "start three"]
    assert subhost.stop(str(conf)).returncode == 0
    lines = record.read_text().splitlines()
    assert lines == [
        "start one", "start two", "start three", "stop three", "stop two", "stop one",
    ]


def _is_mask(mountinfo_line: str) -> bool:
    """Another subhost's directory, masked (``mounts.Mask``): an empty read-only tmpfs."""
    fields = mountinfo_line.split()
    after = fields[fields.index("-") + 1:]
    return after[0] == "tmpfs" and "size=4k" in after[2] and "mode=000" in after[2]


def test_isolation(subhost, scratch: Path) -> None:
    conf = subhost.config("BASE=.\nSTART=none\n")
    subhost.start(conf)
    # Host processes are invisible: this test's own PID is not in the subhost's /proc.
    pids = subhost.go("sh", "-c", "ls /proc | grep -E '^[0-9]+$'").stdout.split()
    assert str(os.getpid()) not in pids
    assert len(pids) < 10, pids
    # Host mounts are invisible: inside, only the subhost's own mounts exist.
    mountinfo = subhost.go("cat", "/proc/self/mountinfo").stdout.splitlines()
    points = {line.split()[4] for line in mountinfo if not _is_mask(line)}
    own = {"/", "/dev", "/dev/shm", "/dev/pts", "/proc", "/sys", "/run", "/etc/adjtime",
           "/run/systemd/journal/dev-log", "/proc/sys/net",
           *(f"/proc/{p}" for p in mounts.PROC_READ_ONLY + mounts.PROC_MASKED)}
    assert points <= own, points - own
    # /proc/1/root does not lead anywhere: PID 1 is not dumpable. And nothing made inside
    # shows on the host.
    probe = f"/ob-root-probe-{subhost.name}"
    assert subhost.go("sh", "-c", f"touch {probe}").returncode == 0
    assert subhost.go("test", "-e", f"/proc/1/root{probe}").returncode == 1
    assert subhost.go("test", "-e", probe).returncode == 0
    assert not Path(probe).exists()
    assert subhost.stop(subhost.name).returncode == 0


def test_symlinked_config_with_relative_base(subhost, scratch: Path) -> None:
    """c1: a config linked from another directory takes a relative BASE from the link's own
    directory, as 1.6.4 did (a template linked from several subhost directories)."""
    conf = subhost.config("BASE=.\nSTART=none\n")
    other = scratch / "other-base"
    for d in ("live", "root", "work"):
        (other / d).mkdir(parents=True)
    link = other / f"{subhost.name}.conf"
    link.symlink_to(conf)
    subhost.start(link)
    assert subhost.go("hostname").stdout.strip() == subhost.name
    record = json.loads(Path(f"/run/overlay-boot/{subhost.name}.json").read_text())
    assert record["root"] == str(other / "live")
    assert subhost.stop(str(link)).returncode == 0


def test_bang_values_evaluated(subhost, scratch: Path) -> None:
    conf = subhost.config(
        "BASE=.\nSTART=!echo none\nRAM_SIZE=!echo 7M\n"
    )
    subhost.start(conf)
    df = subhost.go("sh", "-c", "grep ' /run ' /proc/mounts").stdout
    assert "size=7168k" in df, df
    assert subhost.stop(subhost.name).returncode == 0


def test_ram_size_as_tmpfs_takes_it(subhost) -> None:
    """c11: RAM_SIZE is what tmpfs's size= takes (hex here) with mount options riding along,
    as 1.6.4 passed it on; quotes around it are taken off (c3)."""
    conf = subhost.config("BASE=.\nSTART=none\nRAM_SIZE='0x800000,nr_inodes=1k'\n")
    subhost.start(conf)
    line = subhost.go("sh", "-c", "grep ' /run ' /proc/mounts").stdout
    assert "size=8192k" in line and "nr_inodes=1024" in line, line
    assert subhost.stop(subhost.name).returncode == 0


def test_crash_then_restart(subhost) -> None:
    conf = subhost.config("BASE=.\nSTART=none\nCABLES= =\n")
    subhost.start(conf)
    record = Path(f"/run/overlay-boot/{subhost.name}.json")
    data = json.loads(record.read_text())
    os.kill(data["supervisor_pid"], signal.SIGKILL)
    # PID 1 dies with its supervisor (parent-death signal) and takes the subhost with it.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(data["leader_pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("PID 1 survived its supervisor")
    assert Path(f"/run/netns/{subhost.name}").exists()  # left behind by the crash...
    subhost.start(conf)  # ...and removed by the next start
    assert subhost.go("hostname").stdout.strip() == subhost.name
    assert subhost.stop(subhost.name).returncode == 0


def test_foreground_stops_on_sigterm(subhost) -> None:
    conf = subhost.config("BASE=.\nSTART=none\n")
    env = dict(os.environ, OVERLAY_BOOT_NO_SYSTEMD="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [*command("boot"), "--foreground", str(conf)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if '"running"' in _read(Path(f"/run/overlay-boot/{subhost.name}.json")):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the subhost did not become ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_of_a_subhost_not_running(name: str) -> None:
    result = run_command("stop", name)
    assert result.returncode == 1
    assert "not running" in result.stderr
    result = run_command("go", name, "--", "true")
    assert result.returncode != 0
    assert "not running" in result.stderr


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""



def test_several_lower_layers(subhost, scratch: Path) -> None:
    """LOWER=A:/ stacks A over the host's root: A's files win, the rest comes from /.

    A lives on a tmpfs of its own: overlayfs refuses lower layers nested in one another on
    the same filesystem (a directory below / next to / itself)."""
    layer = scratch / "layer"
    layer.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "oblayer", str(layer)], check=True)
    try:
        (layer / "etc").mkdir()
        (layer / "etc" / "ob-layer-marker").write_text("from the top layer\n")
        (layer / "etc" / "hostname").write_text("shadowed-by-layer\n")
        conf = subhost.config(f"BASE=.\nSTART=none\nLOWER={layer}:/\n")
        subhost.start(conf)
        assert subhost.go("cat", "/etc/ob-layer-marker").stdout == "from the top layer\n"
        assert subhost.go("cat", "/etc/hostname").stdout == "shadowed-by-layer\n"
        assert subhost.go("test", "-x", "/bin/sh").returncode == 0  # from the host's root
        assert subhost.stop(subhost.name).returncode == 0
    finally:
        subprocess.run(["umount", str(layer)], check=True)


def test_init_override_runs_inside(subhost) -> None:
    """INIT= runs on the host; what it prints is the start-up script run inside (not START)."""
    conf = subhost.config(
        "BASE=.\nSTART=/nonexistent-start\n"
        "INIT=echo 'echo \"$(hostname) via $CONFIG_SEEN\" > /run/init-ran'; "
        "echo \"true # for $CONFIG\"\n"
    )
    subhost.start(conf)
    assert subhost.go("cat", "/run/init-ran").stdout.startswith(f"{subhost.name} via")
    assert "nonexistent-start" not in subhost.read_log()
    assert subhost.stop(subhost.name).returncode == 0


def test_failing_init_command_is_a_warning(subhost) -> None:
    """c14: 1.6.4 ran what INIT printed whatever its exit status; INIT (a host command) sees
    ACTION=overlay-boot as in 1.6.4 (c4)."""
    conf = subhost.config(
        "BASE=.\nSTART=none\n"
        "INIT=echo \"echo $ACTION > /run/init-ran\"; echo oops >&2; exit 4\n")
    subhost.start(conf)
    assert subhost.go("cat", "/run/init-ran").stdout == "overlay-boot\n"
    log = subhost.read_log()
    assert "INIT: command" in log and "exit status 4" in log and "oops" in log, log
    assert subhost.stop(subhost.name).returncode == 0


