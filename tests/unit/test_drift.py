"""The pure parts of overlay-diff/overlay-reset: drift rules, path filters, dpkg status parsing,
the apt hook's installation."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from overlay_boot import drift, packages
from overlay_boot.cli.diff import entry_line
from overlay_boot.cli.reset import outermost

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000_000


def st(mode: int, *, size: int = 0, mtime: int = 0, ctime: int = 0,
       uid: int = 0) -> os.stat_result:
    """A stat result with times in seconds (the _ns fields follow)."""
    result = os.stat_result((mode, 1, 1, 1, uid, 0, size, mtime, mtime, ctime,
                             mtime, mtime, ctime, mtime * S, mtime * S, ctime * S))
    assert result.st_mtime_ns == mtime * S and result.st_ctime_ns == ctime * S
    return result


REG = stat.S_IFREG | 0o644
LNK = stat.S_IFLNK | 0o777
DIR = stat.S_IFDIR | 0o755


def copy_shadowed(*args: object) -> bool:
    """is_shadowed of an upper entry overlayfs marked as a copy-up."""
    return drift.is_shadowed(*args, copied_up=True)  # type: ignore[arg-type]


def test_lower_changed_after_the_upper_was_born() -> None:
    upper = st(REG, size=5, mtime=100, ctime=100)  # written by the subhost at 100
    assert copy_shadowed(upper, 50 * S, st(REG, size=5, mtime=60, ctime=60))
    assert not copy_shadowed(upper, 50 * S, st(REG, size=5, mtime=40, ctime=40))
    # written again after the host's change: its birth still says it
    assert copy_shadowed(upper, 50 * S, st(REG, size=5, mtime=60, ctime=70))
    # without a birth time: its ctime
    assert not copy_shadowed(upper, None, st(REG, size=5, mtime=60, ctime=70))
    assert copy_shadowed(upper, None, st(REG, size=5, mtime=60, ctime=170))


def test_an_unwritten_copy_differs_from_its_lower_file() -> None:
    copy = st(REG, size=5, mtime=10, ctime=100)  # chmod copy-up at 100 of a file from 10
    assert not copy_shadowed(copy, 100 * S, st(REG, size=5, mtime=10, ctime=20))
    assert copy_shadowed(copy, 100 * S, st(REG, size=6, mtime=10, ctime=20))
    assert copy_shadowed(copy, 100 * S, st(REG, size=5, mtime=11, ctime=20))
    assert copy_shadowed(copy, 100 * S, st(LNK, size=5, mtime=10, ctime=20))
    link = st(LNK, size=1, mtime=10, ctime=100)
    assert copy_shadowed(link, 100 * S, st(LNK, size=1, mtime=10, ctime=20), "a", "b")
    assert not copy_shadowed(link, 100 * S, st(LNK, size=1, mtime=10, ctime=20), "a", "a")
    # a written file's content is the subhost's: sizes are not compared
    written = st(REG, size=9, mtime=100, ctime=100)
    assert not copy_shadowed(written, 100 * S, st(REG, size=5, mtime=10, ctime=20))
    # made in the subhost and renamed into place (sed -i, ln -sf): its mtime is older than its
    # ctime as a copy-up's is, but overlayfs did not mark it as a copy: its content is its own
    renamed = st(REG, size=9, mtime=99, ctime=100)
    assert copy_shadowed(renamed, 100 * S, st(REG, size=5, mtime=10, ctime=20))
    assert not drift.is_shadowed(renamed, 100 * S, st(REG, size=5, mtime=10, ctime=20),
                                 copied_up=False)
    assert not drift.is_shadowed(link, 100 * S, st(LNK, size=1, mtime=10, ctime=20), "a", "b",
                                 copied_up=False)
    # directories: only by time
    assert not copy_shadowed(st(DIR, mtime=10, ctime=100), 100 * S,
                             st(DIR, mtime=20, ctime=20))


def test_types_and_whiteouts() -> None:
    assert [drift.type_of(m) for m in (REG, DIR, LNK, stat.S_IFIFO, stat.S_IFCHR)] == [
        "file", "dir", "symlink", "other", "other"]
    assert not drift.is_whiteout_device(os.stat("/dev/null"))  # 1/3
    assert not drift.is_whiteout_device(st(REG))


def test_path_filter() -> None:
    assert drift.normalize("/etc/ssh/") == "etc/ssh" and drift.normalize("/") == ""
    assert drift.normalize("/a/../etc//x") == "etc/x"
    f = drift._Filter(["/etc/ssh", "/var/lib/dpkg/status"])
    assert [f.wants(p) for p in ("etc", "etc/ssh", "etc/ssh/x", "etc/sshd", "var/lib")] == [
        False, True, True, False, False]
    assert [f.enters(p) for p in ("etc", "var", "var/lib", "usr", "etc/sshd")] == [
        True, True, True, False, False]
    everything = drift._Filter([])
    assert everything.wants("x") and everything.enters("x")
    assert drift._Filter(["/"]).wants("anything")


def test_entry_line_and_json() -> None:
    entry = drift.Entry("/etc/a\nb", "modified", "file", 12, True, "/")
    assert entry_line(entry) == "modified file            12 shadowed /etc/a\\nb"
    assert entry.as_dict() == {"path": "/etc/a\nb", "kind": "modified", "type": "file",
                               "shadowed": True, "size": 12, "lower": "/"}


def test_outermost() -> None:
    assert outermost(["etc/a/b", "etc/a", "etc/ab", "var", "etc/a"]) == [
        "etc/a", "etc/ab", "var"]


STATUS = """\
Package: base-files
Status: install ok installed
Priority: required
Version: 12.4+deb12u5
Description: base
 multi-line
 Version: not this

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: amd64
Version: 2.36-9

