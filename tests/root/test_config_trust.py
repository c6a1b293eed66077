"""Who may change what root runs, appends to or binds (security review H1, M4, L6, L11).

Real files, real owners (uid 65534, nobody) and the real commands: a `!` value of a config that
someone else than root could have written must never run, `overlay-stop CONF` and
`overlay-share … CONF` never run `!` values, LOG= is never opened through a symlink or where
the subhost could plant one, SHARE sources must sit below root's directories.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlay_boot import trust
from overlay_boot.errors import ConfigError
from tests.leaks import run_command
from tests.subhostkit import Lab

pytestmark = pytest.mark.root

NOBODY = 65534


def as_nobody(cwd: Path, script: str) -> None:
    """Run SCRIPT as nobody in CWD (a directory nobody owns; its ancestors need not let
    nobody through: the working directory is entered before privileges are dropped)."""
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    "sh", "-c", script], cwd=cwd, check=True)


def subhost_dirs(base: Path) -> None:
    for d in ("live", "root", "work"):
        (base / d).mkdir(parents=True, exist_ok=True)


def root_conf(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    return path


# ---------------------------------------------------------------------------------------------
# H1: the check comes before any `!` value runs


@pytest.mark.parametrize("mode", [(), ("--foreground",)], ids=["background", "foreground"])
def test_bang_in_a_config_written_by_a_user_never_runs(tmp_path: Path, mode) -> None:
    """The review's reproduction: a delegated directory, the user writes the config."""
    alice = tmp_path / "alice"
    subhost_dirs(alice)
    os.chown(alice, NOBODY, NOBODY)
    marker = tmp_path / "ran-as-root"
    as_nobody(alice, f"printf 'BASE=.\\nSTART=none\\nUPPER=!touch {marker}; echo root\\n'"
                     " > alice.conf")
    conf = alice / "alice.conf"
    assert conf.stat().st_uid == NOBODY
    result = run_command("boot", *mode, str(conf))
    assert result.returncode == 78, result.stderr
    assert f"config file {conf} is owned by uid {NOBODY}, not root" in result.stderr
    assert f"directory {alice} is owned by uid {NOBODY}, not root" in result.stderr
    assert not marker.exists(), "a `!` value of a user's config ran as root"


def test_bang_in_a_user_config_never_runs_in_the_unit(tmp_path: Path) -> None:
    """The unit's main process (`--instance NAME`, the config named by the generator's
    drop-in) checks the same way."""
    alice = tmp_path / "alice"
    subhost_dirs(alice)
    os.chown(alice, NOBODY, NOBODY)
    marker = tmp_path / "ran-in-unit"
    as_nobody(alice, f"printf 'BASE=!touch {marker}; echo .\\nSTART=none\\n' > alice.conf")
    result = run_command("boot", "--instance", "alice",
                         env={"OVERLAY_BOOT_CONFIG": str(alice / "alice.conf")})
    assert result.returncode == 78, result.stderr
    assert f"is owned by uid {NOBODY}, not root" in result.stderr
    assert not marker.exists()


def test_bang_in_a_root_config_below_a_user_directory_never_runs(tmp_path: Path) -> None:
    """Root's file in root's directory, but a user owns an ancestor: that user can rename the
    directory away and put anything in its place."""
    srv = tmp_path / "srv"
    base = srv / "sub"
    subhost_dirs(base)
    marker = tmp_path / "ran2"
    conf = root_conf(base / "sub.conf", f"BASE=!touch {marker}; echo .\nSTART=none\n")
    os.chown(srv, NOBODY, NOBODY)
    for mode in ((), ("--foreground",)):
        result = run_command("boot", *mode, str(conf))
        assert result.returncode == 78, result.stderr
        assert f"{conf}: directory {srv} is owned by uid {NOBODY}, not root" in result.stderr
        assert not marker.exists()
    verify = run_command("boot", "--verify", str(conf))
    assert verify.returncode == 78 and f"directory {srv} is owned" in verify.stderr


def test_bang_through_a_symlink_in_a_writable_directory_never_runs(tmp_path: Path) -> None:
    """The config reached through a symlink whose directory others may write."""
    base = tmp_path / "opt" / "sub"
    subhost_dirs(base)
    marker = tmp_path / "ran3"
    real = root_conf(base / "sub.conf", f"BASE=.\nSTART=none\nLIVE=!touch {marker}; echo live\n")
    links = tmp_path / "links"
    links.mkdir()
    (links / "sub.conf").symlink_to(real)
    links.chmod(0o777)
    result = run_command("boot", "--foreground", str(links / "sub.conf"))
    assert result.returncode == 78, result.stderr
    assert f"directory {links} is writable by group and others (mode 0777)" in result.stderr
    assert not marker.exists()


