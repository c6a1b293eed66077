"""Load: N subhosts x M start/stop cycles through systemd in the box, with work while they run,
and leaks checked by identity after every cycle and at the end.

``make check`` runs the short version (10 x 3); ``make soak`` the long one (50 x 10), set by
``OVERLAY_BOOT_SOAK=NxM``. Each subhost runs a real sysv service (an /etc/init.d script in its
UPPER, started and stopped by the subhost's PID 1, its daemon run by start-stop-daemon). While
all are running, at once: `overlay-go` into each (the service's daemon is alive), a host
directory shared into each with `overlay-share` and removed again, and D-Bus calls on each
(properties State and Services, Run and OpenShell). After `systemctl stop`: nothing named after
a subhost is left in the box (tests/leaks.py: mounts, netns, links, processes, runtime files and
sockets, drop-ins, machined, cgroups, loop devices), and the whole box is back to its warm
baseline by identity (other than the on-demand services' own processes); the shared services'
descriptors and memory, systemd's and journald's descriptors, and the subhosts' main processes'
memory stay within bounds.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.leaks import Usage, grown
from tests.reliability import record
from tests.system.box import SystemdBox
from tests.system.subhosts import REPO, Subhosts, install

pytestmark = pytest.mark.system

SUBHOSTS, CYCLES = (int(x) for x in os.environ.get("OVERLAY_BOOT_SOAK", "10x3").split("x"))
LEAKS = ["/usr/bin/python3", str(REPO / "tests" / "leaks.py")]
#: started on demand, exit when idle: their own processes come and go (measured apart)
ON_DEMAND = ("overlay-boot-net.service", "overlay-boot-bus.service",
             "systemd-machined.service")
#: bounds: the shared services' growth within one process's life, systemd's and journald's
SERVICE_FDS, SERVICE_RSS_KB = 4, 8 * 1024
SYSTEMD_FDS = 2

INIT_SCRIPT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          obsoak
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: soak test daemon
### END INIT INFO
PIDFILE=/run/obsoak.pid
case "$1" in
  start) exec start-stop-daemon --start --background --make-pidfile --pidfile $PIDFILE \\
           --exec /bin/sleep -- 100000 ;;
  stop) exec start-stop-daemon --stop --retry 5 --remove-pidfile --pidfile $PIDFILE ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 3 ;;
esac
"""

#: one batch of D-Bus calls per subhost, all subhosts at once (dbus-next, Debian's)
BUS_LOAD = r'''
import asyncio, json, os, sys
from dbus_next import BusType, Message, MessageType
from dbus_next.aio import MessageBus

BUS = "org.overlayboot.OverlayBoot1"
IFACE = BUS + ".Subhost"

async def one(bus, name, null, errors):
    path = f"/org/overlayboot/OverlayBoot1/subhost/{name}"
    calls = [("org.freedesktop.DBus.Properties", "Get", "ss", [IFACE, "State"], []),
             ("org.freedesktop.DBus.Properties", "Get", "ss", [IFACE, "Services"], []),
             (IFACE, "Run", "asa{ss}hhh", [["true"], {}, 0, 0, 0], [null]),
             (IFACE, "OpenShell", "asa{ss}", [["true"], {}], []),
             (IFACE, "Run", "asa{ss}hhh", [["sh", "-c", "test -s /run/obsoak.pid"], {}, 0, 0, 0],
              [null])]
    found = {}
    for iface, member, signature, body, fds in calls:
        reply = await bus.call(Message(destination=BUS, path=path, interface=iface,
                                       member=member, signature=signature, body=body,
                                       unix_fds=fds))
        for fd in reply.unix_fds:
            os.close(fd)
        if reply.message_type == MessageType.ERROR:
            errors.append(f"{name} {member}: {reply.error_name} {reply.body}")
        elif member == "Get":
            found[body[1]] = reply.body[0].value
        elif member == "Run" and reply.body[0] != 0:
            errors.append(f"{name} Run {body[0]}: status {reply.body[0]}")
    return name, found

async def main(names):
    bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
    null, errors = os.open("/dev/null", os.O_RDWR), []
    results = await asyncio.gather(*(one(bus, n, null, errors) for n in names))
    print(json.dumps({"errors": errors, "props": dict(results)}, default=str))

asyncio.run(main(sys.argv[1:]))
'''

