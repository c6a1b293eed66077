"""Root inside a subhost started by systemd (overlay-boot@NAME.service) against the host.

The same probe as tests/root/test_hostile.py, in a really booted systemd: the unit's own
hardening (bounding set, device policy, system call filter) comes on top of PID 1's
confinement, and must not break what an ordinary subhost does.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.root.test_hostile import (
    DROPPED,
    LEFTOVER,
    MTA_CHECK,
    MTA_START,
    PROBE,
    REFUSED,
    check_mta,
    prepare_mta,
)

from .box import SystemdBox
from .subhosts import Subhosts, install

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    yield systemd_box


def _start(box: SystemdBox, subhosts: Subhosts, text: str, mta: bool = False) -> str:
    name, _ = subhosts.make(text)
    upper = box.scratch / name / "root"
    if mta:
        prepare_mta(upper, box.scratch / name)
    (upper / "root").mkdir(parents=True, exist_ok=True)
    (upper / "root/hostile_probe.py").write_text(PROBE.read_text())
    (upper / "tmp").mkdir()
    os.mknod(upper / "tmp/planted-null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name), timeout=60)
    return name


def _probe(box: SystemdBox, name: str, *args: str) -> dict:
    out = box.run("overlay-go", name, "--", "/usr/bin/python3", "/root/hostile_probe.py",
                  *args).stdout
    return json.loads(out)


def test_every_known_way_out_is_refused_under_systemd(box: SystemdBox,
                                                       subhosts: Subhosts) -> None:
    # The box's /etc is its own (an overlay): an /etc/adjtime here changes nothing on the host.
    box.write_file("/etc/adjtime", "0.0 0 0.0\n0\nUTC\n")
    name = _start(box, subhosts, f"START=none\nPREMOUNT=true; {LEFTOVER} & true\n")
    results = _probe(box, name, "", "/tmp/planted-null", LEFTOVER)
    assert results["adjtime_write"] == "EROFS"  # M5: bound, read-only
    wrong = {key: results[key] for key, allowed in REFUSED.items()
             if key in results and results[key] not in allowed}
    assert not wrong, f"not refused as expected: {wrong}"
    bounding = int(results["capabilities"]["CapBnd"], 16)
    assert not {n for n, number in DROPPED.items() if bounding >> number & 1}
    assert results["ordinary"] == {
        "chown": "ok", "bind_port_80": "ok", "chroot": "ok", "net_sysctl": "ok",
        "setuid_passwd": "ok", "su": "ok",
    }


def test_capabilities_all_under_systemd(box: SystemdBox, subhosts: Subhosts) -> None:
    name = _start(box, subhosts, "START=none\nCAPABILITIES=all\n")
    results = _probe(box, name)
    have = int(Path("/proc/self/status").read_text().split("CapBnd:")[1].split()[0], 16)
    assert int(results["capabilities"]["CapBnd"], 16) == have
    assert results["core_pattern"] == "ok"
    journal = box.journal(subhosts.unit(name), "every capability")
    assert "CAPABILITIES=all grants every capability" in journal


def test_seed_mta_example_runs_confined_under_systemd(box: SystemdBox,
                                                      subhosts: Subhosts) -> None:
    name = _start(box, subhosts, MTA_START, mta=True)
    inside = box.run("overlay-go", name, "--", "sh", "-c", MTA_CHECK, check=False)
    assert inside.returncode == 0, (inside.stdout, inside.stderr,
                                    box.run("journalctl", "-u", subhosts.unit(name)).stdout)
    check_mta(inside.stdout, name)
    journal = box.journal(subhosts.unit(name), "ssh: start: done")
    assert "rsyslog: start: done" in journal and "ssh: start: done" in journal