def test_the_walk_checks_what_it_opens(tmp_path: Path) -> None:
    """open_config: symlinks followed by hand (relative, absolute, `..`), sticky directories
    allowed for root's entries only, FIFOs refused without blocking."""

    etc = tmp_path / "etc"
    real = root_conf(etc / "a" / "x.conf", "BASE=.\n")
    (etc / "rel.conf").symlink_to("a/../a/x.conf")
    (etc / "abs.conf").symlink_to(real)
    for path in (real, etc / "rel.conf", etc / "abs.conf"):
        fd, resolved = trust.open_config(path)
        os.close(fd)
        assert resolved == str(real)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    fd, _ = trust.open_config(root_conf(sticky / "root.conf", "BASE=.\n"))
    os.close(fd)
    os.symlink(real, sticky / "user.conf")
    os.chown(sticky / "user.conf", NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(ConfigError, match=f"{sticky}/user.conf is owned by uid {NOBODY}"):
        trust.open_config(sticky / "user.conf")
    os.mkfifo(etc / "fifo.conf")
    with pytest.raises(ConfigError, match="not a regular file"):
        trust.open_config(etc / "fifo.conf")
    (etc / "loop.conf").symlink_to("loop.conf")
    with pytest.raises(ConfigError, match="too many levels of symbolic links"):
        trust.open_config(etc / "loop.conf")
    open_ = tmp_path / "open"
    root_conf(open_ / "x.conf", "BASE=.\n")
    (open_ / "link.conf").symlink_to(open_ / "x.conf")  # passes `open` twice: one message
    open_.chmod(0o777)
    with pytest.raises(ConfigError) as e:
        trust.open_config(open_ / "link.conf")
    assert [p.message for p in e.value.problems] == [
        f"directory {open_} is writable by group and others (mode 0777); "
        "'!' values run as root, so only root may write it"]


# ---------------------------------------------------------------------------------------------
# L6: overlay-stop / overlay-share CONF never run `!` values


def test_stop_and_share_by_config_run_nothing(tmp_path: Path) -> None:
    base = tmp_path / "b"
    subhost_dirs(base)
    markers = [tmp_path / f"m{i}" for i in range(3)]
    conf = root_conf(base / "x.conf",
                     f"NAME=!touch {markers[0]}; echo t{secrets.token_hex(3)}\n"
                     f"BASE=!touch {markers[1]}; echo .\nUPPER=!touch {markers[2]}; echo root\n")
    for command in (("stop", str(conf)), ("share", str(tmp_path), str(conf), "/mnt")):
        result = run_command(*command)
        assert result.returncode == 78, result.stderr
        assert "NAME is a '!' command" in result.stderr
        assert "give the subhost's NAME instead" in result.stderr
    name = f"t{secrets.token_hex(3)}"
    literal = root_conf(base / "y.conf", f"NAME={name}\nBASE=!touch {markers[1]}; echo .\n"
                                         f"UPPER=!touch {markers[2]}; echo root\n")
    result = run_command("stop", str(literal))
    assert result.returncode == 1 and f"subhost {name} is not running" in result.stderr
    assert [m for m in markers if m.exists()] == []


def test_stop_by_config_with_a_bang_name_uses_the_running_record(lab: Lab) -> None:
    """A `!` NAME is found from the running subhost started from that file; and with LOG=,
    a background start writes each line to it once."""
    name = lab.name()
    conf = lab.config(f"NAME=!echo {name}\nSTART=none\n", name=name)
    started = lab.start(conf)
    assert started.returncode == 0, started.stderr
    stopped = lab.stop(str(conf))
    assert stopped.returncode == 0, stopped.stderr
    lines = [re.sub(r"^[0-9-]+ [0-9:]+ ", "", line)
             for line in (conf.parent / "subhost.log").read_text().splitlines()]
    assert lines, "nothing logged"
    assert len(lines) == len(set(lines)), lines


# ---------------------------------------------------------------------------------------------
# M4: LOG=


def test_log_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:

    base = tmp_path / "b"
    subhost_dirs(base)
    victim = tmp_path / "victim"
    victim.write_text("original\n")
    (base / "logs").mkdir()
    (base / "logs" / "sub.log").symlink_to(victim)
    conf = root_conf(base / "b.conf", "BASE=.\nSTART=none\nLOG=logs/sub.log\n")
    for mode in ((), ("--foreground",), ("--verify",)):
        result = run_command("boot", *mode, str(conf))
        assert result.returncode == 78, (mode, result.stderr)
        assert "LOG: LOG" in result.stderr and "is a symlink" in result.stderr
    assert victim.read_text() == "original\n"
    with pytest.raises(ConfigError, match="is a symlink"):  # whatever checked it before
        trust.open_log_file(base / "logs" / "sub.log")
    assert victim.read_text() == "original\n"


def test_log_below_a_user_directory_is_refused(tmp_path: Path) -> None:

    logs = tmp_path / "logs"
    logs.mkdir()
    os.chown(logs, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=f"directory {logs} is owned by uid {NOBODY}"):
        trust.open_log_file(logs / "deeper" / "sub.log")
    assert not (logs / "deeper").exists()
    fd = trust.open_log_file(tmp_path / "new" / "dir" / "sub.log")  # made by root: fine
    os.close(fd)
    assert (tmp_path / "new" / "dir" / "sub.log").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("where", ["root/var/log/sub.log", "work/sub.log", "live/sub.log",
                                   "data/sub.log", "alias/sub.log"])
def test_log_where_the_subhost_writes_is_refused(tmp_path: Path, where: str) -> None:
    base = tmp_path / "b"
    subhost_dirs(base)
    (base / "data").mkdir()
    (base / "alias").symlink_to("root/var/log")  # resolves into UPPER
    (base / "root" / "var" / "log").mkdir(parents=True)
    conf = root_conf(base / "b.conf", f"BASE=.\nSTART=none\nSHARE=data:/data\nLOG={where}\n")
    for mode in ("--verify", "--foreground"):
        result = run_command("boot", mode, str(conf))
        assert result.returncode == 78, (mode, result.stderr)
        assert "LOG: LOG" in result.stderr and "put LOG outside UPPER" in result.stderr
    assert not (base / where).exists()


# ---------------------------------------------------------------------------------------------
# L11: SHARE sources, reachable UPPER


def test_share_source_below_a_user_directory_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    base = tmp_path / "b"
    subhost_dirs(base)
    conf = root_conf(base / "b.conf", f"BASE=.\nSTART=none\nSHARE={home}/data:/data\n")
    assert run_command("boot", "--verify", str(conf)).returncode == 0
    os.chown(home, NOBODY, NOBODY)  # nobody could swap data for a link to /etc
    for mode in ("--verify", "--foreground"):
        result = run_command("boot", mode, str(conf))
        assert result.returncode == 78, (mode, result.stderr)
        assert (f"SHARE: SHARE source {home}/data: directory {home} is owned by uid "
                f"{NOBODY}, not root") in result.stderr


def test_share_source_owned_by_a_user_in_a_sticky_directory_is_refused(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    (sticky / "data").mkdir(parents=True)
    sticky.chmod(0o1777)
    base = tmp_path / "b"
    subhost_dirs(base)
    conf = root_conf(base / "b.conf", f"BASE=.\nSTART=none\nSHARE={sticky}/data:/data\n")
    assert run_command("boot", "--verify", str(conf)).returncode == 0
    os.chown(sticky / "data", NOBODY, NOBODY)  # its owner may rename it away
    result = run_command("boot", "--verify", str(conf))
    assert result.returncode == 78
    assert f"{sticky}/data is owned by uid {NOBODY} in directory {sticky}" in result.stderr


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every host user can reach (tmp_path's ancestors are root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ob-trust-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_warning_when_every_user_can_reach_upper(open_dir: Path) -> None:
    base = open_dir / "b"
    subhost_dirs(base)
    base.chmod(0o755)
    conf = root_conf(base / "b.conf", "BASE=.\nSTART=none\n")
    result = run_command("boot", "--verify", str(conf))
    assert result.returncode == 0, result.stderr
    assert f"warning: {conf}: UPPER {base}/root can be reached by unprivileged host users" \
        in result.stderr
    assert f"run chmod 700 {base}" in result.stderr
    base.chmod(0o700)
    result = run_command("boot", "--verify", str(conf))
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
