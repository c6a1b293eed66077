"""The test box does not depend on what the host has installed (issue 14, item 9): a local
install of the project on the host (/usr/local, a D-Bus policy in /etc/dbus-1/system.d, units
in /etc/systemd/system) does not show in the box, which starts with an empty /usr/local."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from .box import SystemdBox

pytestmark = pytest.mark.system

UNIT_TEXT = "[Service]\nExecStart=/bin/true\n"


@contextlib.contextmanager
def planted(paths: dict[Path, str]) -> Iterator[None]:
    """Files written on the host for the test; they and the directories made for them are
    removed again at the end."""
    made: list[Path] = []
    try:
        for path, text in paths.items():
            missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
            for d in reversed(missing):
                d.mkdir()
                made.append(d)
            path.write_text(text)
            made.append(path)
        yield
    finally:
        for path in reversed(made):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


def test_host_local_installs_do_not_show_in_the_box(new_box: SystemdBox) -> None:
    tag = secrets.token_hex(3)
    local_unit = Path(f"/usr/local/lib/systemd/system/overlay-boot-planted{tag}.service")
    local_command = Path(f"/usr/local/sbin/overlay-planted{tag}")
    etc_unit = Path(f"/etc/systemd/system/overlay-boot-planted{tag}.service")
    policy = Path(f"/etc/dbus-1/system.d/org.overlayboot.planted{tag}.conf")
    files = {local_unit: UNIT_TEXT, local_command: "#!/bin/sh\n", etc_unit: UNIT_TEXT,
             policy: "<busconfig/>\n"}
    with planted(files):
        assert all(p.is_file() for p in files)
        new_box.boot()
        seen = new_box.run("sh", "-c", 'for p; do [ ! -e "$p" ] || echo "$p"; done', "-",
                           *map(str, files)).stdout.split()
        assert seen == []
        for unit in (local_unit.name, etc_unit.name):
            assert new_box.systemctl("cat", unit, check=False).returncode != 0
        # Debian's empty /usr/local, the box's own to install into
        listing = new_box.run("ls", "-A", "/usr/local").stdout.split()
        assert listing == ["bin", "etc", "games", "include", "lib", "man", "sbin", "share",
                           "src"]
        assert new_box.run("find", "/usr/local", "-type", "f").stdout == ""
        new_box.write_file(str(local_command), "#!/bin/sh\necho the box own\n", mode=0o755)
        assert new_box.run(str(local_command)).stdout == "the box own\n"
        # the host's own files elsewhere still show
        assert new_box.run("test", "-x", "/usr/bin/python3").returncode == 0
    assert not any(p.exists() for p in files)
    assert local_command.parent.is_dir()  # the host's own /usr/local/sbin was kept
