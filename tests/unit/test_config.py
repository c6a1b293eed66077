"""Parsing semantics of config files (SPEC §2, 1.6.4's `functions`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlay_boot import config
from overlay_boot.config import KNOWN, Cable, Share, Vlan, read_value
from overlay_boot.errors import ConfigError
from overlay_boot.proc import run_command


def load_config(path: str | Path, **kwargs) -> config.Config:
    """The parser as a command that runs `!` values calls it; ``run=None`` runs none."""
    kwargs.setdefault("run", run_command)
    return config.load_config(path, **kwargs)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def problems_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    return [str(p) for p in info.value.problems]


# -- basics and defaults -----------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    conf = write(tmp_path / "xmpl.conf", "BASE=.\n")
    c = load_config(conf)
    assert c.path == conf
    assert c.name == "xmpl"
    assert c.base == tmp_path
    assert (c.live, c.upper, c.work) == (tmp_path / "live", tmp_path / "root", tmp_path / "work")
    assert c.lower == (Path("/"),)
    assert c.start == ("networking", "ssh")
    assert c.ram_size == "50M"
    assert (c.cables, c.vlans, c.shares) == ((), (), ())
    assert (c.premount, c.postmount, c.init, c.log) == (None, None, None, None)
    assert c.warnings == ()
    assert c.unresolved == frozenset()
    assert dict(c.lines) == {"BASE": 1}
    assert c.variant == "overlay"


def test_relative_path_argument_becomes_absolute(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "a.conf", "BASE=.\n")
    monkeypatch.chdir(tmp_path)
    c = load_config("a.conf")
    assert c.path == tmp_path / "a.conf"
    assert c.base == tmp_path


def test_value_syntax(tmp_path: Path) -> None:
    conf = write(tmp_path / "s.conf", "\n".join([
        "# a comment",
        " NAME=indented-is-ignored",
        "NAME =spaced-var-is-ignored",
        "BASE=  .  \t",
        "NAME=\tsub  ",
        "START=   ",  # empty: default
        "",
    ]))
    c = load_config(conf)
    assert c.name == "sub"
    assert c.base == tmp_path
    assert c.start == ("networking", "ssh")
    assert c.lines["NAME"] == 5


def test_first_assignment_wins(tmp_path: Path) -> None:
    conf = write(tmp_path / "f.conf", "BASE=.\nNAME=one\nNAME=two\nSTART=none\nSTART=ssh\n")
    c = load_config(conf)
    assert c.name == "one"
    assert c.start == ()
    assert c.lines["NAME"] == 2
    assert any(f"{conf}:3: NAME assigned again" in w for w in c.warnings)


def test_first_empty_assignment_means_default(tmp_path: Path) -> None:
    # 1.6.4 reads the first matching line only: an empty first NAME= gives the default.
    conf = write(tmp_path / "f.conf", "BASE=.\nNAME=\nNAME=two\n")
    assert load_config(conf).name == "f"
    conf = write(tmp_path / "g.conf", "BASE=\nBASE=.\n")
    assert any("BASE is required" in p for p in problems_of(conf))


def test_crlf(tmp_path: Path) -> None:
    conf = write(tmp_path / "w.conf", b"BASE=.\r\nNAME=win\r\nCABLES==02:00:00:00:00:01\r\n")
    c = load_config(conf)
    assert c.name == "win"
    assert c.cables[0].mac == "02:00:00:00:00:01"


def test_unknown_variable_is_a_warning(tmp_path: Path) -> None:
    conf = write(tmp_path / "u.conf", "BASE=.\n# x\nFUTURE=1\nlower=x\n")
    c = load_config(conf)
    assert f"{conf}:3: unknown variable FUTURE ignored" in c.warnings
    assert f"{conf}:4: unknown variable lower ignored" in c.warnings
    assert c.lower == (Path("/"),)


def test_name_from_file_name(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "mta.conf", "BASE=.\n")).name == "mta"
    assert load_config(write(tmp_path / "noext", "BASE=.\n")).name == "noext"
    # 1.6.4 took any file name: dots and non-ASCII letters are fine (c2)
    assert load_config(write(tmp_path / "my.host.conf", "BASE=.\n")).name == "my.host"
    probs = problems_of(write(tmp_path / "my host.conf", "BASE=.\n"))
    assert any("NAME" in p and "file name" in p for p in probs)
    # an explicit NAME fixes it
    assert load_config(write(tmp_path / "my other.conf", "BASE=.\nNAME=ok\n")).name == "ok"


# -- paths ---------------------------------------------------------------------------------


def test_symlinked_config_base_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config linked into the config directory: the link is followed for BASE."""
    etc, opt = tmp_path / "etc" / "overlay-boot", tmp_path / "opt" / "mta"
    real = write(opt / "mta.conf", "BASE=.\nLIVE=l\nUPPER=../mta-upper\n")
    etc.mkdir(parents=True)
    (etc / "mail.conf").symlink_to(real)
    monkeypatch.setenv("OVERLAY_BOOT_CONFIG_DIR", str(etc))
    c = load_config(etc / "mail.conf")
    assert c.path == etc / "mail.conf"  # as given, not resolved
    assert c.name == "mail"  # 1.6.4: basename of the path given
    assert c.base == opt
    assert c.live == opt / "l"
    assert c.upper == opt / ".." / "mta-upper"  # the kernel resolves ".." (c10)
    assert c.work == opt / "work"


