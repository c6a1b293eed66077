"""overlay-share on the real kernel: a host directory attached into a running subhost's mount
namespace (open_tree + move_mount), and detached again; the host's mounts never change."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leaks import run_command, snapshot
from tests.root.subhosts import Subhost, inside, sub

__all__ = ["sub"]  # fixture

pytestmark = pytest.mark.root


@pytest.fixture
def hostdir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / f"share-{secrets.token_hex(3)}"
    directory.mkdir()
    (directory / "from-host").write_text("hello from the host\n")
    yield directory


def host_mounts() -> frozenset[str]:
    """The host's mount points, but the netns binds (other tests' subhosts come and go)."""
    return frozenset(m for m in snapshot().mounts if not m.startswith("/run/netns/"))


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
