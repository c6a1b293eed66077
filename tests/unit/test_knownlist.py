"""The generator's list of known configs (knownlist.py) and the starts' use of it
(neighbours.others): the same neighbours as parsing every config, used only while fresh and
only when root's own file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from overlay_boot import generator, knownlist, neighbours, state
from overlay_boot.config import load_config


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config directory with three subhosts (one with USERNS=, one whose BASE is a `!`
    command), a subhosts.conf listing a fourth, and the generator run over them."""
    tmp_path.chmod(0o755)
    etc = tmp_path / "etc"
    etc.mkdir()
    for name, extra in (("a", ""), ("b", "USERNS=1000000:65536\n"),
                        ("c", "UPPER=upper\nWORK=/var/w c\n")):
        (tmp_path / "srv" / name).mkdir(parents=True)
        (etc / f"{name}.conf").write_text(f"BASE={tmp_path}/srv/{name}\n{extra}")
    (etc / "bang.conf").write_text("BASE=!echo /srv/x\n")
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "d.conf").write_text(f"BASE={tmp_path}/srv/d\n")
    (tmp_path / "subhosts.conf").write_text(f"{tmp_path}/opt/d.conf\n")
    out = tmp_path / "generator"
    out.mkdir()
    monkeypatch.setenv("OVERLAY_BOOT_CONFIG_DIR", str(etc))
    monkeypatch.setenv("OVERLAY_BOOT_SUBHOSTS_CONF", str(tmp_path / "subhosts.conf"))
    monkeypatch.setenv("OVERLAY_BOOT_TEMPLATE", "/usr/lib/systemd/system/overlay-boot@.service")
    monkeypatch.setattr(state, "RUN_DIR", tmp_path / "run")  # no running subhost
    monkeypatch.delenv("SYSTEMD_SCOPE", raising=False)
    monkeypatch.setenv(knownlist.PATH_ENV, str(out / knownlist.NAME))
    _generate_after_a_while(out)
    return tmp_path


def _generate_after_a_while(out: Path) -> None:
    """Run the generator once the configs' change times are older than knownlist.RECENT_NS
    (a list made right after a change is stale from the start: test_a_fresh_change_...)."""
    time.sleep(knownlist.RECENT_NS / 1e9)
    assert generator.main([str(out), str(out), str(out)]) == 0


def _listed(host: Path) -> dict[str, knownlist.Neighbour]:
    entries = knownlist.read()
    assert entries is not None
    return {n.name: n for _, n, _ in entries}


def test_the_generator_lists_every_parsed_config(host: Path) -> None:
    listed = _listed(host)
    assert sorted(listed) == ["a", "b", "bang", "c", "d"]
    assert listed["a"].base == f"{host}/srv/a" and listed["a"].upper == f"{host}/srv/a/root"
    assert listed["a"].work == f"{host}/srv/a/work" and listed["a"].live == f"{host}/srv/a/live"
    assert listed["b"].userns == knownlist.IdRange(1000000, 65536)
    assert listed["a"].userns is None
    assert listed["c"].upper == f"{host}/srv/c/upper" and listed["c"].work == "/var/w c"
    assert listed["bang"].base is None and listed["bang"].upper is None  # never evaluated
    st = os.stat(knownlist.path())
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0


def test_the_list_records_each_config_as_the_generator_read_it(host: Path) -> None:
    """The generator keeps the fstat of each config it read (no second stat per config):
    the list holds that file's identity, and a file edited since shows another ctime."""
    result = generator.generate()
    assert sorted(result.statuses) == sorted(str(p) for _, p in result.parsed)
    for _, where in result.parsed:
        st, now = result.statuses[str(where)], os.stat(where)
        assert (st.st_dev, st.st_ino, st.st_ctime_ns) == (now.st_dev, now.st_ino, now.st_ctime_ns)
    data = knownlist.render(result.parsed, result.statuses)
    assert data == knownlist.render(result.parsed)  # the same as stat'ing each file
    a = next(p for c, p in result.parsed if c.name == "a")
    other = os.stat(host / "etc" / "b.conf")
    moved = knownlist.render(result.parsed, {**result.statuses, str(a): other})
    assert f"{a}\0{other.st_dev}\0{other.st_ino}\0a\0".encode() in moved


