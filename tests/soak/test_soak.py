"""Load: N subhosts x M start/stop cycles through systemd in the box, counting leaks each cycle.

``make check`` runs the short version (10 x 3); ``make soak`` the long one (50 x 10), set by
``OVERLAY_BOOT_SOAK=NxM``. After every stop: zero mounts, netns, links, processes or runtime files
of the subhosts left in the box; systemd's and journald's descriptors and memory, the number of
processes and mounts in the box are back where they were; the supervisors' memory while running
is flat across cycles (no cycle's worse than the first by more than a small margin).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest

from tests.reliability import record
from tests.system.box import SystemdBox
from tests.system.test_units import REPO, Subhosts

pytestmark = pytest.mark.system

SUBHOSTS, CYCLES = (int(x) for x in os.environ.get("OVERLAY_BOOT_SOAK", "10x3").split("x"))
PROBE = r"""
set -e
n_mounts=$(wc -l < /proc/self/mountinfo)
n_netns=$(ls /run/netns 2>/dev/null | wc -l)
n_links=$(ls /sys/class/net | wc -l)
# services activated on demand come and go (socket or D-Bus activation, exit when idle): the
# shared cable service, the D-Bus service, systemd-machined (our subhosts register there)
n_ondemand=0
for s in overlay-boot-net overlay-boot-bus systemd-machined; do
  n=$(cat /sys/fs/cgroup/system.slice/$s.service/cgroup.procs 2>/dev/null | wc -l)
  n_ondemand=$((n_ondemand + n))
done
n_procs=$(( $(ls -d /proc/[0-9]* | wc -l) - n_ondemand ))
n_runtime=$(ls /run/overlay-boot 2>/dev/null | grep -v -e '^ctl$' -e '^net.sock$' | wc -l)
jpid=$(systemctl show -P MainPID systemd-journald.service)
fd1=$(ls /proc/1/fd | wc -l)
fdj=$(ls /proc/$jpid/fd | wc -l)
rss1=$(awk '/^VmRSS/ {print $2}' /proc/1/status)
rssj=$(awk '/^VmRSS/ {print $2}' /proc/$jpid/status)
echo "mounts=$n_mounts netns=$n_netns links=$n_links procs=$n_procs runtime=$n_runtime"
echo "systemd_fds=$fd1 journald_fds=$fdj systemd_rss=$rss1 journald_rss=$rssj"
"""


def probe(box: SystemdBox) -> dict[str, int]:
    out = box.run("sh", "-c", PROBE).stdout
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}


LEAK_KEYS = ("netns", "links", "mounts", "runtime", "procs")
FD_KEYS = ("systemd_fds", "journald_fds")


def settled_probe(box: SystemdBox, baseline: dict[str, int], timeout: float = 5) -> dict[str, int]:
    """The probe once nothing transient is counted any more: right after `systemctl stop`
    returns, short-lived processes of the box (a D-Bus activation, a machined client, their
    connections to systemd) may still be finishing. A leak persists; those don't."""
    deadline = time.monotonic() + timeout
    while True:
        after = probe(box)
        settled = all(after[k] <= baseline[k] for k in LEAK_KEYS) and all(
            after[k] <= baseline[k] + 2 for k in FD_KEYS)
        if settled or time.monotonic() > deadline:
            return after
        time.sleep(0.2)


def supervisors_rss(box: SystemdBox, units: list[str]) -> list[int]:
    """VmRSS (kB) of each unit's main process (the supervisor) while running."""
    out = box.run("sh", "-c", "for u in \"$@\"; do p=$(systemctl show -P MainPID $u); "
                  "awk '/^VmRSS/ {print $2}' /proc/$p/status; done", "-", *units).stdout
    return [int(x) for x in out.split()]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdBox]:
    box = SystemdBox(tmp_path_factory.mktemp("soak") / "state")
    try:
        box.boot()
        box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
        box.run("systemctl", "daemon-reload")
        yield box
    finally:
        box.destroy()
    left = box.leftovers()
    assert left == [], left


def test_start_stop_cycles_leave_nothing(box: SystemdBox) -> None:
    made = Subhosts(box)
    names = [made.make("START=none\nCABLES= =\n")[0] for _ in range(SUBHOSTS)]
    units = [made.unit(n) for n in names]
    box.run("systemctl", "daemon-reload")
    # One warm-up cycle first: systemd and journald allocate for new units once.
    box.run("systemctl", "start", *units, timeout=300)
    box.run("systemctl", "stop", *units, timeout=300)
    baseline = probe(box)
    processes_before = box.run("ps", "-eo", "pid,ppid,comm,args", "--no-headers").stdout
    rows = []
    try:
        for cycle in range(1, CYCLES + 1):
            began = time.monotonic()
            box.run("systemctl", "start", *units, timeout=300)
            started = time.monotonic() - began
            states = [made.state(n) for n in names]
            rss = supervisors_rss(box, units)
            box.run("systemctl", "stop", *units, timeout=300)
            after = settled_probe(box, baseline)
            leaks = [f"{n}: {left}" for n in names if (left := made.leftovers(n))]
            row = {"cycle": cycle, "start_seconds": round(started, 2),
                   "active": states.count("active"), "supervisor_rss_kb_max": max(rss),
                   "supervisor_rss_kb_sum": sum(rss), "leaks": leaks,
                   **{k: after[k] - baseline[k] for k in after}}
            rows.append(row)
            record("load", f"{SUBHOSTS} subhosts, cycle {cycle}/{CYCLES}", **row)
            assert states == ["active"] * SUBHOSTS, states
            assert leaks == [], leaks
            for key in LEAK_KEYS:
                assert after[key] <= baseline[key], (
                    cycle, key, after, baseline, processes_before,
                    box.run("ps", "-eo", "pid,ppid,comm,args", "--no-headers").stdout)
            for key in FD_KEYS:
                assert after[key] <= baseline[key] + 2, (cycle, key, after, baseline)
    finally:
        box.run("systemctl", "stop", *units, timeout=300, check=False)
    first = rows[0]["supervisor_rss_kb_max"]
    assert all(r["supervisor_rss_kb_max"] <= first * 1.1 + 1024 for r in rows), rows
    # systemd's own memory: allowed to settle, not to grow with every cycle
    if CYCLES >= 3:
        growth = rows[-1]["systemd_rss"] - rows[1]["systemd_rss"]
        assert growth <= 2048 * max(1, SUBHOSTS // 10), rows
