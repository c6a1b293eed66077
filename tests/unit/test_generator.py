"""The systemd generator: golden files, exit statuses, logging, and `systemd-analyze verify`.

Each directory in tests/generator/ is a case: ``input/`` is a root with ``etc/overlay-boot``
(and maybe ``etc/subhosts.conf`` and the files they point to); ``@ROOT@`` in any input file
stands for where the case is copied to. ``expected/`` is the generator's output tree,
``expected.stderr`` its messages, ``expected.status`` the exit status of ``--dry-run``.
No input may run a ``!`` command: every ``!`` in the inputs creates a file ``RAN-*``, and the
test fails if one appears.

Regenerate the expectations after an intended change, then review the diff::

    OVERLAY_BOOT_REGEN=1 .venv/bin/python -m pytest tests/unit/test_generator.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from overlay_boot import generator, knownlist, verify
from overlay_boot.cli import boot as boot_cli
from overlay_boot.config import load_config

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "generator"
SHIM = REPO / "generator" / "overlay-boot-generator"
TEMPLATE = "/usr/lib/systemd/system/overlay-boot@.service"
REGEN = bool(os.environ.get("OVERLAY_BOOT_REGEN"))
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if (p / "input").is_dir())


def _copy_case(case: Path, root: Path) -> None:
    shutil.copytree(case / "input", root, symlinks=True)
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if b"@ROOT@" in data:
                path.write_bytes(data.replace(b"@ROOT@", str(root).encode()))


def _tree(top: Path) -> dict[str, str]:
    """relative path -> file content, or '-> target' for a symlink; without the list of
    known configs (its change times differ at each run: see test_knownlist.py)."""
    result = {}
    for path in sorted(top.rglob("*")):
        rel = str(path.relative_to(top))
        if rel == knownlist.NAME:
            continue
        if path.is_symlink():
            result[rel] = f"-> {os.readlink(path)}"
        elif path.is_file():
            result[rel] = path.read_text()
    return result


def _env(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERLAY_BOOT_CONFIG_DIR", str(root / "etc" / "overlay-boot"))
    monkeypatch.setenv("OVERLAY_BOOT_SUBHOSTS_CONF", str(root / "etc" / "subhosts.conf"))
    monkeypatch.setenv("OVERLAY_BOOT_TEMPLATE", TEMPLATE)
    monkeypatch.delenv("SYSTEMD_SCOPE", raising=False)


def _no_command_ran(root: Path) -> None:
    ran = sorted(str(p) for p in root.rglob("RAN-*"))
    assert not ran, f"a ! command was run: {ran}"


@pytest.mark.parametrize("case", CASE_NAMES)
def test_golden(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                capfd: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / case, root)
    _env(root, monkeypatch)
    out = tmp_path / "out"
    out.mkdir()

    # As systemd runs it: three directories, exit 0 even with bad configs.
    status = generator.main([str(out), str(tmp_path / "early"), str(tmp_path / "late")])
    stderr = capfd.readouterr().err.replace(str(root), "@ROOT@")
    assert status == 0
    _no_command_ran(root)
    got = {k: v.replace(str(root), "@ROOT@") for k, v in _tree(out).items()}

    # The dry run prints the same files, and fails when a config is bad.
    dry_status = generator.main(["--dry-run"])
    dry = capfd.readouterr()
    _no_command_ran(root)
    for rel, content in _tree(out).items():
        if content.startswith("-> "):
            assert f"# {rel} {content}\n" in dry.out
        else:
            assert f"# {rel}\n{content}" in dry.out
    assert dry.err.replace(str(root), "@ROOT@") == stderr

    expected_dir = CASES / case / "expected"
    if REGEN:
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir()
        for rel, content in got.items():
            target = expected_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if content.startswith("-> "):
                target.symlink_to(content[3:])
            else:
                target.write_text(content)
        (CASES / case / "expected.stderr").write_text(stderr)
        (CASES / case / "expected.status").write_text(f"{dry_status}\n")
    assert got == _tree(expected_dir) if expected_dir.is_dir() else got == {}
    assert stderr == (CASES / case / "expected.stderr").read_text()
    assert dry_status == int((CASES / case / "expected.status").read_text())


def test_bad_configs_are_reported_with_file_and_reason(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / "bad", root)
    _env(root, monkeypatch)
    result = generator.generate()
    assert [c.name for c in result.generated] == ["good", "warn"]
    errors = [m.text for m in result.messages if m.priority == generator.ERR]
    conf = root / "etc" / "overlay-boot"
    for bad in ("nobase", "cables", "-leading-dash", "bangname", "binary"):
        assert f"{conf}/{bad}.conf: skipped" in errors
    # A config that cannot be read yet (a file system mounted later) gets a unit that reads
    # it when it starts.
    warnings = [m.text for m in result.messages if m.priority == generator.WARNING]
    assert f"{conf}/dangling.conf: cannot be read yet; its unit reads it when it starts" \
        in warnings
    assert any(e.startswith(f"{conf}/cables.conf:2: CABLES") for e in errors)
    warnings = [m.text for m in result.messages if m.priority == generator.WARNING]
    assert any("FUTURE" in w for w in warnings)
    assert result.failed


def test_symlinked_config_keeps_its_listed_path(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / "symlink", root)
    _env(root, monkeypatch)
    (config,) = generator.generate().generated
    assert config.path == root / "etc/overlay-boot/mta.conf"
    assert config.base == root / "opt/mta"
    text = generator.render_dropin(config)
    assert f"SourcePath={root}/etc/overlay-boot/mta.conf\n" in text
    assert f"RequiresMountsFor={root}/opt/mta\n" in text


def test_unresolved_values_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / "bang", root)
    _env(root, monkeypatch)
    result = generator.generate()
    _no_command_ran(root)
    by_name = {c.name: c for c in result.generated}
    assert set(by_name) == {"disk", "bangbase"}
    assert generator.mount_paths(by_name["disk"]) == [root / "srv/disk", root / "srv/disk/live"]
    assert generator.mount_paths(by_name["bangbase"]) == [Path("/")]  # the default LOWER
    assert "After=" not in generator.render_dropin(by_name["disk"])


def test_quoting_of_unusual_paths(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc 100%"
    conf_dir.mkdir()
    conf = conf_dir / 'we"b.conf'
    conf.write_text("NAME=web\nBASE=/srv/a b\\c\n")
    text = generator.render_dropin(load_config(conf, evaluate=False))
    assert f"SourcePath={tmp_path}/etc 100%%/we\"b.conf\n" in text
    assert 'RequiresMountsFor="/srv/a b\\\\c"\n' in text
    assert f'Environment="OVERLAY_BOOT_CONFIG={tmp_path}/etc 100%%/we\\"b.conf"\n' in text


def test_control_character_in_path_skips_the_config(tmp_path: Path) -> None:
    conf_dir = tmp_path / "a\nb"
    conf_dir.mkdir()
    (conf_dir / "x.conf").write_text("BASE=/srv/x\n")
    result = generator.generate(dirs=[conf_dir], subhosts=tmp_path / "none", template=TEMPLATE)
    assert result.outputs == ()
    assert result.failed


def test_write_replaces_previous_output(tmp_path: Path) -> None:
    outputs = [generator.Output("a.service.d/x.conf", text="one\n"),
               generator.Output("m.target.wants/a.service", link="/t1")]
    generator.write(outputs, tmp_path)
    generator.write([generator.Output("a.service.d/x.conf", text="two\n"),
                     generator.Output("m.target.wants/a.service", link="/t2")], tmp_path)
    assert _tree(tmp_path) == {"a.service.d/x.conf": "two\n", "m.target.wants/a.service": "-> /t2"}


def test_kmsg_format_and_stderr_format() -> None:
    r, w = os.pipe()
    try:
        generator.Logger(w, kmsg=True)(generator.Message(3, "a.conf: bad\nsecond line"))
        generator.Logger(w)(generator.Message(4, "a.conf: unknown variable"))
        os.close(w)
        w = -1
        data = os.read(r, 4096).decode()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    pid = os.getpid()
    # A line break inside a message is escaped: one message, one kernel log record.
    assert data == (f"<3>overlay-boot-generator[{pid}]: a.conf: bad\\nsecond line\n"
                    "overlay-boot-generator: warning: a.conf: unknown variable\n")


def test_usage_errors(capfd: pytest.CaptureFixture[str]) -> None:
    assert generator.main([]) == 64
    assert generator.main(["a", "b"]) == 64
    assert generator.main(["--dry-run", "--bogus"]) == 64
    assert generator.main(["--help"]) == 0
    assert "usage:" in capfd.readouterr().out


def test_unwritable_output_fails_without_traceback(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / "plain", root)
    _env(root, monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert generator.main([str(blocker / "out")]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and "overlay-boot-generator:" in err


# ---------------------------------------------------------------------------------------------
# --verify


def test_verify_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capfd: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / "duplicate", root)
    _env(root, monkeypatch)
    assert verify.verify([], print, _stderr, host=False) == 78
    out, err = capfd.readouterr()
    assert out == f"OK web {root}/etc/overlay-boot/a.conf\n"
    assert "NAME web is already used by" in err


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def test_verify_one_by_path_and_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / "bad", root)
    _env(root, monkeypatch)
    conf = root / "etc/overlay-boot"
    assert verify.verify([str(conf / "good.conf"), "warn"], print, _stderr, host=False) == 0
    out, err = capfd.readouterr()
    assert out == f"OK good {conf}/good.conf\nOK warn {conf}/warn.conf\n"
    assert "warning:" in err and "FUTURE" in err
    assert verify.verify(["good", "nobase", "nosuch"], print, _stderr, host=False) == 78
    out, err = capfd.readouterr()
    assert out == f"OK good {conf}/good.conf\n"
    assert f"{conf}/nobase.conf: BASE: BASE is required" in err
    assert "no configuration for subhost nosuch" in err


@pytest.mark.parametrize("command", ["generator", "overlay-boot"])
def test_verify_checks_the_host(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                command: str) -> None:
    """validate.check_host is real here: BASE does not exist on this host. The generator's
    own --verify flag and `overlay-boot --verify` are one check."""
    conf = tmp_path / "x.conf"
    conf.write_text(f"BASE={tmp_path}/missing\n")
    if command == "generator":
        status = generator.main(["--verify", str(conf)])
    else:
        status = boot_cli.main(["--verify", str(conf)])
    out, err = capfd.readouterr()
    assert status == 78
    assert out == ""
    assert f"{tmp_path}/missing" in err


# ---------------------------------------------------------------------------------------------
# the real programs


def _run_shim(python: list[str], root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OVERLAY_BOOT_CONFIG_DIR=str(root / "etc/overlay-boot"),
               OVERLAY_BOOT_SUBHOSTS_CONF=str(root / "etc/subhosts.conf"),
               OVERLAY_BOOT_TEMPLATE=TEMPLATE)
    env.pop("SYSTEMD_SCOPE", None)
    return subprocess.run([*python, str(out), str(out) + ".early", str(out) + ".late"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("interpreter", ["venv", "debian"])
def test_shim_as_systemd_runs_it(interpreter: str, tmp_path: Path) -> None:
    """The installed shape: the shim script, both interpreters (Debian's with -I)."""
    root = tmp_path / "root"
    _copy_case(CASES / "bad", root)
    out = tmp_path / "out"
    out.mkdir()
    if interpreter == "venv":
        python = [sys.executable, str(SHIM)]
    else:
        # -I ignores PYTHONPATH: put the source tree on the path as an installed package is.
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); sys.argv[0] = {str(SHIM)!r}; "
                f"exec(open({str(SHIM)!r}).read())")
        python = ["/usr/bin/python3", "-I", "-c", code]
    proc = _run_shim(python, root, out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "nobase.conf: skipped" in proc.stderr
    assert sorted(_tree(out)) == ["overlay-boot@dangling.service.d/50-overlay-boot.conf",
                                  "overlay-boot@good.service.d/50-overlay-boot.conf",
                                  "overlay-boot@warn.service.d/50-overlay-boot.conf"]


def test_generator_imports_only_the_pure_layer() -> None:
    code = ("import sys; import overlay_boot.generator; "
            "print(' '.join(sorted(m for m in sys.modules)))")
    mods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.split())
    assert not {"subprocess", "shutil", "pystemd", "pyroute2", "dbus_next", "asyncio",
                "overlay_boot.systemd", "overlay_boot.net"} & mods
    ours = {m for m in mods if m.startswith("overlay_boot.")}
    assert ours <= {"overlay_boot.generator", "overlay_boot.config", "overlay_boot.naming",
                    "overlay_boot.discovery", "overlay_boot.errors", "overlay_boot.unitnames",
                    "overlay_boot.capabilities", "overlay_boot.knownlist"}
    assert "json" not in mods  # ~3 ms of the generator's time


