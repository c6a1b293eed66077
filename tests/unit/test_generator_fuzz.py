"""Property-based fuzzing of the systemd generator (hypothesis).

Generated config directories — good, broken and hostile files, duplicate NAMEs across files and
directories, symlinks (dangling, looping, to directories), odd file names, a random
``/etc/subhosts.conf`` — given to ``generator.main([OUT])`` exactly as systemd runs it:

* it never raises and always exits 0 (a generator that fails breaks ``daemon-reload``);
* every config is either generated (one drop-in naming it) or reported on stderr and skipped;
* no NAME gets two drop-ins, nothing is written outside OUT, no ``!`` command runs, and a drop-in
  holds only the keys the generator writes (no injected ``ExecStart=``);
* ``--dry-run`` reports the same and exits 1 exactly when something was skipped as an error.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlay_boot import generator, knownlist
from overlay_boot.errors import printable

VARS = ("NAME", "BASE", "LIVE", "UPPER", "WORK", "LOWER", "CABLES", "START", "RAM_SIZE",
        "SHARE", "PREMOUNT", "POSTMOUNT", "INIT", "LOG")
# Every `!` the fuzzer writes would leave this file behind if it ever ran.
RAN = "RAN-by-generator"
NAMES = st.sampled_from(["web", "db", "a-b_c", "x" * 12, "x" * 13, "", "-bad", "my.host",
                         "sübhost", "..", "a/b", "web\r"])
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\0"),
                max_size=30)
VALUES = st.one_of(
    _TEXT,
    NAMES,
    st.sampled_from([".", "..", "/", "/nonexistent", "./root", "../../..", "/tmp/with space",
                     "none", "=", " = =.5", "br0=02:00:00:00:00:01", "=ff:ff:ff:ff:ff:ff",
                     "7M", "-1G", "/usr:/opt", "networking cron", "/a,b:c\\d", "%i%n",
                     "$(touch RAN)", "`touch RAN`", f"!touch {RAN}", f"!touch {RAN}; echo web"]),
)
LINE = st.one_of(
    st.builds(lambda var, value: f"{var}={value}", st.sampled_from(VARS + ("X", "name")),
              VALUES),
    _TEXT,
    st.sampled_from(["# comment", "", "  NAME = web", "SHARE=/usr/share", "\ufeffBASE=."]),
)
TEXT_FILE = st.lists(LINE, max_size=8).map(lambda lines: "\n".join(lines).encode())
CRLF_FILE = TEXT_FILE.map(lambda data: data.replace(b"\n", b"\r\n"))
CONTENT = st.one_of(TEXT_FILE, CRLF_FILE, st.binary(max_size=64),
                    st.sampled_from([b"", b"BASE=.\nNAME=web\n", b"NAME=web\n",
                                     b"\xff\xfeB\0A\0S\0E\0", b"NAME=db\nSTART=none\n"]))
FILE_NAMES = st.one_of(
    st.sampled_from(["web.conf", "db.conf", "a b.conf", "über.conf", "x.conf", "-x.conf",
                     ".hidden.conf", "notconf", "w\x1bb.conf", "multi\nline.conf",
                     "x" * 13 + ".conf", "percent%n.conf", "back\\slash.conf", ".conf"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
            min_size=1, max_size=12).map(lambda s: s + ".conf"),
)
ENTRY = st.one_of(
    st.tuples(st.just("file"), FILE_NAMES, CONTENT),
    st.tuples(st.just("dangling"), FILE_NAMES, st.just(b"")),
    st.tuples(st.just("loop"), FILE_NAMES, st.just(b"")),
    st.tuples(st.just("dir"), FILE_NAMES, st.just(b"")),
    st.tuples(st.just("link-other"), FILE_NAMES, st.just(b"")),  # to a file in the 2nd dir
)
LAYOUT = st.tuples(st.lists(ENTRY, max_size=7), st.lists(ENTRY, max_size=4),
                   st.lists(st.sampled_from(["d1/web.conf", "d2/web.conf", "missing.conf",
                                             "relative.conf", "# comment", "d1", "d2/"]),
                            max_size=4))
DROPIN_LINE = re.compile(
    r"(|#.*|\[Unit\]|\[Service\]|SourcePath=.*|RequiresMountsFor=.*|After=.*|Environment=.*"
    r"|ExecStopPost=)")


def _make(top: Path, d: str, entries: list[tuple[str, str, bytes]]) -> None:
    directory = top / d
    directory.mkdir()
    for kind, name, content in entries:
        path = directory / name
        if os.path.lexists(path):
            continue
        try:
            if kind == "file":
                path.write_bytes(content)
                path.chmod(0o644)
            elif kind == "dangling":
                path.symlink_to(top / "nowhere" / name)
            elif kind == "loop":
                path.symlink_to(path)
            elif kind == "dir":
                path.mkdir()
            else:
                target = top / "d2" / "target.conf"
                path.symlink_to(target)
        except OSError:  # a name the filesystem refuses (too long)
            continue


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    # The generator logs with os.write(2): catch that at the descriptor.
    with tempfile.TemporaryFile() as fd_err:
        saved_fd = os.dup(2)
        os.dup2(fd_err.fileno(), 2)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                status = generator.main(argv)
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        fd_err.seek(0)
        text_err = fd_err.read().decode("utf-8", "replace") + err.getvalue()
    return status, out.getvalue(), text_err


def _configs(top: Path) -> list[Path]:
    """The config files of the directories; a file reached twice (symlink) counts once."""
    found, seen = [], set()
    for d in ("d1", "d2"):
        for p in sorted((top / d).iterdir()):
            if p.name.endswith(".conf") and not p.name.startswith(".") and p.name != ".conf" \
                    and (p.is_file() or not p.exists()):
                try:
                    st = p.stat()
                    key: object = (st.st_dev, st.st_ino)
                except OSError:
                    key = os.path.realpath(p)
                if key not in seen:
                    seen.add(key)
                    found.append(p)
    return found


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(LAYOUT)
def test_generator_never_fails_and_skips_what_is_bad(layout) -> None:
    first, second, listed = layout
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        _make(top, "d1", first)
        _make(top, "d2", second)
        (top / "d2" / "target.conf").exists() or (top / "d2" / "target.conf").write_text(
            "BASE=.\nNAME=web\n")
        subhosts = top / "subhosts.conf"
        subhosts.write_text("\n".join(e if e.startswith(("#", "relative")) else f"{top}/{e}"
                                      for e in listed) + "\n")
        out = top / "out"
        out.mkdir()
        env = {"OVERLAY_BOOT_CONFIG_DIR": f"{top}/d1:{top}/d2",
               "OVERLAY_BOOT_SUBHOSTS_CONF": str(subhosts),
               "OVERLAY_BOOT_TEMPLATE": "/usr/lib/systemd/system/overlay-boot@.service"}
        os.environ.pop("SYSTEMD_SCOPE", None)
        cwd = os.getcwd()
        os.chdir(top)  # a `!touch RAN` that ran would leave RAN here (or in a config dir)
        try:
            status, _, err = _run([str(out)], env)
            dry_status, dry_out, dry_err = _run(["--dry-run"], env)
        finally:
            os.chdir(cwd)

        assert status == 0, err
        assert "Traceback" not in err and "unexpected error" not in err, err
        assert not list(top.rglob(f"*{RAN}*")) and not list(top.rglob("RAN")), "a ! command ran"

        # Nothing outside OUT; one drop-in per NAME, each naming one config.
        for path in out.rglob("*"):
            assert os.path.realpath(path.parent).startswith(str(out))
        dropins = sorted(out.glob("overlay-boot@*.service.d/50-overlay-boot.conf"))
        units = [p.parent.name for p in dropins]
        assert len(units) == len(set(units))
        # ... and the list of the configs it parsed, for the starts (knownlist.py)
        assert (out / knownlist.NAME).is_file()
        assert {p.name for p in out.iterdir()} <= {"multi-user.target.wants", knownlist.NAME,
                                                   *units}
        generated = set()
        for dropin in dropins:
            text = dropin.read_text()
            for line in text.split("\n"):  # systemd splits at "\n" only (not at U+0085)
                assert DROPIN_LINE.fullmatch(line), (dropin, line)
            assert text.count("Environment=") == 1
            generated.add(re.search(r"^SourcePath=(.*)$", text, re.M).group(1))
        wants = out / "multi-user.target.wants"
        if wants.exists():
            for link in wants.iterdir():
                assert f"{link.name}.d" in units, link.name

        # Every config file is generated or reported; a report names the file.
        for conf in _configs(top):
            shown = str(conf).replace("%", "%%")
            if shown in generated or str(conf) in generated:
                continue
            # (a name with a line break is split over log lines: see the test below)
            pieces = str(conf).splitlines()
            split = all(piece in err for piece in pieces)
            assert printable(str(conf)) in err or split, (conf, err)

        # The dry run sees the same and says so with its status.
        assert dry_status in (0, 1), dry_err
        assert dry_status == (1 if any(_is_error(line) for line in dry_err.splitlines())
                              else 0), dry_err
        assert dry_out.count("50-overlay-boot.conf") == len(dropins)


def _is_error(line: str) -> bool:
    return line.startswith(f"{generator.PROG}: ") and not line.startswith(
        f"{generator.PROG}: warning: ")


def test_a_file_name_with_a_line_break_is_reported_on_one_line(tmp_path: Path) -> None:
    """A config file name can hold a line break. The report must still be one line naming
    the file, not two lines of which the second looks like a report about another file."""
    d = tmp_path / "d"
    d.mkdir()
    spoof = "x\nweb.conf: skipped\ny.conf"
    (d / spoof).write_text("NAME=bad name\n")
    (tmp_path / "out").mkdir()
    status, _, err = _run([str(tmp_path / "out")], {
        "OVERLAY_BOOT_CONFIG_DIR": str(d),
        "OVERLAY_BOOT_SUBHOSTS_CONF": str(tmp_path / "none.conf")})
    assert status == 0
    for line in err.splitlines():
        assert not line.startswith(f"{generator.PROG}: web.conf"), err


def test_a_path_that_is_not_utf8_is_skipped_and_the_others_are_written(tmp_path: Path) -> None:
    """M3: a config below a Latin-1 directory name used to crash the generator mid-write,
    leaving an empty drop-in and nothing for the configs after it."""
    latin = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    latin.mkdir()
    (latin / "aa.conf").write_text("BASE=.\n")
    good = tmp_path / "zz"
    good.mkdir()
    (good / "zz.conf").write_text("BASE=.\n")
    subhosts = tmp_path / "subhosts.conf"
    subhosts.write_bytes(bytes(latin / "aa.conf") + b"\n" + bytes(good / "zz.conf") + b"\n")
    out = tmp_path / "out"
    out.mkdir()
    status, _, err = _run([str(out)], {"OVERLAY_BOOT_CONFIG_DIR": str(tmp_path / "none"),
                                       "OVERLAY_BOOT_SUBHOSTS_CONF": str(subhosts)})
    assert status == 0, err
    assert "is not valid UTF-8" in err and "aa.conf" in err
    assert not (out / "overlay-boot@aa.service.d").exists()
    assert (out / "overlay-boot@zz.service.d/50-overlay-boot.conf").read_text().count(
        "OVERLAY_BOOT_CONFIG=") == 1
    assert (out / "multi-user.target.wants/overlay-boot@zz.service").is_symlink()
    assert not [p for p in out.rglob(".*.new")]  # no temporary file left
