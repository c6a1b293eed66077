"""`overlay-go --json` on the real kernel: a running subhost (leader, interfaces, addresses)
and a configured one that is not running, as scripts and the Ansible inventory read them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.leaks import run_command, snapshot

from .subhosts import inside, make_base, start_subhost, stop_subhost, sub  # noqa: F401

CABLE = "CABLES==\n"


def _listing(env: dict[str, str]) -> list[dict]:
    result = run_command("go", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_lists_running_and_configured(sub, tmp_path: Path) -> None:  # noqa: F811
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    idle = make_base(tmp_path, "idle1", "BASE=.\nSTART=none\n")
    (conf_dir / "idle1.conf").symlink_to(idle)
    (conf_dir / "bad name.conf").write_text("NAME=../x\n")  # an unsafe NAME: left out
    env = {"OVERLAY_BOOT_CONFIG_DIR": str(conf_dir),
           "OVERLAY_BOOT_SUBHOSTS_CONF": str(tmp_path / "none")}
    listing = {entry["name"]: entry for entry in _listing(env)}
    running = listing[sub.name]
    assert running["state"] == "running"
    assert running["leader"] == sub.leader
    assert running["config"] == str(sub.conf)
    assert running["unit"] == f"overlay-boot@{sub.name}.service"
    assert isinstance(running["interfaces"], list) and isinstance(running["addresses"], list)
    assert listing["idle1"] == {
        "name": "idle1", "state": "stopped", "leader": None, "interfaces": [],
        "addresses": [], "config": str(conf_dir / "idle1.conf"),
        "unit": "overlay-boot@idle1.service",
    }
    assert "../x" not in listing


def test_json_shows_addresses(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    before = snapshot()
    subhost = start_subhost(tmp_path, CABLE)
    try:
        inside(subhost, "ip link set eth0 up; ip addr add 192.0.2.7/24 dev eth0")
        env = {"OVERLAY_BOOT_CONFIG_DIR": str(tmp_path / "empty"),
               "OVERLAY_BOOT_SUBHOSTS_CONF": str(tmp_path / "none")}
        entry = next(e for e in _listing(env) if e["name"] == subhost.name)
        assert "192.0.2.7" in entry["addresses"]
        assert entry["interfaces"] == [f"{subhost.name}0"], entry
    finally:
        stop_subhost(subhost, before)


def test_json_takes_no_other_argument() -> None:
    result = run_command("go", "--json", "extra")
    assert result.returncode == 64, result
