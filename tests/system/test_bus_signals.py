"""The D-Bus service's signals, in a booted box: ObjectManager's InterfacesAdded/Removed on the
manager, PropertiesChanged on the subhosts' objects.

The subscribers are what an admin or a script would use inside the box: `busctl monitor`, and
a dbus-next client run by Debian's /usr/bin/python3 (python3-dbus-next) that subscribes and
then drives systemctl. Real dbus-daemon, real systemd, real subhosts; the thousand start/stop
events of the descriptor and memory check are runtime records written and removed as a
supervisor does (the service sees nothing else of a start), with their locks held.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from .box import SystemdBox
from .busnames import BUS, MANAGER, OBJECT_MANAGER, PROPERTIES, SUBHOST_IFACE
from .subhosts import Subhosts, install
from .test_bus import eventually

pytestmark = pytest.mark.system

BUS_UNIT = "overlay-boot-bus.service"
CLIENT = "/usr/local/lib/overlay-boot-test/bus_signals.py"

# Subscribes first, then acts; prints what it saw as JSON.
SCRIPT = r'''
import asyncio, fcntl, json, os, subprocess, sys
from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus

BUS = "org.overlayboot.OverlayBoot1"
MANAGER = "/org/overlayboot/OverlayBoot1"
RUN = "/run/overlay-boot"


def plain(value):
    if isinstance(value, Variant):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def usage():
    """The bus service's descriptors and memory (kB)."""
    pid = subprocess.run(["systemctl", "show", "-P", "MainPID", "overlay-boot-bus.service"],
                         capture_output=True, text=True, check=True).stdout.strip()
    with open(f"/proc/{pid}/smaps_rollup") as f:
        rollup = dict(line.split(":", 1) for line in f.read().splitlines()[1:])
    return {"pid": int(pid), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "pss": int(rollup["Pss"].split()[0]), "rss": int(rollup["Rss"].split()[0])}


async def subscribe():
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    seen = asyncio.Queue()

    def on_message(msg):
        if msg.message_type == MessageType.SIGNAL and msg.sender != "org.freedesktop.DBus":
            seen.put_nowait({"path": msg.path, "interface": msg.interface,
                             "member": msg.member, "body": plain(msg.body)})

    bus.add_message_handler(on_message)
    reply = await bus.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus", member="AddMatch", signature="s",
        body=[f"type='signal',sender='{BUS}'"]))
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    return bus, seen


async def until(seen, member, path, log):
    while True:
        event = await asyncio.wait_for(seen.get(), 60)
        log.append(event)
        if event["member"] == member and event["body"][:1] == [path]:
            return


async def systemctl(*args):
    process = await asyncio.create_subprocess_exec("systemctl", *args)
    assert await process.wait() == 0, args


async def follow(unit, path):
    """Subscribe without any call, start and stop UNIT, print every signal until its object
    is removed."""
    _bus, seen = await subscribe()
    log = []
    await systemctl("start", unit)
    await systemctl("stop", unit)
    await until(seen, "InterfacesRemoved", path, log)
    print(json.dumps(log))


