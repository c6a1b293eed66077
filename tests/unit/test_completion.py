"""The bash completion (completions/bash/overlay-boot) run by a real bash on fake run/config
directories (OVERLAY_BOOT_RUN_DIR, OVERLAY_BOOT_CONFIG_DIR)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "completions" / "bash" / "overlay-boot"
COMMANDS = ("overlay-boot", "overlay-stop", "overlay-go", "overlay-share", "overlay-diskfile",
            "overlay-diff", "overlay-reset")


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, str]:
    run = tmp_path / "run"
    etc = tmp_path / "etc"
    run.mkdir()
    etc.mkdir()
    for name in ("alpha", "beta"):
        (run / f"{name}.json").write_text("{}")
        (run / f"{name}.lock").write_text("")
    (run / "gone.json").write_text("{}")  # no lock file: not a running subhost
    for name in ("web", "db"):
        (etc / f"{name}.conf").write_text("BASE=.\n")
    (tmp_path / "hostdir").mkdir()
    return {"OVERLAY_BOOT_RUN_DIR": str(run), "OVERLAY_BOOT_CONFIG_DIR": str(etc),
            "TMP": str(tmp_path)}


def complete(env: dict[str, str], *words: str) -> list[str]:
    """COMPREPLY for the command line WORDS, the cursor at the end of the last word."""
    script = (
        f"source {SCRIPT}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _overlay_boot\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", *words],
                            capture_output=True, text=True, check=True,
                            env={"PATH": os.environ["PATH"], **env}, cwd=env["TMP"])
    assert result.stderr == ""
    return [line for line in result.stdout.splitlines() if line]


def test_every_command_is_registered() -> None:
    out = subprocess.run(["bash", "--norc", "-c", f"source {SCRIPT}; complete -p"],
                         capture_output=True, text=True, check=True).stdout
    for command in COMMANDS:
        assert f"-F _overlay_boot {command}" in out
    for command in COMMANDS[1:]:  # bash-completion loads completions/<command>
        link = SCRIPT.with_name(command)
        assert link.is_symlink() and link.resolve() == SCRIPT


def test_stop_offers_running_subhosts_and_configs(dirs: dict[str, str]) -> None:
    etc = dirs["OVERLAY_BOOT_CONFIG_DIR"]
    assert complete(dirs, "overlay-stop", "") == [
        "alpha", "beta", f"{etc}/db.conf", f"{etc}/web.conf"]
    assert complete(dirs, "overlay-stop", "b") == ["beta"]
    assert complete(dirs, "overlay-stop", "--c") == ["--cleanup"]
    assert complete(dirs, "overlay-stop", "--timeout", "5", "a") == ["alpha"]
    assert complete(dirs, "overlay-stop", "alpha", "") == []


def test_go_offers_running_subhosts_then_commands(dirs: dict[str, str]) -> None:
    assert complete(dirs, "overlay-go", "") == ["alpha", "beta"]
    assert complete(dirs, "overlay-go", "alpha", "") == ["--"]
    assert "bash" in complete(dirs, "overlay-go", "alpha", "--", "bas")


def test_share_offers_a_directory_then_running_subhosts(dirs: dict[str, str]) -> None:
    assert complete(dirs, "overlay-share", "host") == ["hostdir"]
    assert complete(dirs, "overlay-share", "hostdir", "") == ["alpha", "beta"]


def test_boot_offers_config_files_and_instance_names(dirs: dict[str, str]) -> None:
    etc = dirs["OVERLAY_BOOT_CONFIG_DIR"]
    assert complete(dirs, "overlay-boot", "--instance", "") == ["db", "web"]
    offered = complete(dirs, "overlay-boot", "")
    assert f"{etc}/db.conf" in offered and f"{etc}/web.conf" in offered
    assert complete(dirs, "overlay-boot", "--v") == ["--verify"]


def test_names_are_offered_literally_never_expanded(dirs: dict[str, str]) -> None:
    """A name is a word to offer, not shell code: compgen -W would run `$(...)` in it."""
    tmp = Path(dirs["TMP"])
    marker = tmp / "expanded"
    strange = ["$(touch expanded)", "`touch expanded`", "*", "a b"]
    for name in strange:
        (Path(dirs["OVERLAY_BOOT_RUN_DIR"]) / f"{name}.json").write_text("{}")
        (Path(dirs["OVERLAY_BOOT_RUN_DIR"]) / f"{name}.lock").write_text("")
    offered = complete(dirs, "overlay-go", "")
    assert not marker.exists()
    assert sorted(offered) == sorted(["alpha", "beta", *strange])
    assert complete(dirs, "overlay-go", "$(") == ["$(touch expanded)"]
    assert not marker.exists()


def test_diff_and_reset_offer_subhosts_options_and_paths(dirs: dict[str, str]) -> None:
    for command in ("overlay-diff", "overlay-reset"):
        assert complete(dirs, command, "") == ["alpha", "beta", "db", "web"]
        assert complete(dirs, command, "alpha", "host") == ["hostdir"]
    assert complete(dirs, "overlay-diff", "--s") == ["--shadowed"]
    assert complete(dirs, "overlay-diff", "--dpkg-hook", "p") == ["pre", "post"]
    assert complete(dirs, "overlay-reset", "--d") == ["--dry-run"]
    assert complete(dirs, "overlay-reset", "--backup", "host") == ["hostdir"]
    assert complete(dirs, "overlay-reset", "--backup", "x.tar", "be") == ["beta"]