def test_symlinked_template_base_is_the_links_dir(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """c1: elsewhere BASE starts from the directory of the path as given (1.6.4), so one
    template linked from several subhost directories gives each its own BASE."""
    monkeypatch.setenv("OVERLAY_BOOT_CONFIG_DIR", str(tmp_path / "etc"))
    tmpl = write(tmp_path / "tmpl" / "tmpl.conf", "BASE=.\n")
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"{sub}.conf").symlink_to(f"../tmpl/{tmpl.name}")
        c = load_config(tmp_path / sub / f"{sub}.conf")
        assert (c.name, c.base, c.upper) == (sub, tmp_path / sub, tmp_path / sub / "root")


def test_config_path_dotdot_is_the_kernels(tmp_path: Path) -> None:
    """c10: inv/up/../cfg/x.conf is far/cfg/x.conf when up -> far/deep, as the kernel sees it."""
    write(tmp_path / "far" / "cfg" / "x.conf", "BASE=.\nSTART=cron\n")
    (tmp_path / "far" / "deep").mkdir()
    write(tmp_path / "inv" / "cfg" / "x.conf", "BASE=.\nSTART=ssh\n")
    (tmp_path / "inv" / "up").symlink_to(tmp_path / "far" / "deep")
    c = load_config(tmp_path / "inv" / "up" / ".." / "cfg" / "x.conf")
    assert c.start == ("cron",)
    assert c.base == tmp_path / "far" / "cfg"


def test_absolute_base_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    conf = write(tmp_path / "c" / "x.conf", f"BASE={tmp_path}/link/./\n")
    assert load_config(conf).base == tmp_path / "real"


