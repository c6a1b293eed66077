"""overlay-share on the real kernel: a host directory attached into a running subhost's mount
namespace (open_tree + move_mount), and detached again; the host's mounts never change."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leaks import run_command, snapshot
from tests.root.subhosts import Subhost, inside, own_subhost, sub

__all__ = ["own_subhost", "sub"]  # fixtures

pytestmark = pytest.mark.root


@pytest.fixture
def hostdir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / f"share-{secrets.token_hex(3)}"
    directory.mkdir()
    (directory / "from-host").write_text("hello from the host\n")
    yield directory


def host_mounts() -> frozenset[str]:
    """The host's mount points, but the netns binds (other tests' subhosts come and go)."""
    return frozenset(m.mountpoint for m in snapshot().mounts
                     if not m.mountpoint.startswith("/run/netns/"))


def share(*args: str):
    return run_command("share", *args)


def mounted_inside(sub: Subhost, path: str) -> bool:
    """Is PATH a mount point in SUB (its own mountinfo; host files show through the overlay)?"""
    points = inside(sub, "cut -d' ' -f5 /proc/self/mountinfo").split()
    return path in points


def test_share_and_remove(sub: Subhost, hostdir: Path) -> None:
    mounts = host_mounts()
    target = f"/srv/{sub.name}/a/b"  # missing: made inside the subhost
    result = share(str(hostdir), sub.name, target)
    assert result.returncode == 0, result.stderr
    assert target in result.stdout
    assert inside(sub, f"cat {target}/from-host") == "hello from the host\n"
    # Both ways: written inside, seen on the host; the host's mounts are unchanged.
    inside(sub, f"echo from inside > {target}/from-subhost")
    assert (hostdir / "from-subhost").read_text() == "from inside\n"
    assert host_mounts() == mounts
    assert not Path(target).exists(), "the target was made on the host"
    # Once more at the same place: refused.
    again = share(str(hostdir), sub.name, target)
    assert again.returncode == 1
    assert "mounted" in again.stderr and "already" in again.stderr
    assert mounted_inside(sub, target)
    result = share("--remove", str(hostdir), sub.name, target)
    assert result.returncode == 0, result.stderr
    assert not mounted_inside(sub, target)
    assert inside(sub, f"ls -A {target}") == ""
    assert (hostdir / "from-host").read_text() == "hello from the host\n"
    assert host_mounts() == mounts
    # Nothing to remove any more.
    result = share("--remove", str(hostdir), sub.name, target)
    assert result.returncode == 1
    assert "nothing is mounted" in result.stderr


def test_default_target_is_the_same_path(sub: Subhost, hostdir: Path) -> None:
    result = share(str(hostdir), sub.name)
    assert result.returncode == 0, result.stderr
    try:
        assert mounted_inside(sub, str(hostdir))
        assert inside(sub, f"cat {hostdir}/from-host") == "hello from the host\n"
    finally:
        result = share("--remove", str(hostdir), sub.name)
    assert result.returncode == 0, result.stderr
    assert not mounted_inside(sub, str(hostdir))


def test_refusals(sub: Subhost, hostdir: Path) -> None:
    result = share(str(hostdir / "from-host"), sub.name, "/srv/x")
    assert (result.returncode, "not a directory" in result.stderr) == (1, True), result.stderr
    missing = "t" + secrets.token_hex(3)
    result = share(str(hostdir), missing)
    assert result.returncode == 1
    assert f"subhost {missing} is not running" in result.stderr
    result = share(str(hostdir), sub.name, "relative/path")
    assert result.returncode == 64
    # --remove detaches only a share of HOSTDIR: not the subhost's own /proc.
    result = share("--remove", str(hostdir), sub.name, "/proc")
    assert result.returncode == 1
    assert "not a share of" in result.stderr
    # Nor with a HOSTDIR that is gone (what D-Bus Unshare does): the subhost's own mounts stay.
    result = share("--remove", "/nonexistent/gone", sub.name, "/proc")
    assert result.returncode == 1
    assert "is not a share" in result.stderr
    assert inside(sub, "test -e /proc/1/stat && echo ok") == "ok\n"


def test_symbolic_links_resolve_inside(sub: Subhost, hostdir: Path) -> None:
    tag = secrets.token_hex(3)
    inside(sub, f"mkdir -p /srv/{tag} && cd /srv/{tag} && ln -s ../../../../../../etc up && "
                f"ln -s /etc/hostname file && ln -s /proc/1/cwd magic")
    # A link climbing "above /" stays in the subhost: the target is its /etc/…, not the host's.
    mounts = host_mounts()
    result = share(str(hostdir), sub.name, f"/srv/{tag}/up/ob-{tag}")
    assert result.returncode == 0, result.stderr
    try:
        assert inside(sub, f"cat /etc/ob-{tag}/from-host") == "hello from the host\n"
        assert not Path(f"/etc/ob-{tag}").exists()
        assert host_mounts() == mounts
    finally:
        result = share("--remove", str(hostdir), sub.name, f"/etc/ob-{tag}")
    assert result.returncode == 0, result.stderr
    # A link to a file is not a directory; /proc magic links are not followed.
    result = share(str(hostdir), sub.name, f"/srv/{tag}/file")
    assert result.returncode == 1 and "not a directory" in result.stderr, result.stderr
    result = share(str(hostdir), sub.name, f"/srv/{tag}/magic/x")
    assert result.returncode == 1 and "symbolic links" in result.stderr, result.stderr
    assert host_mounts() == mounts


def test_share_lives_until_the_subhost_stops(tmp_path: Path, hostdir: Path) -> None:
    from tests.root.subhosts import start_subhost, stop_subhost

    tmp_path.chmod(0o755)
    before = snapshot()
    subhost = start_subhost(tmp_path)
    try:
        assert share(str(hostdir), subhost.name, "/mnt/shared").returncode == 0
        assert inside(subhost, "cat /mnt/shared/from-host") == "hello from the host\n"
    finally:
        stop_subhost(subhost, before)  # no mount of it anywhere afterwards
    assert (hostdir / "from-host").exists()


def test_help_documents_remove() -> None:
    result = run_command("share", "--help")
    assert result.returncode == 0
    assert "--remove" in result.stdout and "SUBHOSTDIR" in result.stdout


# --- propagation: nothing flows back to the host (review H3) --------------------------------


@pytest.fixture
def shared_hostdir(tmp_path: Path) -> Iterator[Path]:
    """A host directory that is a *shared* mount (as everything is on a systemd host), with a
    mount of the host's own below it holding a file."""
    top = tmp_path / f"shared-{secrets.token_hex(3)}"
    top.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "obshare", str(top)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(top)], check=True)
        (top / "sub").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "obsub", str(top / "sub")], check=True)
        (top / "sub" / "m").write_text("the host's own\n")
        yield top
    finally:
        subprocess.run(["umount", "-R", str(top)], check=True)