Package: removed
Status: deinstall ok config-files
Version: 1.0
"""


def test_dpkg_status() -> None:
    assert packages.parse_status(STATUS) == {"base-files": "12.4+deb12u5",
                                             "libc6:amd64": "2.36-9"}
    host = {"a": "1", "b": "2", "c": "3"}
    sub = {"a": "1", "b": "2.1", "d": "4"}
    assert packages.version_changes(host, sub) == {
        "b": ("2", "2.1"), "c": ("3", None), "d": (None, "4")}


def test_opaque_directories_own_package_files() -> None:
    opaque = {"/etc/apt": drift.Entry("/etc/apt", "opaque", "dir", 0, False)}
    assert packages._under_opaque("/etc/apt/sources.list.d/x", opaque) is opaque["/etc/apt"]
    assert packages._under_opaque("/etc/aptitude", opaque) is None


@pytest.mark.parametrize("prefix,hook", [("/usr", True), ("/usr/local", False)])
def test_the_apt_hook_is_installed_with_the_package_layout(tmp_path: Path, prefix: str,
                                                           hook: bool) -> None:
    dest = tmp_path / "dest"
    r = subprocess.run(["make", "-s", "-C", str(REPO), "install", f"DESTDIR={dest}",
                        f"PREFIX={prefix}", "COMPILE=no"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "MAKEFLAGS"})
    assert r.returncode == 0, r.stderr
    path = dest / "etc/apt/apt.conf.d/50overlay-boot"
    assert path.exists() == hook
    for command in ("overlay-diff", "overlay-reset"):
        assert (dest / prefix.lstrip("/") / "sbin" / command).exists()
        assert (dest / prefix.lstrip("/") / "share/man/man8" / f"{command}.8").exists()
    if not hook:
        return
    # apt itself reads it: both hooks, every command guarded so that apt never fails
    dump = subprocess.run(["apt-config", "-c", str(path), "dump"], capture_output=True,
                          text=True, check=True).stdout
    pre = [line for line in dump.splitlines() if line.startswith("DPkg::Pre-Invoke")]
    post = [line for line in dump.splitlines() if line.startswith("DPkg::Post-Invoke")]
    assert any("/usr/sbin/overlay-diff --dpkg-hook pre" in line for line in pre), pre
    assert any("timeout" in line and "/usr/sbin/overlay-diff --dpkg-hook post" in line
               and "|| true" in line for line in post), post
    # the hook's shell commands, run as apt runs them, succeed without overlay-diff
    for line in (*pre, *post):
        if "overlay-diff" not in line:
            continue
        command = line.split('"', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
        command = command.replace("/usr/sbin/overlay-diff", str(tmp_path / "missing"))
        assert subprocess.run(["sh", "-c", command]).returncode == 0
    r = subprocess.run(["make", "-s", "-C", str(REPO), "uninstall", f"DESTDIR={dest}",
                        f"PREFIX={prefix}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not path.exists()


def test_json_lines_are_json_of_the_entry() -> None:
    from overlay_boot.cli.diff import json_line

    for entry in (drift.Entry("/etc/a\nb\"ü", "modified", "file", 12, True, "/"),
                  drift.Entry("/bad-\udcff", "added", "other", 0, False)):
        line = json_line(entry)
        assert line.isascii() and "\n" not in line
        assert json.loads(line) == entry.as_dict()
