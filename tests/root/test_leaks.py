"""tests/leaks.py on the real kernel: each kind of leftover is found by its identity, whoever
its parent is, and what another test on the same host made is not counted."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import leaks
from tests.leaks import Scope, Usage, grown, new_things, snapshot

pytestmark = pytest.mark.root

#: a daemon: forks, the parent exits at once, the child (in its own session) runs on
DAEMON = "import os, sys, time\nif os.fork(): sys.exit(0)\nos.setsid()\ntime.sleep(600)\n"


@pytest.fixture
def name() -> str:
    return "t" + secrets.token_hex(3)


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """PIDs a test started (daemons it cannot wait for): killed at the end."""
    started: list[int] = []
    yield started
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def daemon(argv_tail: str, env: dict[str, str], pids: list[int], *, pid_file: Path) -> int:
    """Start a daemon (reparented to init at once) and return its PID."""
    script = DAEMON.replace("os.setsid()", f"os.setsid()\nopen({str(pid_file)!r}, 'w')"
                            ".write(str(os.getpid()))")
    subprocess.run([sys.executable, "-c", script, argv_tail], env=env, check=True, timeout=30)
    pid = int(pid_file.read_text())
    pids.append(pid)
    return pid


def test_a_daemon_the_test_started_is_found_after_reparenting(tmp_path: Path,
                                                              pids: list[int]) -> None:
    before = snapshot()
    pid = daemon("x", dict(os.environ), pids, pid_file=tmp_path / "pid")
    assert os.getppid() != pid and _ppid(pid) != os.getpid()  # not our child any more
    found = new_things(before, snapshot(), Scope(marked=True))
    assert any(p.startswith(f"process {pid} ") for p in found), found
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert not any(p.startswith(f"process {pid} ")
                   for p in new_things(before, snapshot(), Scope(marked=True)))


def test_a_daemon_of_another_run_is_not_counted(tmp_path: Path, pids: list[int]) -> None:
    before = snapshot()
    env = dict(os.environ, **{leaks.MARKER_VAR: "another-run"})
    pid = daemon("x", env, pids, pid_file=tmp_path / "pid")
    assert not any(p.startswith(f"process {pid} ")
                   for p in new_things(before, snapshot(), Scope(("tnothere",), marked=True)))


def test_a_bang_command_is_found_by_its_config_and_its_children_by_ancestry(
        tmp_path: Path, name: str, pids: list[int]) -> None:
    """A `!` command gets CONFIG=the config; what it starts names nothing, but descends."""
    before = snapshot()
    env = {"PATH": os.environ["PATH"], "CONFIG": f"/srv/{name}/{name}.conf"}
    script = DAEMON.replace("time.sleep(600)",
                            f"open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()))\n"
                            "pid = os.fork()\n"
                            "if pid == 0:\n    os.execve('/bin/sleep', ['sleep', '600'], {})\n"
                            f"open({str(tmp_path / 'child')!r}, 'w').write(str(pid))\n"
                            "time.sleep(600)")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)
    parent = _wait_int(tmp_path / "pid")
    child = _wait_int(tmp_path / "child")
    pids += [child, parent]
    found = new_things(before, snapshot(), Scope((name,)))
    assert any(p.startswith(f"process {parent} ") for p in found), found
    assert any(p.startswith(f"process {child} (sleep)") for p in found), found
    assert parent in {pid for pid, _ in leaks.processes_of(name)}


def test_a_process_inside_is_found_by_its_hostname(name: str, pids: list[int]) -> None:
    before = snapshot()
    proc = subprocess.Popen(["unshare", "--uts", "--fork", "sh", "-c",
                             f"hostname {name} && exec sleep 600"], env={"PATH": os.defpath},
                            start_new_session=True)
    pids.append(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while not (found := [p for p in new_things(before, snapshot(), Scope((name,)))
                             if "(sleep)" in p]):
            assert time.monotonic() < deadline, "the sleep inside was never found"
            time.sleep(0.05)
        assert ("(sleep) sleep 600" in found[0]), found
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_mounts_netns_links_and_files_by_identity(tmp_path: Path, name: str) -> None:
    """Same counts, other identities: a mount replaced by another is still a leftover."""
    target = tmp_path / name
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "first", str(target)], check=True)
    before = snapshot()
    ctl = Path(f"/run/overlay-boot/{name}.ctl")
    try:
        subprocess.run(["umount", str(target)], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "second", str(target)], check=True)
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "link", "add", f"{name}-a", "type", "veth", "peer", "name",
                        f"{name}-b"], check=True)
        ctl.parent.mkdir(parents=True, exist_ok=True)
        ctl.touch()
        found = leaks.leftovers(before, name, paths=(str(tmp_path),))
        mount_id = _mount_id(target)
        assert f"mount {mount_id} {target} from second (tmpfs)" in found, found
        netns_ino = os.stat(f"/run/netns/{name}").st_ino
        assert f"netns {netns_ino} /run/netns/{name}" in found, found
        assert any(p.startswith("link ") and p.split()[2] == f"{name}-a" for p in found)
        assert f"file {ctl}" in found, found
        assert all(name in p or str(tmp_path) in p for p in found), found
    finally:
        ctl.unlink(missing_ok=True)
        subprocess.run(["ip", "link", "del", f"{name}-a"], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["umount", str(target)], check=False)
    assert leaks.wait_clean(before, name, paths=(str(tmp_path),)) == []


def test_what_others_make_meanwhile_is_not_counted(tmp_path: Path, name: str) -> None:
    before = snapshot()
    other = "o" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", other], check=True)
    try:
        assert leaks.leftovers(before, name, paths=(str(tmp_path),)) == []
        assert leaks.leftovers(before, other) != []
    finally:
        subprocess.run(["ip", "netns", "del", other], check=True)


def test_a_loop_device_by_its_backing_file(tmp_path: Path, name: str) -> None:
    image = tmp_path / f"{name}.img"
    image.write_bytes(b"\0" * 1024 * 1024)
    before = snapshot()
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        found = leaks.leftovers(before, name)
        assert f"loop {device} (backing {image})" in found, found
    finally:
        subprocess.run(["losetup", "-d", device], check=True)
    assert leaks.wait_clean(before, name) == []


def test_shared_service_growth_is_a_bound_and_a_restart_is_not_compared() -> None:
    old = {"overlay-boot-net": Usage(10, 5, 12, 20000), "overlay-boot-bus": Usage(11, 6, 9, 30000)}
    assert grown(old, {"overlay-boot-net": Usage(10, 5, 14, 20500),
                       "overlay-boot-bus": Usage(11, 6, 9, 30000)}, fds=2, rss_kb=1024) == []
    assert grown(old, {"overlay-boot-net": Usage(10, 5, 15, 20000)}, fds=2, rss_kb=1024) == [
        "overlay-boot-net (PID 10): 12 -> 15 descriptors"]
    assert grown(old, {"overlay-boot-bus": Usage(11, 6, 9, 40000)}, fds=2, rss_kb=1024) == [
        "overlay-boot-bus (PID 11): 30000 -> 40000 kB resident"]
    assert grown(old, {"overlay-boot-net": Usage(99, 7, 500, 90000)}, fds=2, rss_kb=1024) == []


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


def _wait_int(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.02)
    return int(path.read_text())


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while _state(pid) not in ("", "Z"):
        assert time.monotonic() < deadline, f"{pid} still runs"
        time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _mount_id(path: Path) -> int:
    ids = [int(line.split()[0]) for line in Path("/proc/self/mountinfo").read_text().splitlines()
           if line.split()[4] == str(path)]
    return ids[-1]
