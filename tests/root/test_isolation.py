"""Isolation and security, checked from inside real subhosts and as a non-root user.

From inside a subhost no host mount, host process or other subhost is visible, and the host's
root is unreachable: not through `/proc/1/root`, not by climbing `..` (also after a chroot,
the classic escape), not by entering PID 1's namespaces. Instance names cannot select files
outside the config directories; a non-root user can neither start nor stop nor enter.
(The config-permission refusals are cases of the bad-config corpus, tests/cases/config-*.)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leaks import REPO, command, run_command
from tests.reliability import record
from tests.subhostkit import Lab, env

pytestmark = pytest.mark.root

SECRET = "host-secret"
# The classic chroot escape, run by the subhost's python (the host's, seen through LOWER=/).
ESCAPE = """
import os, sys
os.makedirs("/tmp/jail", exist_ok=True)
top = os.open("/", os.O_RDONLY)
os.chroot("/tmp/jail")
os.fchdir(top)
for _ in range(64):
    os.chdir("..")
os.chroot(".")
print(os.path.exists(sys.argv[1]), os.stat("/").st_ino)
"""


@pytest.fixture
def secret(tmp_path: Path) -> Iterator[Path]:
    """A file only the host can see: on a tmpfs mounted on the host (LOWER=/ shows the host's
    root filesystem, never its mounts)."""
    where = tmp_path / "hostonly"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tsecret", str(where)],
                   check=True)
    try:
        (where / SECRET).write_text("the host's\n")
        yield where / SECRET
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture
def pair(lab: Lab, secret: Path) -> tuple[str, str]:
    a = lab.config("START=none\nCABLES= =\n")
    b = lab.config("START=none\nCABLES= =\n")
    assert lab.start(a).returncode == 0
    assert lab.start(b).returncode == 0
    lab.lab_secret = secret  # type: ignore[attr-defined]
    return a.stem, b.stem


def check(lab: Lab, name: str, what: str, *cmd: str) -> str:
    result = lab.go(name, *cmd)
    record("isolation", what, status=result.returncode)
    return result.stdout


def test_host_and_other_subhost_invisible(lab: Lab, pair: tuple[str, str]) -> None:
    a, b = pair
    rec_b = lab.record(b)
    pids = check(lab, a, "processes: only the subhost's own", "sh", "-c",
                 "ls /proc | grep -E '^[0-9]+$'").split()
    assert str(os.getpid()) not in pids and str(rec_b["leader_pid"]) not in pids
    assert len(pids) < 10, pids
    parents = check(lab, a, "every process descends from the subhost's PID 1", "sh", "-c",
                    "cat /proc/[0-9]*/stat")
    for line in parents.splitlines():  # pid (comm) state ppid: ppid 0 only for PID 1
        pid, ppid = int(line.split()[0]), int(line.rsplit(")", 1)[1].split()[1])
        assert ppid != 0 or pid == 1, line
    mountinfo = check(lab, a, "mounts: only the subhost's own", "cat", "/proc/self/mountinfo")
    points = [line.split()[4] for line in mountinfo.splitlines()]
    assert not [p for p in points if str(lab.scratch) in p or b in p or "hostonly" in p]
    assert f"upperdir={lab.scratch}/{b}/" not in mountinfo
    live_b = check(lab, a, "the other subhost's root: an empty directory", "ls", "-A",
                   rec_b["root"])
    assert live_b.strip() == ""
    links = check(lab, a, "network: own interfaces only", "ls", "/sys/class/net").split()
    assert sorted(links) == ["eth0", "lo"], links
    netns = check(lab, a, "/run/netns: not the host's", "sh", "-c", "ls -A /run/netns 2>&1")
    assert b not in netns and a not in netns
    runtime = check(lab, a, "/run/overlay-boot: not the host's", "sh", "-c",
                    "ls -A /run/overlay-boot 2>&1")
    assert b not in runtime
    assert check(lab, a, "hostname", "hostname").strip() == a


def test_host_root_unreachable(lab: Lab, pair: tuple[str, str]) -> None:
    a, _ = pair
    secret = str(lab.lab_secret)  # type: ignore[attr-defined]
    root_inode = check(lab, a, "inode of /", "stat", "-c", "%i", "/").strip()
    for what, cmd in (
        ("the secret itself", ["test", "-e", secret]),
        ("/proc/1/root", ["test", "-e", f"/proc/1/root{secret}"]),
        ("/proc/self/root", ["test", "-e", f"/proc/self/root{secret}"]),
        (".. from /", ["sh", "-c", f"cd /; cd ../../../..; test -e .{secret}"]),
        ("entering PID 1's namespaces", ["nsenter", "-t", "1", "-a", "test", "-e", secret]),
    ):
        result = lab.go(a, *cmd)
        record("isolation", f"host root unreachable via {what}", status=result.returncode)
        assert result.returncode == 1, (what, result.stdout, result.stderr)
    assert check(lab, a, ".. of / is /", "sh", "-c", "cd /..; stat -c %i .").strip() \
        == root_inode
    # Confined (README "Security model"): no CAP_SYS_ADMIN for setns, and PID 1 is not
    # dumpable, so its /proc/1/ns/* are out of reach too.
    entered = lab.go(a, "nsenter", "-t", "1", "-a", "hostname")
    record("isolation", "nsenter -t 1 -a is refused", status=entered.returncode)
    assert entered.returncode != 0 and entered.stdout == "", entered
    assert "Permission denied" in entered.stderr or "not permitted" in entered.stderr
    escaped = lab.go(a, "python3", "-c", ESCAPE, secret)
    record("isolation", "chroot escape (chroot, fchdir, .. x64, chroot .)",
           status=escaped.returncode, out=escaped.stdout.strip())
    assert escaped.returncode == 0, escaped.stderr
    found, inode = escaped.stdout.split()
    assert found == "False" and inode == root_inode, escaped.stdout


# --- instance names -----------------------------------------------------------------------

BAD_INSTANCES = ["../x", "a/b", ".", "..", "/etc/passwd", "x" * 13, "x" * 300, "-x",
                 "x\ny", "x y", "x..y", "%i", "", "~root", "x\\y"]


@pytest.mark.parametrize("instance", BAD_INSTANCES, ids=repr)
def test_instance_names_cannot_select_files(tmp_path: Path, instance: str) -> None:
    tmp_path.chmod(0o755)
    confdir = tmp_path / "confdir"
    confdir.mkdir()
    outside = tmp_path / "x.conf"
    outside.write_text("BASE=.\nSTART=!touch RAN\n")
    ran = tmp_path / "RAN"
    extra = {"OVERLAY_BOOT_CONFIG_DIR": str(confdir),
             "OVERLAY_BOOT_SUBHOSTS_CONF": str(tmp_path / "none.conf")}
    result = run_command("boot", "--instance", instance, env=extra, cwd=str(confdir))
    record("isolation", f"instance name {instance!r} refused", status=result.returncode)
    # 2: refused by the argument parser; 64: usage (invalid name); 78: no such config
    assert result.returncode in (2, 64, 78), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert not ran.exists() and not (confdir / "RAN").exists()
    # No runtime file (NAME.json, NAME.lock, NAME.ctl) was made for it.
    assert not any(instance and p.name.rsplit(".", 1)[0] == instance
                   for p in Path("/run/overlay-boot").glob("*"))
    for cmd in ("stop", "go"):
        other = run_command(cmd, instance, "--", "true", env=extra) if cmd == "go" \
            else run_command(cmd, instance, env=extra)
        assert other.returncode != 0 and "Traceback" not in other.stderr, other.stderr


def test_instance_outside_the_config_directories_is_not_found(tmp_path: Path) -> None:
    """A config that exists, but not in the config directories: its NAME selects nothing."""
    tmp_path.chmod(0o755)
    confdir = tmp_path / "confdir"
    confdir.mkdir()
    (tmp_path / "evil.conf").write_text("BASE=.\nSTART=none\n")
    result = run_command("boot", "--instance", "evil",
                         env={"OVERLAY_BOOT_CONFIG_DIR": str(confdir),
                              "OVERLAY_BOOT_SUBHOSTS_CONF": str(tmp_path / "none.conf")})
    record("isolation", "a NAME whose config is outside the config directories",
           status=result.returncode)
    assert result.returncode == 78, result.stderr
    assert "no configuration for subhost evil" in result.stderr


# --- a non-root user --------------------------------------------------------------------------

def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=60, env=env(),
                          cwd="/")


def test_non_root_cannot_start_stop_or_enter(lab: Lab) -> None:
    conf = lab.config("START=none\n")
    name = conf.stem
    for argv in (["boot", str(conf)], ["boot", "--foreground", str(conf)],
                 ["boot", "--instance", name]):
        result = as_nobody(*command(argv[0]), *argv[1:])
        shown = " ".join(a if a.startswith("-") else "CONF" if a.endswith(".conf") else "NAME"
                         for a in argv[1:2])
        record("isolation", f"non-root: overlay-{argv[0]} {shown} refused",
               status=result.returncode)
        assert result.returncode != 0 and "must be run as root" in result.stderr, result
        assert not Path(f"/run/netns/{name}").exists()
        assert not Path(f"/run/overlay-boot/{name}.lock").exists()
    assert lab.start(conf).returncode == 0
    leader = lab.record(name)["leader_pid"]
    for argv in (["stop", name], ["stop", "--cleanup", name], ["go", name, "--", "id"]):
        result = as_nobody(*command(argv[0]), *argv[1:])
        record("isolation", f"non-root: overlay-{argv[0]} of a running subhost refused",
               status=result.returncode)
        assert result.returncode != 0, result
        assert "Traceback" not in result.stderr
    assert os.path.exists(f"/proc/{leader}"), "a non-root user stopped the subhost"
    assert Path(f"/run/netns/{name}").exists()
    # The control socket of PID 1 answers root only (mode 0600 and SO_PEERCRED).
    ctl = Path(f"/run/overlay-boot/{name}.ctl")
    if ctl.exists():
        probe = as_nobody("/usr/bin/python3", "-c",
                          "import socket,sys; s=socket.socket(socket.AF_UNIX, "
                          "socket.SOCK_SEQPACKET); s.connect(sys.argv[1])", str(ctl))
        record("isolation", "non-root: PID 1's control socket refused",
               status=probe.returncode)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, probe
    assert lab.stop(name).returncode == 0


def test_paths_with_spaces_commas_and_colons_work(lab: Lab) -> None:
    """Not hostile, only unusual: such a BASE must start (overlayfs options are escaped)."""
    base = lab.scratch / "a base, with: odd chars"
    conf = lab.config("START=none\n", base=base)
    result = lab.start(conf)
    record("isolation", "BASE with spaces, commas and colons starts", status=result.returncode)
    assert result.returncode == 0, result.stderr
    assert lab.go(conf.stem, "sh", "-c", "echo x > /probe").returncode == 0
    assert (base / "root" / "probe").read_text() == "x\n"
    assert lab.stop(conf.stem).returncode == 0


def test_repo_is_readable_by_nobody() -> None:
    """The non-root tests above run this checkout as nobody: it must be readable."""
    result = as_nobody(*command("boot"), "--help")
    assert result.returncode == 0, result.stderr
    assert REPO.exists()
