"""USERNS= as data: the value's syntax, the range arithmetic, and the mount plans it changes
(the start itself is tested on the real kernel in tests/root/test_userns.py)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from overlay_boot.config import Config, IdRange, load_config, parse_userns
from overlay_boot.errors import ConfigError
from overlay_boot.linux.mounts import IdmappedOverlay, plan_inside, plan_root


def config(tmp: Path, **kw) -> Config:
    fields = {
        "path": tmp / "sub.conf", "name": "sub", "base": tmp, "live": tmp / "live",
        "upper": tmp / "root", "work": tmp / "work", "lower": (Path("/"),),
    }
    fields.update(kw)
    return Config(**fields)


@pytest.mark.parametrize("text, expected", [
    ("no", None), ("", None), ("65536", IdRange(65536, 65536)),
    ("200000:1000", IdRange(200000, 1000)), ("4294901759:65536", IdRange(4294901759, 65536)),
])
def test_good_values(text: str, expected: IdRange | None) -> None:
    assert parse_userns(text) == (expected, None)


@pytest.mark.parametrize("text", ["yes", "auto", "-1", "0x10000", "65536:", ":5", "1:2:3",
                                  "65535", "0", "70000:0", "4294901760:65536", " 70000"])
def test_bad_values(text: str) -> None:
    ids, why = parse_userns(text)
    assert ids is None and why


def test_overlap_and_map_line() -> None:
    a = IdRange(100000, 65536)
    assert a.overlaps(IdRange(165535, 1)) and a.overlaps(IdRange(0, 100001))
    assert not a.overlaps(IdRange(165536)) and not a.overlaps(IdRange(34464, 65536))
    assert a.map_line() == "0 100000 65536\n" and str(a) == "100000:65536"


def test_config_reads_it_literally(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("BASE=.\nUSERNS=300000:4096\n")
    assert load_config(conf).userns == IdRange(300000, 4096)
    conf.write_text("BASE=.\n")
    assert load_config(conf).userns is None
    conf.write_text("BASE=.\nUSERNS=!echo 300000\n")
    with pytest.raises(ConfigError) as err:
        load_config(conf)
    assert f"{conf}:2: USERNS: USERNS is never a command" in str(err.value)


def test_root_plan_is_the_idmapped_overlay(tmp_path: Path) -> None:
    c = config(tmp_path, userns=IdRange(300000))
    [op] = plan_root(c, userns_fd=7)
    assert op == IdmappedOverlay(PurePosixPath(tmp_path / "live"), "sub", (Path("/"),),
                                 tmp_path / "root", tmp_path / "work", 7)
    assert "idmapped, nodev" in op.describe()
    # Without the user namespace's descriptor: the plan of a subhost without USERNS=.
    assert "lowerdir=/" in plan_root(c)[0].describe()


def test_root_plan_refuses_other_variants(tmp_path: Path) -> None:
    c = config(tmp_path, userns=IdRange(300000), upper=Path("/"), lower=(Path("/"),))
    with pytest.raises(ValueError, match="needs an overlay root"):
        plan_root(c, userns_fd=7)


def test_inside_plan_gives_root_inside_its_tmpfs_and_devices(tmp_path: Path) -> None:
    c = config(tmp_path, userns=IdRange(300000))
    plain = [op.describe() for op in plan_inside(c)]
    mapped = [op.describe() for op in plan_inside(c, userns_fd=7)]
    assert len(plain) == len(mapped)
    assert "mount tmpfs on /dev (mode=755,size=4M,uid=300000,gid=300000, nosuid)" in mapped
    assert "mount tmpfs on /run (mode=755,size=50M,uid=300000,gid=300000, nosuid, nodev)" \
        in mapped
    assert any("devpts" in d and "gid=300005," in d for d in mapped)
    assert any(d.startswith("mknod /dev/tty c 5 0 (mode 666, gid 300005)") for d in mapped)
    assert not any("uid=" in d for d in plain)
