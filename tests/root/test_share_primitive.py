"""One bind primitive (linux/share.py) for SHARE= at boot and for overlay-share at run time,
and the run-time share called in-process from a threaded program (as the D-Bus service does),
on the real kernel."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from overlay_boot.errors import SubhostError
from overlay_boot.linux import share as mechanism
from tests.leaks import run_command, snapshot
from tests.root.subhosts import Subhost, inside, start_subhost, stop_subhost, sub

__all__ = ["sub"]  # fixture

pytestmark = pytest.mark.root


@pytest.fixture
def shared_top(tmp_path: Path) -> Iterator[Path]:
    """A host directory that is a *shared* mount of its own (as on a systemd host), root's
    and 0755 (a SHARE= source must be)."""
    tmp_path.chmod(0o755)
    top = tmp_path / f"top-{secrets.token_hex(3)}"
    top.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "obprim", str(top)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(top)], check=True)
        (top / "from-host").write_text("hello\n")
        yield top
    finally:
        subprocess.run(["umount", "-R", str(top)], check=True)


def mount_line(leader: int, point: str) -> dict[str, object]:
    """What /proc/LEADER/mountinfo says of the mount at POINT: per-mount options, propagation
    tags, filesystem type, source and super options (everything but the ids)."""
    for line in Path(f"/proc/{leader}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == point:
            dash = fields.index("-")
            return {"options": fields[5], "tags": set(fields[6:dash]),
                    "fs": tuple(fields[dash + 1:])}
    raise AssertionError(f"nothing mounted at {point} in {leader}")


@pytest.mark.parametrize("extra", ["", "CAPABILITIES=all\n"], ids=["confined", "unconfined"])
def test_boot_share_and_run_time_share_are_the_same_mount(tmp_path: Path, shared_top: Path,
                                                          extra: str) -> None:
    before = snapshot()
    subhost = start_subhost(tmp_path, f"SHARE={shared_top}:/mnt/at-boot\n{extra}")
    try:
        result = run_command("share", str(shared_top), subhost.name, "/mnt/at-run-time")
        assert result.returncode == 0, result.stderr
        at_boot = mount_line(subhost.leader, "/mnt/at-boot")
        at_run_time = mount_line(subhost.leader, "/mnt/at-run-time")
        assert at_boot == at_run_time
        # A slave of the host's peer group, in none of its own.
        host = mount_line(os.getpid(), str(shared_top))
        (peer,) = (tag for tag in host["tags"] if tag.startswith("shared:"))
        assert at_boot["tags"] == {peer.replace("shared:", "master:")}, (host, at_boot)
        # nodev as the subhost's root is: only for a confined one.
        root = mount_line(subhost.leader, "/")
        assert ("nodev" in at_boot["options"].split(",")) == bool(extra == ""), at_boot
        assert ("nodev" in root["options"].split(",")) == bool(extra == ""), root
        assert inside(subhost, "cat /mnt/at-boot/from-host /mnt/at-run-time/from-host") == \
            "hello\nhello\n"
    finally:
        stop_subhost(subhost, before)


def namespaces_of_every_thread() -> set[str]:
    found = set()
    for task in os.listdir("/proc/self/task"):
        try:
            found.add(os.readlink(f"/proc/self/task/{task}/ns/mnt"))
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return found


def test_in_process_from_a_threaded_program(sub: Subhost, tmp_path: Path) -> None:
    """What the D-Bus service does: share and unshare called in a pool's worker thread of a
    process with other threads. Every thread stays in the process's own mount namespace."""
    hostdir = tmp_path / "in-process"
    hostdir.mkdir()
    (hostdir / "file").write_text("in process\n")
    target = f"/mnt/{sub.name}-in-process"
    own = {os.readlink("/proc/self/ns/mnt")}
    stop = threading.Event()
    bystander = threading.Thread(target=stop.wait)  # the process is threaded throughout
    bystander.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            pool.submit(mechanism.share, sub.name, str(hostdir), target).result()
            assert namespaces_of_every_thread() == own
            assert inside(sub, f"cat {target}/file") == "in process\n"
            with pytest.raises(SubhostError, match="already"):
                pool.submit(mechanism.share, sub.name, str(hostdir), target).result()
            pool.submit(mechanism.unshare, sub.name, target).result()
            assert namespaces_of_every_thread() == own
            with pytest.raises(SubhostError, match="nothing is mounted"):
                pool.submit(mechanism.unshare, sub.name, target).result()
    finally:
        stop.set()
        bystander.join()
    assert inside(sub, f"ls -A {target}") == ""
    assert not Path(target).exists(), "the target was made on the host"
