"""overlay-diff and overlay-reset on real overlayfs: every change is made through a mounted
overlay in a private mount namespace (``unshare -m``: the mount goes with the namespace), as a
subhost would make it; the host side changes the lower layers directly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.leaks import run_command
from tests.subhostkit import Lab

pytestmark = pytest.mark.root


class Overlay:
    """LOWER layers (top first), UPPER, WORK and a config naming them, under DIRECTORY."""

    def __init__(self, directory: Path, layers: int = 1) -> None:
        self.dir = directory
        directory.mkdir(mode=0o755)
        directory.parent.chmod(0o755)
        self.lowers = [directory / f"lower{i}" for i in range(layers)]
        self.upper = directory / "upper"
        for d in (*self.lowers, self.upper, directory / "work", directory / "live"):
            d.mkdir()
        self.conf = directory / "sub.conf"
        lower = ":".join(str(p) for p in self.lowers)
        self.conf.write_text(f"NAME=d{os.getpid() % 100000}\nBASE=.\nLOWER={lower}\n"
                             "UPPER=upper\nWORK=work\nLIVE=live\nSTART=none\n")
        self.conf.chmod(0o644)

    def lower(self, rel: str, text: str | None = None, layer: int = 0) -> Path:
        path = self.lowers[layer] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is not None:
            path.write_text(text)
        return path

    def inside(self, script: str) -> str:
        """SCRIPT (sh) with the overlay mounted as its current directory."""
        options = (f"lowerdir={':'.join(str(p) for p in self.lowers)},upperdir={self.upper},"
                   f"workdir={self.dir / 'work'}")
        live = self.dir / "live"
        r = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-ec",
             f"mount -t overlay overlay -o {options} {live}; cd {live}; {script}"],
            capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def diff(self, *args: str, status: int = 0) -> list[dict]:
        r = run_command("diff", str(self.conf), "--json", *args)
        assert r.returncode == status, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    def table(self, *args: str) -> dict[str, tuple]:
        return {e["path"]: (e["kind"], e["type"], e["shadowed"], e["size"])
                for e in self.diff(*args)}


def later() -> None:
    """Let the clock move on (ctime resolution: the kernel's timer tick)."""
    time.sleep(0.05)


@pytest.fixture
def ov(tmp_path: Path) -> Overlay:
    return Overlay(tmp_path / "ov")


def test_every_kind_of_change(ov: Overlay) -> None:
    for name in ("edited", "chmodded", "deleted", "xattr", "linkname"):
        ov.lower(f"etc/{name}", f"{name}\n")
    ov.lower("etc/link").symlink_to("edited")
    ov.lower("etc/dir/inner", "inner\n")
    ov.lower("etc/modes/keep", "k\n")
    ov.lower("etc/merged/keep", "k\n")
    ov.inside(
        "echo more >> etc/edited; chmod 600 etc/chmodded; rm etc/deleted; "
        "python3 -c 'import os; os.setxattr(\"etc/xattr\", \"user.test\", b\"1\")'; "
        "ln -sfn linkname etc/link; rm -rf etc/dir && mkdir etc/dir && echo new > etc/dir/new; "
        "chmod 700 etc/modes; echo x > etc/merged/added; mkdir -p new/sub; mkfifo new/fifo; "
        "mknod new/null c 1 3"
    )
    assert ov.table() == {
        "/etc/edited": ("modified", "file", False, len("edited\nmore\n")),
        "/etc/chmodded": ("modified", "file", False, len("chmodded\n")),
        "/etc/deleted": ("deleted", "file", False, 0),
        "/etc/xattr": ("modified", "file", False, len("xattr\n")),
        "/etc/link": ("modified", "symlink", False, len("linkname")),
        "/etc/dir": ("opaque", "dir", False, 0),
        "/etc/dir/new": ("added", "file", False, 4),
        "/etc/modes": ("modified", "dir", False, 0),
        "/etc/merged/added": ("added", "file", False, 2),
        "/new": ("added", "dir", False, 0),
        "/new/sub": ("added", "dir", False, 0),
        "/new/fifo": ("added", "other", False, 0),
        "/new/null": ("added", "other", False, 0),
    }
    # the whiteout is the kernel's character device 0/0
    st = os.lstat(ov.upper / "etc/deleted")
    assert (st.st_mode & 0o170000, st.st_rdev) == (0o020000, 0)
    # PATH arguments: those and what is below them; nothing else
    assert set(ov.table("/etc/dir", "/new/sub")) == {"/etc/dir", "/etc/dir/new", "/new/sub"}
    assert ov.table("/nothing/here") == {}
    every = ov.diff()
    assert all(e["lower"] == str(ov.lowers[0]) for e in every if e["kind"] != "added")
    assert set(every[0]) >= {"path", "kind", "type", "shadowed", "size"}


def test_text_output(ov: Overlay) -> None:
    ov.lower("etc/a", "a\n")
    ov.inside("echo b >> etc/a")
    later()
    ov.lower("etc/a", "host\n")
    r = run_command("diff", str(ov.conf))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["modified", "file", "4", "shadowed", "/etc/a"]


def test_xattr_forms_of_whiteouts_and_opaque_directories(ov: Overlay) -> None:
    """The forms a kernel with xattr whiteouts (or a userxattr mount) writes; set by hand."""
    ov.lower("a/gone", "g\n")
    ov.lower("b/x", "x\n")
    ov.lower("c/y", "y\n")
    ov.lower("d/z", "z\n")
    for d in ("a", "b", "c", "d"):
        (ov.upper / d).mkdir()
    (ov.upper / "a/gone").write_bytes(b"")
    os.setxattr(ov.upper / "a/gone", "trusted.overlay.whiteout", b"")
    os.setxattr(ov.upper / "b", "trusted.overlay.opaque", b"y")
    os.setxattr(ov.upper / "c", "user.overlay.opaque", b"y")
    os.setxattr(ov.upper / "d", "trusted.overlay.opaque", b"x")  # holds whiteouts: merged
    (ov.upper / "d/empty").write_bytes(b"")
    os.setxattr(ov.upper / "d/empty", "user.overlay.whiteout", b"")
    assert ov.table() == {
        "/a/gone": ("deleted", "file", False, 0),
        "/b": ("opaque", "dir", False, 0),
        "/c": ("opaque", "dir", False, 0),
        "/d/empty": ("deleted", "other", False, 0),  # a whiteout with nothing below
    }


def test_several_lower_layers(tmp_path: Path) -> None:
    ov = Overlay(tmp_path / "ov", layers=2)
    ov.lower("etc/bottom", "bottom\n", layer=1)
    ov.lower("etc/both", "top\n", layer=0)
    ov.lower("etc/both", "bottom\n", layer=1)
    ov.lower("etc/hidden", "bottom\n", layer=1)
    os.mknod(ov.lower("etc/hidden"), 0o020000 | 0o600, 0)  # a whiteout in the top layer
    ov.lower("opaque/below", "bottom\n", layer=1)
    ov.lower("opaque/top", "top\n", layer=0)
    os.setxattr(ov.lowers[0] / "opaque", "trusted.overlay.opaque", b"y")
    ov.inside("cat etc/bottom etc/both > /dev/null; test ! -e etc/hidden; test ! -e opaque/below;"
              "echo 1 >> etc/bottom; echo 1 >> etc/both; echo new > etc/hidden; "
              "echo new > opaque/below; echo 1 >> opaque/top")
    entries = {e["path"]: (e["kind"], e["lower"]) for e in ov.diff()}
    assert entries == {
        "/etc/bottom": ("modified", str(ov.lowers[1])),
        "/etc/both": ("modified", str(ov.lowers[0])),
        "/etc/hidden": ("added", None),  # the top layer's whiteout hides the bottom one's
        "/opaque/below": ("added", None),  # the top layer's opaque directory hides it
        "/opaque/top": ("modified", str(ov.lowers[0])),
    }


def test_host_changes_after_a_copy_up_show_as_shadowed(ov: Overlay) -> None:
    for name in ("content", "metadata", "untouched", "gone", "later"):
        ov.lower(f"etc/{name}", f"{name}\n")
    ov.lower("etc/conf.d/a", "a\n")
    ov.inside("echo local >> etc/content; chmod 600 etc/metadata; chmod 600 etc/untouched; "
              "rm etc/gone; rm -rf etc/conf.d; mkdir etc/conf.d; echo mine > etc/conf.d/mine")
    assert [e for e in ov.diff() if e["shadowed"]] == []
    later()
    # the host upgrades: new files replace the old ones (as dpkg does, by rename)
    for name in ("content", "metadata", "gone"):
        new = ov.lower(f"etc/.{name}.new", "upgraded\n")
        new.rename(ov.lower(f"etc/{name}"))
    ov.lower("etc/conf.d/b", "b\n")  # a new file in a directory the subhost replaced
    later()
    ov.inside("echo after >> etc/later")  # copied up after the host's change: not shadowed
    table = ov.table()
    assert {p for p, v in table.items() if v[2]} == {
        "/etc/content", "/etc/metadata", "/etc/gone", "/etc/conf.d"}
    assert table["/etc/untouched"][2] is False and table["/etc/later"][2] is False
    assert {e["path"] for e in ov.diff("--shadowed")} == {
        "/etc/content", "/etc/metadata", "/etc/gone", "/etc/conf.d"}
    assert all(e["shadowed"] for e in ov.diff("--shadowed"))


def test_files_renamed_into_place_by_the_subhost_are_not_shadowed(ov: Overlay) -> None:
    """sed -i, ln -sf and editors write a new file and rename it over the old one: a moment
    later, so its mtime is older than its ctime, as an unwritten copy-up's is. It is the
    subhost's own content, not a copy of an older host file."""
    ov.lower("etc/conf", "host\n")
    ov.lower("etc/target", "t\n")
    ov.lower("etc/link").symlink_to("target")
    ov.lower("etc/copied", "copied\n")
    ov.inside("echo mine > etc/.conf.new; ln -s elsewhere etc/.link.new; sleep 0.05; "
              "mv etc/.conf.new etc/conf; mv -T etc/.link.new etc/link; chmod 600 etc/copied")
    assert ov.table() == {
        "/etc/conf": ("modified", "file", False, len("mine\n")),
        "/etc/link": ("modified", "symlink", False, len("elsewhere")),
        "/etc/copied": ("modified", "file", False, len("copied\n")),
    }
    later()
    # the host changes its copy in place (same ctime rule catches it); and an untouched copy-up
    # whose lower file differs now is still told apart from the renamed ones
    with open(ov.lower("etc/copied"), "a") as f:
        f.write("more\n")
    assert {p: v[2] for p, v in ov.table().items()} == {
        "/etc/conf": False, "/etc/link": False, "/etc/copied": True}


def test_symlinks_planted_in_upper_are_not_followed(ov: Overlay, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_text("s\n")
    (outside / "sub/keep").write_text("k\n")
    ov.lower("etc/x", "x\n")
    ov.lower("var/x", "x\n")
    # what a subhost's root can do in its own upper directory (here: directly)
    (ov.upper / "etc").symlink_to(outside)
    (ov.upper / "var").mkdir()
    (ov.upper / "var/link").symlink_to(outside)
    (ov.upper / "var/x").write_text("mine\n")
    table = ov.table()
    assert table == {"/etc": ("modified", "symlink", False, len(str(outside))),
                     "/var/link": ("added", "symlink", False, len(str(outside))),
                     "/var/x": ("modified", "file", False, 5)}
    # reset: a path through the planted symlink is refused, removing /var leaves outside alone
    r = run_command("reset", "--no-backup", str(ov.conf), "/etc/secret")
    assert r.returncode == 1 and "nothing in UPPER at /etc/secret" in r.stderr, r.stderr
    r = run_command("reset", "--no-backup", str(ov.conf), "/var", "/etc")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(outside)) == ["secret", "sub"]
    assert (outside / "sub/keep").read_text() == "k\n"
    assert os.listdir(ov.upper) == []


def test_reset_restores_the_lower_view_and_the_backup_the_upper_one(ov: Overlay,
                                                                   tmp_path: Path) -> None:
    ov.lower("etc/a", "a\n")
    ov.lower("etc/b", "b\n")
    ov.lower("etc/dir/x", "x\n")
    ov.lower("etc/keep", "k\n")
    ov.inside("echo changed > etc/a; rm etc/b; rm -rf etc/dir; mkdir etc/dir; "
              "echo new > etc/dir/new; echo mine > etc/keep; "
              "python3 -c 'import os; os.setxattr(\"etc/a\", \"user.note\", b\"\\xff\\x00bin\")'")
    before = ov.diff()
    view = "cat etc/a; test -e etc/b && echo b-shows; ls etc/dir; cat etc/keep"
    assert ov.inside(view) == "changed\nnew\nmine\n"
    backup = tmp_path / "backup.tar"
    dry = run_command("reset", "--dry-run", str(ov.conf), "/etc/a", "/etc/b", "/etc/dir")
    assert dry.returncode == 0, dry.stderr
    assert "would remove /etc/dir (2 upper entries)" in dry.stdout
    assert ov.diff() == before and not backup.exists()
    r = run_command("reset", "--backup", str(backup), str(ov.conf), "/etc/a", "/etc/b",
                    "/etc/dir")
    assert r.returncode == 0, r.stderr
    assert [e["path"] for e in ov.diff()] == ["/etc/keep"]
    assert ov.inside(view) == "a\nb-shows\nx\nmine\n"
    # the backup, restored with tar, brings the subhost's versions back exactly
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xpf", str(backup), "-C",
                    str(ov.upper)], check=True, capture_output=True)
    assert [(e["path"], e["kind"], e["type"], e["size"]) for e in ov.diff()] == \
        [(e["path"], e["kind"], e["type"], e["size"]) for e in before]
    assert ov.inside(view) == "changed\nnew\nmine\n"
    assert os.getxattr(ov.upper / "etc/a", "user.note") == b"\xff\x00bin"
    assert os.getxattr(ov.upper / "etc/dir", "trusted.overlay.opaque") == b"y"
    # asking for an entry UPPER doesn't have changes nothing
    r = run_command("reset", "--no-backup", str(ov.conf), "/etc/a", "/etc/none")
    assert r.returncode == 1 and "nothing in UPPER at /etc/none" in r.stderr
    assert (ov.upper / "etc/a").exists()