def peer_groups(mountinfo: str, points: set[str]) -> dict[str, set[str]]:
    """The propagation tags (shared:N, master:N) of the mounts at POINTS."""
    found: dict[str, set[str]] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] in points:
            optional = fields[6:fields.index("-")]
            found.setdefault(fields[4], set()).update(optional)
    return found


def test_share_is_a_slave_of_the_host(sub: Subhost, shared_hostdir: Path) -> None:
    top = shared_hostdir
    host = peer_groups(Path("/proc/self/mountinfo").read_text(), {str(top), str(top / "sub")})
    host_shared = {tag for tags in host.values() for tag in tags if tag.startswith("shared:")}
    assert len(host_shared) == 2, host  # the premise: both are shared on the host
    target = f"/mnt/{sub.name}-h3"
    result = share(str(top), sub.name, target)
    assert result.returncode == 0, result.stderr
    try:
        inside_tags = peer_groups(Path(f"/proc/{sub.leader}/mountinfo").read_text(),
                                  {target, f"{target}/sub"})
        assert set(inside_tags) == {target, f"{target}/sub"}, inside_tags
        for point, tags in inside_tags.items():
            assert not tags & host_shared, (point, tags, host)  # no peer group with the host
            assert tags & {t.replace("shared:", "master:") for t in host_shared}, tags
        # A mount made in the subhost's mount namespace under the share stays there.
        (top / "inner").mkdir()
        subprocess.run(["nsenter", "-t", str(sub.leader), "-m", "mount", "-t", "tmpfs",
                        "obinner", f"{target}/inner"], check=True)
        assert mounted_inside(sub, f"{target}/inner")
        assert not os.path.ismount(top / "inner")
        # What the host mounts under HOSTDIR later still shows inside (a slave receives).
        (top / "later").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "oblater", str(top / "later")], check=True)
        assert mounted_inside(sub, f"{target}/later")
    finally:
        result = share("--remove", str(top), sub.name, target)
    assert result.returncode == 0, result.stderr
    # Detaching the share unmounted nothing of the host's.
    assert os.path.ismount(top / "sub")
    assert (top / "sub" / "m").read_text() == "the host's own\n"
    assert os.path.ismount(top / "later")
    assert not mounted_inside(sub, target)


# --- what --remove may detach ------------------------------------------------------------------


def test_remove_by_subhost_directory(sub: Subhost, hostdir: Path) -> None:
    """--remove NAME SUBHOSTDIR: the form D-Bus Unshare uses, with no HOSTDIR."""
    target = f"/mnt/{sub.name}-by-dir"
    assert share(str(hostdir), sub.name, target).returncode == 0
    result = share("--remove", sub.name, target)
    assert result.returncode == 0, result.stderr
    assert f"at {target}" in result.stdout
    assert not mounted_inside(sub, target)
    result = share("--remove", sub.name, target)
    assert result.returncode == 1 and "nothing is mounted" in result.stderr


def test_own_mounts_are_refused_however_spelt(own_subhost: Subhost, hostdir: Path) -> None:
    """/proc, /run, / … are compared by what they resolve to inside, not by their text."""
    def points() -> list[str]:
        info = Path(f"/proc/{own_subhost.leader}/mountinfo").read_text()
        return sorted(line.split()[4] for line in info.splitlines())

    before = points()
    for spelling in ("//proc", "/var/run", "//", "/", "///dev", "/dev//pts", "/proc/self/.."):
        for args in (("/nonexistent/gone", own_subhost.name, spelling),  # HOSTDIR gone
                     (own_subhost.name, spelling)):  # no HOSTDIR
            result = share("--remove", *args)
            assert result.returncode == 1, (args, result.stderr)
            assert "is not a share" in result.stderr, (args, result.stderr)
        assert points() == before, spelling
    assert inside(own_subhost, "test -e /proc/1/stat && echo ok") == "ok\n"
    # Nor is anything attached onto them.
    for spelling in ("//", "//proc", "/var/run"):
        result = share(str(hostdir), own_subhost.name, spelling)
        assert result.returncode == 1 and "already" in result.stderr, result.stderr
    assert points() == before