def test_others_from_the_list_equal_others_from_parsing(host: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(host / "etc/a.conf")
    from_list = neighbours.others(config)
    monkeypatch.setenv(knownlist.PATH_ENV, str(host / "nonexistent"))
    parsed = neighbours.others(config)
    assert sorted(from_list.configs, key=str) == sorted(parsed.configs, key=str)
    assert {n.name for n, _ in parsed.configs} == {"b", "bang", "c", "d"}
    monkeypatch.setenv(knownlist.PATH_ENV, str(host / "generator" / knownlist.NAME))
    # masks where the directories exist (srv/d and /var/w c do not), one per BASE
    assert neighbours.other_subhost_dirs(config) == (host / "srv/b", host / "srv/c")


@pytest.mark.parametrize("change", ["edit a config", "new config", "removed config",
                                    "subhosts.conf edited", "subhosts.conf created",
                                    "other config directory"])
def test_a_stale_list_is_not_used(host: Path, monkeypatch: pytest.MonkeyPatch,
                                  change: str) -> None:
    assert knownlist.read() is not None
    etc = host / "etc"
    if change == "edit a config":
        with open(etc / "b.conf", "a") as f:
            f.write("UPPER=elsewhere\n")
    elif change == "new config":
        (etc / "e.conf").write_text(f"BASE={host}/srv/e\n")
    elif change == "removed config":
        (etc / "c.conf").unlink()
    elif change == "subhosts.conf edited":
        (host / "subhosts.conf").write_text("")
    elif change == "subhosts.conf created":
        (host / "subhosts.conf").unlink()
        monkeypatch.setenv("OVERLAY_BOOT_SUBHOSTS_CONF", str(host / "subhosts.conf"))
        _generate_after_a_while(host / "generator")
        assert knownlist.read() is not None
        (host / "subhosts.conf").write_text("")
    else:
        monkeypatch.setenv("OVERLAY_BOOT_CONFIG_DIR", str(host / "opt"))
    assert knownlist.read() is None
    config = load_config(host / "etc/a.conf")
    if change == "edit a config":  # the start parses: it sees the edit
        b = {n.name: n for n, _ in neighbours.others(config).configs}["b"]
        assert b.upper == f"{host}/srv/b/elsewhere"


@pytest.mark.parametrize("problem", ["group-writable", "owned by a user", "a symlink",
                                     "directory writable by others", "truncated", "garbage"])
def test_a_list_not_root_own_or_malformed_is_not_used(host: Path, problem: str) -> None:
    where = Path(knownlist.path())
    assert knownlist.read() is not None
    if problem == "group-writable":
        where.chmod(0o620)
    elif problem == "owned by a user":
        os.chown(where, 1000, 1000)
    elif problem == "a symlink":
        real = where.with_name("real.list")
        where.rename(real)
        where.symlink_to(real)
    elif problem == "directory writable by others":
        where.parent.chmod(0o777)
    elif problem == "truncated":
        where.write_bytes(where.read_bytes()[:-40])
    else:
        where.write_bytes(knownlist.MAGIC + b"\0" + b"x\0" * 5)
    assert knownlist.read() is None


def test_a_fresh_change_makes_the_list_stale_from_the_start(host: Path) -> None:
    """A config changed just before the generator ran: a second change in the same tick of
    the kernel's coarse ctime clock would not show, so the list is never taken as fresh."""
    (host / "etc" / "a.conf").write_text(f"BASE={host}/srv/a\n")
    out = host / "generator"
    assert generator.main([str(out), str(out), str(out)]) == 0
    assert knownlist.read() is None