#: overlay-go and overlay-share on every subhost at once
GO_AND_SHARE = r"""
share=$1; shift
fail=0
for n in "$@"; do
  (
    overlay-go "$n" -- sh -c 'kill -0 "$(cat /run/obsoak.pid)"' || echo "$n: service not running"
    overlay-share "$share" "$n" /mnt >/dev/null || echo "$n: overlay-share failed"
    got=$(overlay-go "$n" -- cat /mnt/token) || echo "$n: share not readable inside"
    [ "$got" = "$(cat "$share/token")" ] || echo "$n: share shows '$got'"
    overlay-share --remove "$n" /mnt >/dev/null || echo "$n: overlay-share --remove failed"
  ) &
done
wait
"""


def box_snapshot(box: SystemdBox) -> dict:
    return json.loads(box.run(*LEAKS, "snapshot").stdout)


def new_in_box(baseline: dict, after: dict) -> list[str]:
    """What is in AFTER and not in BASELINE, by identity, but the on-demand services' own."""
    return [text for key, text in sorted(after["things"].items())
            if key not in baseline["things"] and not any(s in text for s in ON_DEMAND)]


def settled_new(box: SystemdBox, baseline: dict, timeout: float = 30) -> tuple[list[str], dict]:
    """New things once nothing transient is counted any more: right after `systemctl stop`
    returns, short-lived processes (a D-Bus activation, a machined client) may be finishing.
    A leak persists; those don't. (A hang guard, not a time budget.)"""
    deadline = time.monotonic() + timeout
    while True:
        after = box_snapshot(box)
        new = new_in_box(baseline, after)
        if not new or time.monotonic() > deadline:
            return new, after
        time.sleep(0.5)


def daemon_usage(box: SystemdBox) -> dict[str, int]:
    """systemd's and journald's descriptors and resident memory (kB)."""
    out = box.run("sh", "-c", "j=$(systemctl show -P MainPID systemd-journald.service); "
                  "for p in 1 $j; do ls /proc/$p/fd | wc -l; "
                  "awk '/^VmRSS/ {print $2}' /proc/$p/status; done").stdout.split()
    return dict(zip(("systemd_fds", "systemd_rss", "journald_fds", "journald_rss"),
                    map(int, out), strict=True))


def main_rss(box: SystemdBox, units: list[str]) -> list[int]:
    """VmRSS (kB) of each unit's main process while running."""
    out = box.run("sh", "-c", "for u in \"$@\"; do p=$(systemctl show -P MainPID $u); "
                  "awk '/^VmRSS/ {print $2}' /proc/$p/status; done", "-", *units).stdout
    return [int(x) for x in out.split()]


def services_now(box: SystemdBox) -> dict[str, Usage]:
    return {k: Usage(**v) for k, v in json.loads(box.run(*LEAKS, "services").stdout).items()}


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdBox]:
    box = SystemdBox(tmp_path_factory.mktemp("soak") / "state")
    try:
        box.boot()
        install(box)
        box.write_file("/usr/local/lib/overlay-boot-test/bus_load.py", BUS_LOAD)
        box.write_file("/usr/local/lib/overlay-boot-test/go_and_share.sh", GO_AND_SHARE, 0o755)
        yield box
    finally:
        box.destroy()
    left = box.leftovers()
    assert left == [], left


def make_subhosts(box: SystemdBox, made: Subhosts) -> list[str]:
    names = []
    for _ in range(SUBHOSTS):
        name = "s" + secrets.token_hex(3)
        made.make("START=/etc/init.d/obsoak\nCABLES= =\n", name=name)
        init_d = box.scratch / name / "root" / "etc" / "init.d"  # in its UPPER only
        init_d.mkdir(parents=True)
        (init_d / "obsoak").write_text(INIT_SCRIPT)
        (init_d / "obsoak").chmod(0o755)
        names.append(name)
    box.run("mkdir", "-p", "/mnt")
    return names


