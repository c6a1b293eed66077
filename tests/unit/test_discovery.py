"""Config discovery: /etc/overlay-boot/*.conf, /etc/subhosts.conf, instance lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlay_boot import discovery
from overlay_boot.config import load_config
from overlay_boot.discovery import Found
from overlay_boot.errors import ConfigError


@pytest.fixture
def etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf_dir = tmp_path / "overlay-boot"
    conf_dir.mkdir()
    monkeypatch.setenv(discovery.CONFIG_DIR_ENV, str(conf_dir))
    monkeypatch.setenv(discovery.SUBHOSTS_CONF_ENV, str(tmp_path / "subhosts.conf"))
    return tmp_path


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(discovery.CONFIG_DIR_ENV, raising=False)
    monkeypatch.delenv(discovery.SUBHOSTS_CONF_ENV, raising=False)
    assert discovery.config_dirs() == [Path("/etc/overlay-boot")]
    assert discovery.subhosts_conf() == Path("/etc/subhosts.conf")


def test_missing_places_mean_no_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(discovery.CONFIG_DIR_ENV, str(tmp_path / "none"))
    monkeypatch.setenv(discovery.SUBHOSTS_CONF_ENV, str(tmp_path / "none.conf"))
    assert discovery.discover() == []


def test_directory_entries(etc: Path) -> None:
    d = etc / "overlay-boot"
    for name in ("b.conf", "a.conf", ".hidden.conf", "x.conf.bak", "README", ".conf"):
        (d / name).write_text("BASE=/x\n")
    (d / "dir.conf").mkdir()
    (d / "dangling.conf").symlink_to("/nonexistent.conf")
    (d / "link.conf").symlink_to(etc / "elsewhere.conf")
    (etc / "elsewhere.conf").write_text("BASE=/x\n")
    found = discovery.discover()
    assert found == [Found(d / n, "dir", False)
                     for n in ("a.conf", "b.conf", "dangling.conf", "link.conf")]


def test_subhosts_conf(etc: Path) -> None:
    (etc / "subhosts.conf").write_text(
        "# comment line /x/commented.conf\n"
        "\n"
        "/srv/one.conf   /srv/two.conf # trailing comment\n"
        "  /srv/three.conf\n"
        "relative.conf\n"
        "/srv/./four.conf\n"
    )
    problems: list = []
    found = discovery.discover(problems=problems)
    assert [f.path for f in found] == [Path(p) for p in
                                       ("/srv/one.conf", "/srv/two.conf", "/srv/three.conf",
                                        "/srv/four.conf")]
    assert all(f.origin == "subhosts.conf" and f.wanted for f in found)
    assert [str(p) for p in problems] == [
        f"{etc}/subhosts.conf:5: 'relative.conf' is not an absolute path; ignored"]
    with pytest.raises(ConfigError):
        discovery.discover()  # without a problems list, a problem is raised


def test_same_file_twice_is_one_subhost(etc: Path) -> None:
    real = etc / "opt" / "mta.conf"
    real.parent.mkdir()
    real.write_text("BASE=.\n")
    (etc / "overlay-boot" / "mta.conf").symlink_to(real)
    (etc / "subhosts.conf").write_text(f"{real}\n{real}\n")
    assert discovery.discover() == [Found(etc / "overlay-boot" / "mta.conf", "dir", True)]


def test_template_links_are_subhosts_of_their_own(etc: Path) -> None:
    """c1: two links to one template config in two subhost directories are two subhosts
    (each takes BASE=. from its own directory), wherever they are listed."""
    tmpl = etc / "tmpl" / "tmpl.conf"
    tmpl.parent.mkdir()
    tmpl.write_text("BASE=.\n")
    links = []
    for sub in ("a", "b"):
        (etc / sub).mkdir()
        links.append(etc / sub / f"{sub}.conf")
        links[-1].symlink_to(tmpl)
    (etc / "subhosts.conf").write_text(f"{links[0]}\n{links[1]}\n{links[0]}\n")
    found = discovery.discover()
    assert found == [Found(p, "subhosts.conf", True) for p in links]
    assert [load_config(f.path).base for f in found] == [etc / "a", etc / "b"]


def test_several_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "z.conf").write_text("")
    (b / "a.conf").write_text("")
    monkeypatch.setenv(discovery.CONFIG_DIR_ENV, f"{a}:{b}")
    monkeypatch.setenv(discovery.SUBHOSTS_CONF_ENV, str(tmp_path / "none"))
    assert [f.path for f in discovery.discover()] == [a / "z.conf", b / "a.conf"]


def test_declared_name(tmp_path: Path) -> None:
    conf = tmp_path / "file.conf"
    conf.write_text("# NAME=no\n NAME=indented\nNAME=\nNAME=later\n")
    assert discovery.declared_name(conf) == "file"  # the first (empty) NAME= means default
    conf.write_text("BASE=/x\nNAME=  web \nNAME=other\n")
    assert discovery.declared_name(conf) == "web"
    assert discovery.declared_name(tmp_path / "gone.conf") == "gone"
    conf.write_text("BASE=/x\nNAME='web.1'\n")  # read as the config reader reads it (c3)
    assert discovery.declared_name(conf) == "web.1" == load_config(conf, run=None).name


def test_find_instance(etc: Path) -> None:
    d = etc / "overlay-boot"
    (d / "web.conf").write_text("BASE=/x\n")
    (d / "other.conf").write_text("NAME=mail\nBASE=/x\n")
    legacy = etc / "legacy.conf"
    legacy.write_text("BASE=/x\n")
    (etc / "subhosts.conf").write_text(f"{legacy}\n")
    assert discovery.find_instance("web") == d / "web.conf"
    assert discovery.find_instance("mail") == d / "other.conf"
    assert discovery.find_instance("legacy") == legacy
    with pytest.raises(ConfigError) as e:
        discovery.find_instance("other")
    message = str(e.value)
    assert "no configuration for subhost other" in message
    assert str(d) in message and "subhosts.conf" in message
    assert f"{d}/other.conf declares NAME=mail" in message


def test_find_instance_first_of_duplicates(etc: Path) -> None:
    d = etc / "overlay-boot"
    (d / "b.conf").write_text("NAME=web\n")
    (d / "a.conf").write_text("NAME=web\n")
    assert discovery.find_instance("web") == d / "a.conf"


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", "..", ".", "-x", "x" * 65,
                                  "a b", "a\nb", "*", "a\\x2fb"])
def test_find_instance_rejects_unsafe_names(etc: Path, name: str) -> None:
    # Even where a file of that name exists, nothing outside the rules is selected.
    (etc / "overlay-boot" / "x.conf").write_text("BASE=/x\n")
    with pytest.raises(ConfigError) as e:
        discovery.find_instance(name)
    assert "not a valid subhost name" in str(e.value)


@pytest.mark.parametrize("text", [
    "BASE=.\rNAME=web\r",  # CR-only line ends: one line for the config reader
    "BASE=.\n\rNAME=web\nNAME=db\n",
    "NAME=web\r\nBASE=.\n",
    "BASE=.\n\x0bNAME=web\n\x0cNAME=db\nNAME=mail\n",  # str.splitlines would split at VT, FF
])
def test_declared_name_splits_lines_as_the_config_reader(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "file.conf"
    conf.write_bytes(text.encode())
    assert discovery.declared_name(conf) == load_config(conf, run=None).name