# ---------------------------------------------------------------------------------------------
# systemd-analyze verify on the template and on generated drop-ins


def _analyze(unit_dir: Path, unit: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit_dir / unit)],
        env=dict(os.environ, SYSTEMD_LOG_LEVEL="debug"),
        capture_output=True, text=True, timeout=120, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The template unit rendered as `make install` does, with its commands present."""
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    for command in ("overlay-boot", "overlay-stop"):
        (sbin / command).write_text("#!/bin/sh\nexit 0\n")
        (sbin / command).chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    text = (REPO / "units" / "overlay-boot@.service.in").read_text()
    (units / "overlay-boot@.service").write_text(text.replace("@SBINDIR@", str(sbin)))
    return units


def _problems(log: str, unit_dir: Path) -> list[str]:
    return [line for line in log.splitlines()
            if str(unit_dir) in line and re.search(r"ignoring|Unknown|[Ff]ailed|not ", line)]


def test_template_passes_systemd_analyze_verify(unit_dir: Path) -> None:
    (unit_dir / "overlay-boot@web.service").symlink_to("overlay-boot@.service")
    status, log = _analyze(unit_dir, "overlay-boot@web.service")
    assert status == 0, log
    assert not _problems(log, unit_dir), log
    assert "Type: notify" in log
    assert "NotifyAccess: main" in log
    assert "KillMode: mixed" in log
    assert "overlay-boot --instance web" in log
    # ExecStopPost= runs `overlay-stop --cleanup web` unless the service ended cleanly.
    assert "overlay-stop --cleanup" in log and "overlay-stop web" in log
    assert "SERVICE_RESULT" in log


def test_generated_dropin_passes_systemd_analyze_verify(unit_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _copy_case(CASES / "bridged", root)
    (root / "etc/overlay-boot/gw.conf").write_text(
        (root / "etc/overlay-boot/gw.conf").read_text() + "LOWER=/opt/a b%c:/\n")
    _env(root, monkeypatch)
    result = generator.generate()
    generator.write(result.outputs, unit_dir)  # the drop-in beside the template
    (unit_dir / "overlay-boot@gw.service").symlink_to("overlay-boot@.service")
    status, log = _analyze(unit_dir, "overlay-boot@gw.service")
    assert status == 0, log
    assert not _problems(log, unit_dir), log
    # What systemd understood, from its dump of the unit:
    conf = root / "etc/overlay-boot/gw.conf"
    assert f"Source Path: {conf}" in log
    assert f"DropIn Path: {unit_dir}/overlay-boot@gw.service.d/50-overlay-boot.conf" in log
    for path in (f"{root}/srv/gw", f"{root}/srv/gw/root", "/opt/a b%c", "/",
                 f"{root}/srv/gw/live"):
        assert f"RequiresMountsFor: {path} (origin-file)" in log
    for bridge in (r"br\x2dlan", "br0", "br.dmz"):
        assert f"After: sys-subsystem-net-devices-{bridge}.device (origin-file)" in log
    assert f"Environment: OVERLAY_BOOT_CONFIG={conf}" in log