def work(box: SystemdBox, names: list[str], share: str) -> tuple[list[str], dict]:
    """overlay-go, overlay-share and D-Bus calls on every subhost at once: what failed."""
    with ThreadPoolExecutor(2) as pool:
        go = pool.submit(box.run, "/usr/local/lib/overlay-boot-test/go_and_share.sh", share,
                         *names, timeout=600)
        bus_run = pool.submit(box.run, "/usr/bin/python3",
                              "/usr/local/lib/overlay-boot-test/bus_load.py", *names,
                              timeout=600)
        out, bus = go.result().stdout, json.loads(bus_run.result().stdout)
    problems = [p for p in out.splitlines() if p.strip()] + bus["errors"]
    for name, props in bus["props"].items():
        if props.get("State") != "running":
            problems.append(f"{name}: State {props.get('State')!r}")
        if props.get("Services") != [["/etc/init.d/obsoak", "started"]]:
            problems.append(f"{name}: Services {props.get('Services')!r}")
    return problems, bus["props"]


def test_start_stop_cycles_leave_nothing(box: SystemdBox) -> None:
    made = Subhosts(box)
    names = make_subhosts(box, made)
    units = [made.unit(n) for n in names]
    share = box.scratch / "share"
    share.mkdir()
    (share / "token").write_text(secrets.token_hex(8))
    box.run("systemctl", "daemon-reload")
    # One warm-up cycle first: systemd and journald allocate for new units once.
    box.run("systemctl", "start", *units, timeout=600)
    work(box, names, str(share))
    box.run("systemctl", "stop", *units, timeout=600)
    baseline = box_snapshot(box)
    daemons_before = daemon_usage(box)
    rows = []
    first_services: dict[str, Usage] = {}
    try:
        for cycle in range(1, CYCLES + 1):
            began = time.monotonic()
            box.run("systemctl", "start", *units, timeout=600)
            started = time.monotonic() - began  # reported, never asserted (make bench)
            states = [made.state(n) for n in names]
            problems, _ = work(box, names, str(share))
            if cycle == 1:  # the leak check sees a running subhost: it is not vacuous
                running = {line.split()[0] for line in made.leftovers(names[0])}
                assert {"mount", "netns", "link", "process", "file", "cgroup"} <= running, \
                    made.leftovers(names[0])
            rss = main_rss(box, units)
            services = services_now(box)
            first_services = first_services or services
            box.run("systemctl", "stop", *units, timeout=600)
            new, _ = settled_new(box, baseline)
            leaks = [f"{n}: {thing}" for n in names for thing in made.leftovers(n)] + new
            daemons = daemon_usage(box)
            grew = grown(first_services, services, fds=SERVICE_FDS, rss_kb=SERVICE_RSS_KB)
            row = {"cycle": cycle, "start_seconds": round(started, 2),
                   "active": states.count("active"), "work_errors": problems,
                   "main_rss_kb_max": max(rss), "main_rss_kb_sum": sum(rss), "leaks": leaks,
                   "services": {k: {"fds": v.fds, "rss_kb": v.rss_kb, "pid": v.pid}
                                for k, v in services.items()},
                   "services_grown": grew,
                   **{k: daemons[k] - daemons_before[k] for k in daemons}}
            rows.append(row)
            record("load", f"{SUBHOSTS} subhosts, cycle {cycle}/{CYCLES}", **row)
            assert states == ["active"] * SUBHOSTS, states
            assert problems == [], problems[:20]
            assert leaks == [], leaks[:50]
            assert grew == [], grew
            for key in ("systemd_fds", "journald_fds"):
                assert row[key] <= SYSTEMD_FDS, (cycle, key, row)
    finally:
        box.run("systemctl", "stop", *units, timeout=600, check=False)
    # at the end: the whole box, by identity, once more
    new, _ = settled_new(box, baseline)
    assert new == [], new[:50]
    first = rows[0]["main_rss_kb_max"]
    assert all(r["main_rss_kb_max"] <= first * 1.1 + 1024 for r in rows), rows
    # systemd's own memory: allowed to settle, not to grow with every cycle
    if CYCLES >= 3:
        growth = rows[-1]["systemd_rss"] - rows[1]["systemd_rss"]
        assert growth <= 2048 * max(1, SUBHOSTS // 10), rows
