"""Subhosts made inside the systemd test box, shared by the system tests.

`install(box)` puts the project into the box (`make install`: Debian's /usr/bin/python3 with
Debian's python3-pyroute2/-dbus-next/-pystemd); `Subhosts` makes bases and configs on the box's
scratch directory (an overlay upper can't be on the box's own overlay root) and finds what a
subhost left behind.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from overlay_boot.naming import unit_name

from .box import SystemdBox

REPO = Path(__file__).resolve().parents[2]


def install(box: SystemdBox) -> None:
    box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    box.run("systemctl", "daemon-reload")


class Subhosts:
    """Makes subhost bases and configs inside the box; tracks them to stop them at the end."""

    def __init__(self, box: SystemdBox) -> None:
        self.box = box
        self.names: list[str] = []

    def make(self, text: str = "START=none\n", *, name: str | None = None,
             conf_dir: str = "/etc/overlay-boot", link: bool = True) -> tuple[str, str]:
        name = name or "t" + secrets.token_hex(3)
        base = self.box.scratch / name
        for sub in ("live", "root", "work"):
            (base / sub).mkdir(parents=True)
        base.chmod(0o755)
        conf = base / f"{name}.conf"
        conf.write_text(f"BASE=.\n{text}")
        conf.chmod(0o644)
        path = str(conf)
        if link:
            self.box.run("mkdir", "-p", conf_dir)
            self.box.run("ln", "-sf", str(conf), f"{conf_dir}/{name}.conf")
            path = f"{conf_dir}/{name}.conf"
        self.names.append(name)
        return name, path

    def script(self, name: str, word: str, record: Path) -> str:
        """A START script that records its start/stop in RECORD and runs a daemon."""
        path = self.box.scratch / f"{name}-{word}.sh"
        path.write_text(
            "#!/bin/sh\n"
            f'echo "$1 {word}" >> {record}\n'
            f'echo "{word} says $1"\n'
            'if [ "$1" = start ]; then sleep 0.3; '
            "setsid sleep 1000 </dev/null >/dev/null 2>&1 & fi\n"
        )
        path.chmod(0o755)
        return str(path)

    def unit(self, name: str) -> str:
        return unit_name(name)  # NAME escaped as systemd-escape does ('-' kept)

    def state(self, name: str) -> str:
        return self.box.run("systemctl", "is-active", self.unit(name), check=False).stdout.strip()

    def leftovers(self, name: str) -> list[str]:
        """Everything named after NAME (or under its base) that exists in the box: mounts,
        netns, links, processes (the unit's cgroup, hostname NAME, and their descendants),
        runtime files and sockets, runtime drop-ins, machined registrations, cgroups, loop
        devices (tests/leaks.py, run inside the box)."""
        return remains_in_box(self.box, name, f"{self.box.scratch}/{name}/")

    def stop_all(self) -> None:
        """Stop every subhost made here; fail on anything one of them left."""
        for name in self.names:
            self.box.run("systemctl", "stop", self.unit(name), check=False)
            self.box.run("systemctl", "reset-failed", self.unit(name), check=False)
        for name in self.names:
            assert self.leftovers(name) == []


def remains_in_box(box: SystemdBox, name: str, *paths: str) -> list[str]:
    """What exists in BOX named after NAME (or under PATHS) by tests/leaks.py `remains`, after
    a stop. What is asynchronous after a stop gets a moment: the kernel's removal of a netns
    and its veth ends, and machined forgetting the machine (it does when systemd's signal that
    the unit stopped reaches it, after `systemctl stop` has returned)."""
    deadline = time.monotonic() + 5
    while True:
        out = box.run("/usr/bin/python3", str(REPO / "tests" / "leaks.py"), "remains",
                      name, *paths).stdout
        if not out or time.monotonic() > deadline:
            return out.splitlines()
        time.sleep(0.1)