def fake_start(name, content=None, symlink=None):
    """A record and its held lock, as a supervisor writes them (rename into place)."""
    lock = os.open(f"{RUN}/{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    if symlink is not None:
        os.symlink(symlink, f"{RUN}/{name}.json")
        return lock
    if content is None:
        content = json.dumps({"name": name, "config": f"/etc/overlay-boot/{name}.conf",
                              "supervisor_pid": os.getpid(), "leader_pid": os.getpid(),
                              "root": "/nonexistent", "state": "running"})
    with open(f"{RUN}/{name}.tmp", "w") as f:
        f.write(content)
    os.replace(f"{RUN}/{name}.tmp", f"{RUN}/{name}.json")
    return lock


def fake_stop(name, lock):
    for suffix in (".json", ".lock", ".tmp"):
        try:
            os.unlink(f"{RUN}/{name}{suffix}")
        except FileNotFoundError:
            pass
    os.close(lock)


async def cycle(prefix, warmup, count):
    """WARMUP then COUNT start/stop events, each awaited as InterfacesAdded and
    InterfacesRemoved; the service's descriptors and memory after each part."""
    bus, seen = await subscribe()
    await bus.call(Message(destination=BUS, path=MANAGER,
                           interface="org.freedesktop.DBus.ObjectManager",
                           member="GetManagedObjects"))  # activates the service
    result, log = {}, []
    for part, number in (("before", warmup), ("after", count)):
        for i in range(number):
            name = f"{prefix}{part[0]}{i}"
            path = f"{MANAGER}/subhost/{name}"
            lock = fake_start(name)
            try:
                await until(seen, "InterfacesAdded", path, log)
            finally:
                fake_stop(name, lock)
            await until(seen, "InterfacesRemoved", path, log)
        result[part] = usage()
    result["signals"] = len(log)
    result["members"] = sorted({e["member"] for e in log})
    print(json.dumps(result))


async def bad(prefix):
    """Records that must not be served, then a good one: only the good one appears."""
    bus, seen = await subscribe()
    reply = await bus.call(Message(destination=BUS, path=MANAGER,
                                   interface="org.freedesktop.DBus.ObjectManager",
                                   member="GetManagedObjects"))
    pid = usage()["pid"]
    good = {"name": "", "config": "/c", "supervisor_pid": 1, "leader_pid": 1, "root": "/"}
    cases = {
        "other": json.dumps({**good, "name": prefix + "x"}),   # names another subhost
        "neg": None,                                           # Leader not a uint32
        "big": json.dumps({**good, "pad": "x" * (300 * 1024)}),
        "link": None,                                          # a symlink to a good record
        "list": "[1, 2]",
        "text": '{"name": "%s", "config": "\\udc80", "supervisor_pid": 1,'
                ' "leader_pid": 1, "root": "/"}',
    }
    elsewhere = f"/tmp/{prefix}-elsewhere.json"
    with open(elsewhere, "w") as f:
        json.dump({**good, "name": prefix + "link"}, f)
    locks = {}
    try:
        for case, content in cases.items():
            name = prefix + case
            if case == "neg":
                content = json.dumps({**good, "name": name, "leader_pid": -1})
            elif case == "text":
                content = content % name
            locks[name] = fake_start(name, content, symlink=elsewhere if case == "link" else None)
        name = prefix + "good"
        locks[name] = fake_start(name)
        log = []
        await until(seen, "InterfacesAdded", f"{MANAGER}/subhost/{name}", log)
        reply = await bus.call(Message(destination=BUS, path=MANAGER,
                                       interface="org.freedesktop.DBus.ObjectManager",
                                       member="GetManagedObjects"))
        served = sorted(p for p in reply.body[0] if p.startswith(f"{MANAGER}/subhost/{prefix}"))
        print(json.dumps({"served": served, "signals": log, "same_pid": usage()["pid"] == pid}))
    finally:
        for name, lock in locks.items():
            fake_stop(name, lock)
        os.unlink(elsewhere)


async def keep(conf, name, wait):
    """Call GetManagedObjects, wait longer than the service's idle time, then start and stop
    a subhost without systemd (nothing of that starts the service): print what was seen."""
    bus, seen = await subscribe()
    await bus.call(Message(destination=BUS, path=MANAGER,
                           interface="org.freedesktop.DBus.ObjectManager",
                           member="GetManagedObjects"))
    pid = usage()["pid"]
    await asyncio.sleep(wait)
    path, log = f"{MANAGER}/subhost/{name}", []
    process = await asyncio.create_subprocess_exec("overlay-boot", "--no-systemd", conf)
    assert await process.wait() == 0
    await until(seen, "InterfacesAdded", path, log)
    process = await asyncio.create_subprocess_exec("overlay-stop", name)
    assert await process.wait() == 0
    await until(seen, "InterfacesRemoved", path, log)
    print(json.dumps({"members": [e["member"] for e in log], "same_pid": usage()["pid"] == pid}))


mode, args = sys.argv[1], sys.argv[2:]
if mode == "follow":
    asyncio.run(follow(*args))
elif mode == "keep":
    asyncio.run(keep(args[0], args[1], float(args[2])))
elif mode == "cycle":
    asyncio.run(cycle(args[0], int(args[1]), int(args[2])))
else:
    asyncio.run(bad(args[0]))
'''


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    systemd_box.write_file(CLIENT, SCRIPT)
    yield systemd_box


def path_of(name: str) -> str:
    return f"{MANAGER}/subhost/{name}"  # test names are letters and digits: no escaping


def slow_service(box: SystemdBox, name: str) -> str:
    """A START script that takes a second to start and to stop: the subhost's states
    (starting, stopping) and its service's last long enough to be seen."""
    script = box.scratch / f"{name}-slow"
    script.write_text("#!/bin/sh\nsleep 1\n")
    script.chmod(0o755)
    return str(script)


def runs(values: list[object]) -> list[object]:
    """VALUES with repeats in a row collapsed."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def test_a_subscriber_follows_a_start_and_stop_through_systemctl(box: SystemdBox,
                                                                 subhosts: Subhosts) -> None:
    """The subscriber calls nothing, and the service is not running when it subscribes:
    the unit's start brings the service up beside the subhost (the START service is slow, so
    the subhost is still starting when the service looks), and it stays while it runs."""
    name = "t" + secrets.token_hex(3)
    script = slow_service(box, name)
    name, _ = subhosts.make(f"START={script}\nCABLES= =\n", name=name)
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "stop", BUS_UNIT)
    out = box.run("/usr/bin/python3", CLIENT, "follow", subhosts.unit(name), path_of(name),
                  timeout=120).stdout
    events = [e for e in json.loads(out) if e["body"][:1] == [path_of(name)]
              or e["path"] == path_of(name)]
    added, *changes, removed = events
    assert (added["path"], added["interface"], added["member"]) \
        == (MANAGER, OBJECT_MANAGER, "InterfacesAdded")
    properties = added["body"][1][SUBHOST_IFACE]
    assert properties["Name"] == name
    assert properties["ConfigPath"] == f"/etc/overlay-boot/{name}.conf"
    assert properties["Interfaces"] == [["eth0", f"{name}0"]]
    assert properties["Leader"] > 0
    assert (removed["path"], removed["interface"], removed["member"], removed["body"]) \
        == (MANAGER, OBJECT_MANAGER, "InterfacesRemoved", [path_of(name), [SUBHOST_IFACE]])
    for change in changes:
        assert (change["path"], change["interface"], change["member"]) \
            == (path_of(name), PROPERTIES, "PropertiesChanged"), change
        interface, changed, invalidated = change["body"]
        assert interface == SUBHOST_IFACE and changed and invalidated == [], change
    states = [properties["State"]] + [c["body"][1]["State"] for c in changes
                                      if "State" in c["body"][1]]
    assert runs(states) == ["starting", "running", "stopping"], states
    services = [properties["Services"]] + [c["body"][1]["Services"] for c in changes
                                           if "Services" in c["body"][1]]
    seen = [s[0][1] for s in runs(services) if s]
    wanted = iter(seen)
    assert all(step in wanted for step in ("starting", "started", "stopping")), seen
    assert all(s == [] or s[0][0] == script for s in services), services


def test_busctl_monitor_shows_the_signals(box: SystemdBox, subhosts: Subhosts) -> None:
    """What an admin runs: `busctl monitor org.overlayboot.OverlayBoot1`, a start and a stop."""
    name = "t" + secrets.token_hex(3)
    script = slow_service(box, name)
    name, _ = subhosts.make(f"START={script}\nCABLES= =\n", name=name)
    box.run("systemctl", "daemon-reload")
    out = box.scratch / f"{name}-monitor.json"
    err = box.scratch / f"{name}-monitor.err"
    # busctl says it monitors once the bus made it a monitor; it is ended by its PID.
    shell = f'''
        busctl monitor --json=short {BUS} >{out} 2>{err} & monitor=$!
        trap 'kill $monitor 2>/dev/null; wait $monitor || true' EXIT
        i=0; until grep -q "Monitoring bus message stream" {err}; do
            i=$((i + 1)); [ $i -lt 600 ] || exit 3; sleep 0.05; done
        systemctl start {subhosts.unit(name)}
        systemctl stop {subhosts.unit(name)}
        i=0; until grep -q InterfacesRemoved {out}; do
            i=$((i + 1)); [ $i -lt 600 ] || exit 4; sleep 0.05; done
    '''
    box.run("sh", "-ec", shell, timeout=120)
    messages = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    signals = [m for m in messages if m.get("type") == "signal"
               and (m.get("path") == path_of(name)
                    or m.get("payload", {}).get("data", [None])[0] == path_of(name))]
    members = [m["member"] for m in signals]
    print("\n".join(line for line in out.read_text().splitlines()
                    if "PropertiesChanged" in line)[:2000])  # an example, shown with -rP
    assert members[0] == "InterfacesAdded" and members[-1] == "InterfacesRemoved", members
    assert set(members[1:-1]) == {"PropertiesChanged"}, members
    assert signals[0]["path"] == MANAGER and signals[0]["interface"] == OBJECT_MANAGER
    assert signals[0]["payload"]["type"] == "oa{sa{sv}}"
    added = signals[0]["payload"]["data"][1][SUBHOST_IFACE]
    assert added["Name"] == {"type": "s", "data": name}
    assert signals[-1]["payload"] == {"type": "oas",
                                      "data": [path_of(name), [SUBHOST_IFACE]]}
    states = [m["payload"]["data"][1]["State"]["data"] for m in signals[1:-1]
              if "State" in m["payload"]["data"][1]]
    assert "stopping" in states, states


def test_descriptors_and_memory_flat_across_a_thousand_starts_and_stops(
        box: SystemdBox) -> None:
    prefix = "t" + secrets.token_hex(3)
    out = box.run("/usr/bin/python3", CLIENT, "cycle", prefix, "50", "1000",
                  timeout=600).stdout
    result = json.loads(out)
    print(f"bus service after 50 events: {result['before']}, after 1000 more: "
          f"{result['after']}")  # shown with pytest -rP
    before, after = result["before"], result["after"]
    assert before["pid"] == after["pid"]  # one service throughout, never restarted
    assert result["signals"] == 2 * 1050, result["signals"]  # one Added, one Removed each
    assert result["members"] == ["InterfacesAdded", "InterfacesRemoved"]
    assert after["fds"] <= before["fds"] + 2, (before, after)
    assert after["rss"] <= before["rss"] + 4 * 1024, (before, after)  # kB: flat
    assert after["pss"] <= before["pss"] + 4 * 1024, (before, after)
    left = box.run("sh", "-c", f"ls /run/overlay-boot | grep '^{prefix}' || true").stdout
    assert left == ""


def test_records_that_do_not_fit_are_not_served(box: SystemdBox) -> None:
    """A record naming another subhost, with values D-Bus can't carry, too long, a symlink or
    not an object: no object, no signal, and the service goes on serving the good ones."""
    prefix = "t" + secrets.token_hex(3)
    result = json.loads(box.run("/usr/bin/python3", CLIENT, "bad", prefix).stdout)
    assert result["served"] == [path_of(prefix + "good")], result
    assert [e["member"] for e in result["signals"]] == ["InterfacesAdded"], result
    assert result["same_pid"]
    warnings = box.journal(BUS_UNIT, "not served")
    assert f"runtime record of '{prefix}neg' not served: Leader" in warnings, warnings
    assert f"runtime record of '{prefix}text' not served: ConfigPath" in warnings, warnings


def test_non_root_may_list_the_objects(box: SystemdBox, subhosts: Subhosts) -> None:
    name, _ = subhosts.make("START=none\nCABLES= =\n")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name), timeout=60)
    out = box.run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "busctl",
                  "--json=short", "call", BUS, MANAGER, OBJECT_MANAGER,
                  "GetManagedObjects").stdout
    objects = json.loads(out)["data"][0]
    assert objects[path_of(name)][SUBHOST_IFACE]["State"] == {"type": "s", "data": "running"}
    introspection = box.run("busctl", "introspect", BUS, MANAGER).stdout
    for member in (".GetManagedObjects", ".InterfacesAdded", ".InterfacesRemoved"):
        assert any(line.startswith(member) for line in introspection.splitlines()), member


def test_a_follower_keeps_the_service_without_systemd_starting_it(box: SystemdBox,
                                                                   subhosts: Subhosts) -> None:
    """A subhost started without its unit does not pull the service in: a client that called
    GetManagedObjects keeps it (idle time 1 s here) while connected, and only so long."""
    dropin = "/run/systemd/system/overlay-boot-bus.service.d/idle.conf"
    box.write_file(dropin, "[Service]\nEnvironment=OVERLAY_BOOT_BUS_IDLE=1\n")
    try:
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "stop", BUS_UNIT)
        name, conf = subhosts.make("START=none\nCABLES= =\n")
        result = json.loads(box.run("/usr/bin/python3", CLIENT, "keep", conf, name, "4",
                                    timeout=120).stdout)
        assert result["same_pid"], result
        assert result["members"][0] == "InterfacesAdded", result
        assert result["members"][-1] == "InterfacesRemoved", result
        eventually(lambda: box.run("systemctl", "is-active", BUS_UNIT,
                                   check=False).stdout.strip() == "inactive")
        assert box.run("systemctl", "show", "-P", "Result", BUS_UNIT).stdout.strip() \
            == "success"
    finally:
        box.run("rm", "-rf", dropin.rsplit("/", 1)[0])
        box.run("systemctl", "daemon-reload")