def test_reset_shadowed_with_the_default_backup(ov: Overlay, tmp_path: Path) -> None:
    ov.lower("etc/drifted", "old\n")
    ov.lower("etc/mine", "old\n")
    ov.inside("chmod 600 etc/drifted; echo mine > etc/mine")
    later()
    ov.lower("etc/drifted", "upgraded\n")
    backups = tmp_path / "backups"
    r = run_command("reset", "--shadowed", str(ov.conf),
                    env={"OVERLAY_BOOT_BACKUP_DIR": str(backups)})
    assert r.returncode == 0, r.stderr
    assert "removed /etc/drifted (1 upper entries)" in r.stdout
    assert [e["path"] for e in ov.diff()] == ["/etc/mine"]
    assert ov.inside("cat etc/drifted") == "upgraded\n"
    [backup] = backups.iterdir()
    assert (backups.stat().st_mode & 0o777, backup.stat().st_mode & 0o777) == (0o700, 0o600)
    names = subprocess.run(["tar", "-tf", str(backup)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert names == ["etc/drifted"]
    again = run_command("reset", "--shadowed", str(ov.conf), "--no-backup")
    assert again.returncode == 0 and "nothing to reset" in again.stdout


def test_packages(ov: Overlay) -> None:
    ov.lower("var/lib/dpkg/info/foo.list", "/.\n/etc\n/etc/foo.conf\n/etc/foo.d\n")
    ov.lower("var/lib/dpkg/info/libbar:amd64.list", "/usr\n/usr/lib/libbar.so\n")
    ov.lower("var/lib/dpkg/info/quiet.list", "/etc/quiet\n")
    status = ("Package: foo\nStatus: install ok installed\nVersion: 1.0\n\n"
              "Package: libbar\nStatus: install ok installed\nMulti-Arch: same\n"
              "Architecture: amd64\nVersion: 2.0\n\n"
              "Package: quiet\nStatus: install ok installed\nVersion: 3\n")
    ov.lower("var/lib/dpkg/status", status)
    ov.lower("etc/foo.conf", "foo\n")
    ov.lower("etc/quiet", "q\n")
    ov.lower("usr/lib/libbar.so", "bar\n")
    ov.inside("echo local >> etc/foo.conf; rm usr/lib/libbar.so; "
              "sed -i 's/Version: 2.0/Version: 2.1/' var/lib/dpkg/status")
    r = run_command("diff", "--packages", str(ov.conf), "--json")
    assert r.returncode == 0, r.stderr
    found = {p["package"]: p for p in map(json.loads, r.stdout.splitlines())}
    assert set(found) == {"foo", "libbar:amd64"}
    assert [f["path"] for f in found["foo"]["files"]] == ["/etc/foo.conf"]
    assert found["foo"]["version_differs"] is False
    bar = found["libbar:amd64"]
    assert [(f["path"], f["kind"]) for f in bar["files"]] == [("/usr/lib/libbar.so", "deleted")]
    assert (bar["host_version"], bar["subhost_version"], bar["version_differs"]) == \
        ("2.0", "2.1", True)
    text = run_command("diff", "--packages", str(ov.conf)).stdout.splitlines()
    assert text == ["foo  files: /etc/foo.conf", "libbar:amd64  files: /usr/lib/libbar.so",
                    "libbar:amd64  version: host 2.0, subhost 2.1"]


def test_planted_dpkg_status_symlink_is_not_read(ov: Overlay, tmp_path: Path) -> None:
    ov.lower("var/lib/dpkg/info/foo.list", "/etc/foo\n")
    ov.lower("var/lib/dpkg/status", "Package: foo\nStatus: install ok installed\nVersion: 1\n")
    outside = tmp_path / "elsewhere"
    outside.write_text("Package: foo\nStatus: install ok installed\nVersion: 666\n")
    (ov.upper / "var/lib/dpkg").mkdir(parents=True)
    (ov.upper / "var/lib/dpkg/status").symlink_to(outside)
    r = run_command("diff", "--packages", "--json", str(ov.conf))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # not followed: no version from the file it points to


def test_a_removal_that_fails_says_so(ov: Overlay, tmp_path: Path) -> None:
    ov.lower("etc/a", "a\n")
    ov.inside("echo mine > etc/a")
    backup = tmp_path / "backup.tar"
    subprocess.run(["chattr", "+i", str(ov.upper / "etc/a")], check=True)
    try:
        r = run_command("reset", "--backup", str(backup), str(ov.conf), "/etc/a")
    finally:
        subprocess.run(["chattr", "-i", str(ov.upper / "etc/a")], check=True)
    assert r.returncode == 1
    assert "cannot remove /etc/a from UPPER" in r.stderr and str(backup) in r.stderr
    assert (ov.upper / "etc/a").read_text() == "mine\n"


def test_bad_arguments_and_configs(ov: Overlay, tmp_path: Path) -> None:
    for args in (("reset", str(ov.conf)), ("reset", str(ov.conf), "--shadowed", "/etc"),
                 ("reset", str(ov.conf), "etc/x"), ("reset", str(ov.conf), "/"),
                 ("diff", str(ov.conf), "relative"), ("diff", "--no-such-option"),
                 ("diff",), ("reset", "--backup", "f", "--no-backup", str(ov.conf), "/x"),
                 ("diff", "--dpkg-hook", "post", str(ov.conf))):
        r = run_command(*args)
        assert r.returncode == 64, (args, r.stderr)
        assert r.stderr.strip(), args
    bad = tmp_path / "bad.conf"
    bad.write_text("BASE=.\nRAM_SIZE=lots\n")
    for cmd in (("diff",), ("reset", "--no-backup")):
        r = run_command(*cmd, str(bad), "/etc")
        assert r.returncode == 78, r.stderr
        assert f"{bad}:2: RAM_SIZE" in r.stderr
        r = run_command(*cmd, "tnosuch", "/etc",
                        env={"OVERLAY_BOOT_CONFIG_DIR": str(tmp_path)})
        assert r.returncode == 78 and "no configuration for subhost" in r.stderr
    plain = tmp_path / "plain.conf"  # UPPER is LOWER: no overlay to compare
    plain.write_text(f"BASE=.\nUPPER={ov.lowers[0]}\nLOWER={ov.lowers[0]}\n")
    r = run_command("diff", str(plain))
    assert r.returncode == 1 and "no overlay" in r.stderr
    commands = tmp_path / "commands.conf"  # UPPER from a command: not run
    marker = tmp_path / "ran"
    commands.write_text(f"BASE=.\nUPPER=!touch {marker}; echo upper\n")
    r = run_command("diff", str(commands))
    assert r.returncode == 1 and "UPPER" in r.stderr and not marker.exists()


def test_running_subhost(lab: Lab, tmp_path: Path) -> None:
    """overlay-diff reads a running subhost; overlay-reset refuses it; the apt hook reports
    what it shadows of the packages dpkg just changed."""
    host_file = tmp_path / "pkgfile"
    host_file.write_text("host\n")
    conf = lab.config("START=none\n")
    name = conf.parent.name
    r = lab.start(conf)
    assert r.returncode == 0, r.stderr
    r = lab.go(name, "sh", "-c", f"chmod 600 {host_file}; echo hi > /root/{name}")
    assert r.returncode == 0, r.stderr
    r = run_command("diff", "--json", name, str(tmp_path), f"/root/{name}")
    assert r.returncode == 0, r.stderr
    assert {(e["path"], e["kind"]) for e in map(json.loads, r.stdout.splitlines())} >= {
        (str(host_file), "modified"), (f"/root/{name}", "added")}
    upper_file = conf.parent / "root" / str(host_file).lstrip("/")
    r = run_command("reset", "--no-backup", name, str(host_file))
    assert r.returncode == 1 and f"subhost {name} is running" in r.stderr, r.stderr
    assert upper_file.exists()
    # the apt hook: a fake package owning host_file changes on the host
    info = tmp_path / "info"
    info.mkdir()
    journal = tmp_path / "journal.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(journal))
    sock.settimeout(10)
    env = {"OVERLAY_BOOT_DPKG_INFO": str(info), "OVERLAY_BOOT_JOURNAL_SOCKET": str(journal)}
    try:
        (info / "unchanged.list").write_text(f"{host_file}\n")
        os.utime(info / "unchanged.list", (0, 0))
        assert run_command("diff", "--dpkg-hook", "pre", env=env).returncode == 0
        (info / "fakepkg.list").write_text(f"/\n{tmp_path}\n{host_file}\n{tmp_path}/other\n")
        r = run_command("diff", "--dpkg-hook", "post", env=env)
        assert r.returncode == 0, r.stderr
        assert name in r.stderr
        messages = [sock.recv(65536).decode()]
        sock.settimeout(0.2)
        try:
            while True:
                messages.append(sock.recv(65536).decode())
        except TimeoutError:
            pass
        mine = [m for m in messages if f"OVERLAY_BOOT_SUBHOST={name}\n" in m]
        assert len(mine) == 1, messages
        assert f"shadows 1 file(s) of the just changed package fakepkg: {host_file}" in mine[0]
        assert "SYSLOG_IDENTIFIER=overlay-boot-dpkg\n" in mine[0]
        assert "PRIORITY=4\n" in mine[0]
    finally:
        sock.close()
    # never failing apt: without a journal or dpkg's file lists it still exits 0
    r = run_command("diff", "--dpkg-hook", "post",
                    env={**env, "OVERLAY_BOOT_JOURNAL_SOCKET": str(tmp_path / "none"),
                         "OVERLAY_BOOT_DPKG_INFO": str(tmp_path / "missing")})
    assert r.returncode == 0, r.stderr
    assert lab.stop(name).returncode == 0
    r = run_command("reset", "--no-backup", str(conf), str(host_file))
    assert r.returncode == 0, r.stderr
    assert not upper_file.exists()
    assert not Path(f"/run/overlay-boot/{name}.lock").exists()