def test_canonical_with_known_directories_is_realpath(tmp_path: Path) -> None:
    """The generator resolves each BASE's directory once (`real_dir`): the answers are
    os.path.realpath's, whatever the last component or the directory is."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "file").write_text("")
    (tmp_path / "dirlink").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "last").symlink_to(tmp_path / "real" / "sub")
    (tmp_path / "real" / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real" / "loop")
    (tmp_path / "real" / "up").symlink_to("sub/..")
    known: dict[str, str] = {}
    for tail in ("sub", "last", "dangling", "loop", "up", "missing", "file/x", "sub/.",
                 "sub/..", "sub/", "./sub", "last/../file", "up/sub", ""):
        for head in (tmp_path / "real", tmp_path / "dirlink", tmp_path / "dirlink" / ".."):
            path = f"{head}/{tail}"
            assert config.canonical(path, known) == os.path.realpath(path), path
            assert config.canonical(path) == os.path.realpath(path), path
    assert known[str(tmp_path / "dirlink")] == str(tmp_path / "real")
    for path in ("/", "//", "/srv", "//srv/x", "relative/x", "x"):
        assert config.canonical(path, known) == os.path.realpath(path), path


def test_relative_and_absolute_paths(tmp_path: Path) -> None:
    conf = write(tmp_path / "b" / "x.conf",
                 "BASE=..\nLIVE=/srv/x/live/\nUPPER=up//per\nWORK=./w/../work2\nLOG=x.log\n")
    c = load_config(conf)
    assert c.base == tmp_path
    assert c.live == Path("/srv/x/live")
    assert c.upper == tmp_path / "up" / "per"
    assert c.work == tmp_path / "w" / ".." / "work2"  # ".." is the kernel's to resolve (c10)
    assert c.log == tmp_path / "x.log"


def test_lower_list(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "x.conf", "BASE=.\nLOWER=/usr/:img/root:/\n"))
    assert c.lower == (Path("/usr"), tmp_path / "img" / "root", Path("/"))
    assert c.variant == "overlay"
    assert any("empty layer" in p
               for p in problems_of(write(tmp_path / "y.conf", "BASE=.\nLOWER=/usr:\n")))


def test_variants(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "sys")
    bind = load_config(write(tmp_path / "b.conf", "BASE=.\nUPPER=sys\nLOWER=alias/\n"))
    assert bind.variant == "bind"
    pre = load_config(write(tmp_path / "p.conf", "BASE=.\nUPPER=sys\nLOWER=sys\nLIVE=alias\n"))
    assert pre.variant == "premounted"
    over = load_config(write(tmp_path / "o.conf", "BASE=.\nUPPER=sys\n"))
    assert over.variant == "overlay"


# -- ! commands ----------------------------------------------------------------------------


def test_command_values_env_and_cwd(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    conf = write(tmp_path / "cfg" / "x.conf", "\n".join([
        f"BASE=!echo {base}",
        "LIVE=!pwd",
        'UPPER=!echo "$CONFIG"; echo second line',
        "WORK=!echo sub",  # relative output: relative to BASE
        "START=!echo '  /bin/x   ssh  '",
        "",
    ]))
    c = load_config(conf)
    assert c.base == base
    assert c.live == base
    assert c.upper == conf
    assert c.work == base / "sub"
    assert c.start == ("/bin/x", "ssh")


def test_base_command_runs_in_config_dir(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = write(tmp_path / "opt" / "real.conf", "BASE=!pwd\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "x.conf").symlink_to(real)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "x.conf").symlink_to(real)
    monkeypatch.setenv("OVERLAY_BOOT_CONFIG_DIR", str(tmp_path / "etc"))
    # linked into the config directory: the link is followed; elsewhere: the link's directory
    assert load_config(tmp_path / "etc" / "x.conf").base == tmp_path / "opt"
    assert load_config(tmp_path / "srv" / "x.conf").base == tmp_path / "srv"


def test_share_never_runs_commands(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    c = load_config(write(tmp_path / "s.conf", f"BASE=.\nSHARE=!touch {marker}\n"))
    assert not marker.exists()
    assert c.shares == (Share(tmp_path / f"!touch {marker}", Path(f"/!touch {marker}"), 2),)


def test_command_failure_messages(tmp_path: Path) -> None:
    conf = write(tmp_path / "c.conf",
                 "BASE=.\nLIVE=!echo no disk >&2; exit 3\nUPPER=!true\nWORK=!printf '\\nx'\n")
    probs = problems_of(conf)
    assert any(p.startswith(f"{conf}:2: LIVE: ") and "exit status 3" in p and "no disk" in p
               for p in probs)
    assert any(p.startswith(f"{conf}:3: UPPER: ") and "printed nothing" in p for p in probs)
    assert any(p.startswith(f"{conf}:4: WORK: ") and "empty first line" in p for p in probs)


def test_command_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    conf = write(tmp_path / "t.conf",
                 f"BASE=.\nLIVE=!sh -c 'echo $$ > {pidfile}; exec sleep 60' & sleep 60\n")
    probs = problems_of(conf, command_timeout=0.5)  # without the kill: 60 s (make bench)
    assert any("LIVE" in p and "did not finish within 0.5 s" in p for p in probs)
    pid = int(pidfile.read_text())
    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"background process {pid} of the command survived")


def test_commands_need_a_base(tmp_path: Path) -> None:
    probs = problems_of(write(tmp_path / "c.conf", "BASE=nope\nLIVE=!pwd\n"))
    assert any("LIVE" in p and "not a directory" in p for p in probs)


# -- run=None (the generator) --------------------------------------------------------


def test_no_runner_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    conf = write(tmp_path / "g.conf", "\n".join([
        f"BASE=!touch {marker}; pwd",
        "LIVE=/srv/g/live",
        f"LOWER=!touch {marker}",
        f"CABLES=!touch {marker}",
        f"START=!touch {marker}",
        "SHARE=/srv/data",
        "SHARE=rel",
        "",
    ]))
    c = load_config(conf, run=None)
    assert not marker.exists()
    assert c.unresolved == {"BASE", "LOWER", "CABLES", "START"}
    assert c.base is None
    assert c.live == Path("/srv/g/live")
    assert c.upper is None and c.work is None
    assert c.lower == () and c.cables == () and c.vlans == () and c.start == ()
    assert c.shares == (Share(Path("/srv/data"), Path("/srv/data"), 6),)
    # and with evaluation, the same file runs its commands
    with pytest.raises(ConfigError):
        load_config(conf)  # LOWER's command prints nothing
    assert marker.exists()


def test_no_runner_name_command_is_an_error(tmp_path: Path) -> None:
    probs = problems_of(write(tmp_path / "n.conf", "BASE=.\nNAME=!echo x\n"), run=None)
    assert any("NAME is a command; the generator cannot run it: give a literal NAME" in p
               for p in probs)


# -- CABLES --------------------------------------------------------------------------------


def test_cables_example_from_the_brief(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "xmpl.conf", "BASE=.\nCABLES= = =.302\n"))
    assert c.cables == (Cable(0, "xmpl0", "eth0", None, None, 2),)
    assert c.vlans == (Vlan(0, 302, "xmpl0.302", "eth0.302", None, 2),)
    assert c.interfaces == ("xmpl0", "xmpl0.302")


def test_cables_full(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "x.conf",
                          "BASE=.\nCABLES=br0=02:AB:0:0:0:1  = br1=.7 =.8  br2= \n"))
    assert c.cables == (
        Cable(0, "x0", "eth0", "br0", "02:ab:00:00:00:01", 2),
        Cable(1, "x1", "eth1", None, None, 2),
        Cable(2, "x2", "eth2", "br2", None, 2),
    )
    assert c.vlans == (
        Vlan(1, 7, "x1.7", "eth1.7", "br1", 2),
        Vlan(1, 8, "x1.8", "eth1.8", None, 2),
    )
    assert c.bridges == ("br0", "br2", "br1")


def test_cables_problems_are_all_reported(tmp_path: Path) -> None:
    conf = write(tmp_path / "x.conf",
                 "BASE=.\nRAM_SIZE=lots\nCABLES==.5000 br0 =01:00:00:00:00:01\n")
    probs = problems_of(conf)
    assert f"{conf}:3: CABLES: '=.5000' VLAN tag must be 1-4094" in probs
    assert any("'br0' has no '='" in p for p in probs)
    assert any("multicast" in p for p in probs)
    assert any(p.startswith(f"{conf}:2: RAM_SIZE:") for p in probs)


def test_cable_names_at_the_limit(tmp_path: Path) -> None:
    # 12-char NAME + 3-digit index = 15 characters: still fine
    c = load_config(write(tmp_path / "x.conf",
                          "BASE=.\nNAME=abcdefghijkl\nCABLES=" + "= " * 101 + "\n"))
    assert c.cables[-1].host_if == "abcdefghijkl100"
    probs = problems_of(write(tmp_path / "y.conf", "BASE=.\nNAME=abcdefghij\nCABLES== =.4094\n"))
    assert any("'abcdefghij0.4094' is longer than 15 bytes" in p for p in probs)
    # a 14-character NAME worked in 1.6.4 with fewer than 10 cables: so it does here
    assert load_config(write(tmp_path / "z.conf", "BASE=.\nNAME=database-main\nCABLES==\n"))
    # bytes count, not characters: 7 two-byte letters and the index are 15 bytes
    probs = problems_of(write(tmp_path / "w.conf", "BASE=.\nNAME=ééééééé0\nCABLES==\n"))
    assert any("longer than 15 bytes" in p for p in probs)
    # a NAME the kernel refuses in an interface name is fine without cables
    assert load_config(write(tmp_path / "v.conf", "BASE=.\nNAME=a:b\n")).name == "a:b"
    probs = problems_of(write(tmp_path / "u.conf", "BASE=.\nNAME=a:b\nCABLES==\n"))
    assert any("contains ':'" in p and "CABLES" in p for p in probs)


# -- START, RAM_SIZE, SHARE, hooks ---------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("none", ()), ("ssh", ("ssh",)), ("networking ssh cron", ("networking", "ssh", "cron")),
    ("/opt/app/run.sh getty@tty1", ("/opt/app/run.sh", "getty@tty1")),
    ("x.y+z_1", ("x.y+z_1",)),
])
def test_start(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    assert load_config(write(tmp_path / "x.conf", f"BASE=.\nSTART={value}\n")).start == expected


@pytest.mark.parametrize("value", ["rel/path", "a;b", "$(x)", "-x", "..", "none ssh", "a|b"])
def test_bad_start(tmp_path: Path, value: str) -> None:
    assert any("START" in p for p in problems_of(write(tmp_path / "x.conf",
                                                       f"BASE=.\nSTART={value}\n")))


@pytest.mark.parametrize(("value", "expected"), [
    ("none", None), ("50M", "50M"), ("1g", "1g"), ("10%", "10%"), ("4096", "4096"), ("2K", "2K"),
])
def test_ram_size(tmp_path: Path, value: str, expected: str | None) -> None:
    c = load_config(write(tmp_path / "x.conf", f"BASE=.\nRAM_SIZE={value}\n"))
    assert c.ram_size == expected


@pytest.mark.parametrize("value", ["50MB", "M", "-1M", "1.5G", "50 M", "%"])
def test_bad_ram_size(tmp_path: Path, value: str) -> None:
    assert any("RAM_SIZE" in p for p in problems_of(write(tmp_path / "x.conf",
                                                          f"BASE=.\nRAM_SIZE={value}\n")))


def test_shares(tmp_path: Path) -> None:
    conf = write(tmp_path / "x.conf", "\n".join([
        "BASE=.",
        "SHARE=/srv/a",
        "SHARE = data:srv/data",  # 1.6.4 allowed blanks before '='
        "SHARE=/",  # equal to LOWER: skipped
        "SHARE=",  # empty: nothing
        "SHARE=/etc/hosts:/etc/hosts.host",
        "LOWER=/",
        "",
    ]))
    c = load_config(conf)
    assert c.shares == (
        Share(Path("/srv/a"), Path("/srv/a"), 2),
        Share(tmp_path / "data", Path("/srv/data"), 3),
        Share(Path("/etc/hosts"), Path("/etc/hosts.host"), 6),
    )
    assert c.lines["SHARE"] == 2


def test_hooks_are_kept_as_strings(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "x.conf",
                          "BASE=.\nPREMOUNT=/usr/local/bin/pre --x 'a b'\nPOSTMOUNT=post\n"
                          "INIT=!echo /usr/local/bin/myinit\nLOG=none\n"))
    assert c.premount == "/usr/local/bin/pre --x 'a b'"
    assert c.postmount == "post"
    assert c.init == "/usr/local/bin/myinit"
    assert c.log is None


def test_config_is_frozen(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "x.conf", "BASE=.\n"))
    with pytest.raises(AttributeError):
        c.name = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.lines["X"] = 1  # type: ignore[index]


# -- unreadable and binary files -----------------------------------------------------------


def test_unreadable(tmp_path: Path) -> None:
    assert any("cannot read" in p for p in problems_of(tmp_path / "missing.conf"))
    assert any("not a regular file" in p for p in problems_of(tmp_path))


def test_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.conf")
    assert any("not a regular file" in p for p in problems_of(tmp_path / "fifo.conf"))
    assert any("not a regular file" in p for p in problems_of(Path("/dev/zero")))
    big = write(tmp_path / "big.conf", "BASE=.\n" + "#" * (1 << 20))
    assert any("too large" in p for p in problems_of(big))


def test_binary(tmp_path: Path) -> None:
    probs = problems_of(write(tmp_path / "b.conf", b"BASE=.\n\0\n"))
    assert any("b.conf:2: " in p and "NUL byte" in p and "remove it" in p for p in probs)
    # c7: bytes that are not UTF-8 are carried through; only NAME must be text
    c = load_config(write(tmp_path / "l.conf", b"# Gr\xfc\xdfe\nBASE=.\nLIVE=l\xfc\n"))
    assert os.fsencode(c.live) == os.fsencode(tmp_path) + b"/l\xfc"
    assert any("not UTF-8" in p
               for p in problems_of(write(tmp_path / "u.conf", b"BASE=.\nNAME=\xff\n")))


def test_collects_every_problem(tmp_path: Path) -> None:
    conf = write(tmp_path / "x.conf",
                 "NAME=-bad\nSTART=a/b\nRAM_SIZE=x\nCABLES=nope\nLOWER=a::b\n")
    variables = {p.split(": ")[1] for p in problems_of(conf)}
    assert variables >= {"NAME", "START", "RAM_SIZE", "CABLES", "LOWER", "BASE"}


# -- property: nothing but ConfigError, ever -----------------------------------------------

# Text a file can hold: no lone surrogates (those cannot be encoded at all).
_CHARS = st.characters(blacklist_categories=("Cs",))
_LINE = st.one_of(
    st.text(alphabet=_CHARS, max_size=40),
    st.builds(lambda var, value: f"{var}={value}", st.sampled_from(KNOWN + ("X",)),
              st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\n!"), max_size=30)),
    st.builds(lambda value: f"CABLES={value}",
              st.text(alphabet="=.:0123456789abcdefx brBR", max_size=30)),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_LINE, max_size=8))
def test_arbitrary_text_raises_only_config_error(tmp_path: Path, lines: list[str]) -> None:
    text = "\n".join(lines)
    conf = tmp_path / "h.conf"
    conf.write_text(text, encoding="utf-8")
    # Random text might spell a command: only evaluate when it cannot.
    for run in (run_command, None) if "!" not in text else (None,):
        try:
            load_config(conf, run=run, command_timeout=5)
        except ConfigError as e:
            assert e.problems


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_config_error(tmp_path: Path, data: bytes) -> None:
    conf = tmp_path / "h.conf"
    conf.write_bytes(data)
    try:
        load_config(conf, run=None)  # arbitrary bytes may hold "!cmd": never run them
    except ConfigError as e:
        assert e.problems


# -- values as 1.6.4 read them (reviews/compat.md, class (c)) -------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("'x'", "x"), ('"x"', "x"), ("'a b'", "a b"), ("my\\ dir", "my dir"), ("'my\\ dir'", "my dir"),
    ("a\\tb", "a\\tb"),  # other backslashes stay
    ("'x", "'x"), ("x'", "x'"), ("'", "'"), ("''", ""), ("'a'b'", "'a'b'"),
    ('"a" "b"', '"a" "b"'),  # two quoted words: START takes the quotes off each
    ("'x\"", "'x\""),
])
def test_read_value(text: str, value: str) -> None:
    assert read_value(text) == value


def test_quotes_and_blanks_in_values(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "q.conf", "BASE='.'\nLIVE=\"my live\"\nUPPER=my\\ root\n"
                                               "NAME='web.1'\nSTART=\"ssh\" 'cron' x\n"
                                               "SHARE='/srv/a b:/mnt'\n"))
    assert c.base == tmp_path
    assert (c.live, c.upper) == (tmp_path / "my live", tmp_path / "my root")
    assert c.name == "web.1"
    assert c.start == ("ssh", "cron", "x")
    assert c.shares == (Share(Path("/srv/a b"), Path("/mnt"), 6),)


def test_quoted_bang_is_literal(tmp_path: Path) -> None:
    # 1.6.4 looked for '!' before its eval took the quotes off: '!x' is the text !x
    marker = tmp_path / "ran"
    c = load_config(write(tmp_path / "b.conf", f"BASE=.\nLIVE='!touch {marker}'\n"))
    assert not marker.exists()
    assert c.live == tmp_path / f"!touch {marker}"


def test_commands_see_action(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "a.conf", 'BASE=.\nLIVE=!echo "x-${ACTION:-unset}"\n'))
    assert c.live == tmp_path / "x-overlay-boot"


def test_start_with_init_is_not_checked(tmp_path: Path) -> None:
    c = load_config(write(tmp_path / "i.conf", "BASE=.\nSTART=a/b ;x\nINIT=/bin/true\n"))
    assert c.start == ()
    assert any("START is not used" in w and "i.conf:2:" in w for w in c.warnings)
    probs = problems_of(write(tmp_path / "j.conf", "BASE=.\nSTART=a/b\n"))
    assert any("START" in p for p in probs)


@pytest.mark.parametrize("size", [
    "50M", "1T", "2p", "1E", "0x1000000", "0X1fK", "010", "10%", "0", "50M,nr_inodes=1k",
    "1G,huge=within_size,nr_inodes=0", "1g,mode=700",
])
def test_ram_sizes_tmpfs_takes(tmp_path: Path, size: str) -> None:
    c = load_config(write(tmp_path / "r.conf", f"BASE=.\nRAM_SIZE={size}\n"))
    assert c.ram_size == size


@pytest.mark.parametrize(("size", "why"), [
    ("50MB", "not a size"), ("-50M", "not a size"), ("1.5G", "not a size"), ("0xG", "not a size"),
    ("50M,", "not a tmpfs mount option"), ("50M,exec", "not a tmpfs mount option"),
    ("50M,size=1G;x", "not a tmpfs mount option"),
])
def test_ram_sizes_refused(tmp_path: Path, size: str, why: str) -> None:
    probs = problems_of(write(tmp_path / "r.conf", f"BASE=.\nRAM_SIZE={size}\n"))
    assert any(why in p and "RAM_SIZE" in p for p in probs), probs


def test_paths_keep_dotdot_for_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "far" / "deep").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to(tmp_path / "far" / "deep")
    c = load_config(write(tmp_path / "d.conf", "BASE=.\nLIVE=lnk/../live\nLOWER=lnk/../l\n"))
    assert os.path.realpath(c.live) == str(tmp_path / "far" / "live")
    assert os.path.realpath(c.lower[0]) == str(tmp_path / "far" / "l")


def test_the_parser_imports_nothing_that_runs_processes() -> None:
    import subprocess
    import sys

    code = ("import sys, overlay_boot.config; "
            "print(' '.join(m for m in sys.modules if m.startswith('overlay_boot')))")
    mods = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()
    assert "overlay_boot.config" in mods
    assert not [m for m in mods if m.startswith("overlay_boot.linux") or m == "overlay_boot.proc"]


def test_the_parser_imports_no_heavy_module() -> None:
    """Every start and the generator import the parser: dataclasses (with inspect, ast, dis),
    typing and json would cost them milliseconds each time (issue #13's budgets)."""
    import subprocess
    import sys

    code = "import sys, overlay_boot.config; print(' '.join(sys.modules))"
    mods = set(subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                              text=True, check=True).stdout.split())
    assert "overlay_boot.config" in mods
    assert not {"dataclasses", "inspect", "ast", "typing", "json", "string"} & mods
