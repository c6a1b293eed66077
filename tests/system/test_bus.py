"""The D-Bus control plane (overlay-boot-bus), systemd-machined and the helpers, in a booted box.

Everything goes through the box's real system bus: busctl, machinectl, and for the calls that
pass file descriptors (which this busctl can't) a small dbus-next client run by Debian's
/usr/bin/python3 inside the box.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator

import pytest

from .box import SystemdBox
from .busnames import BUS, MANAGER, MANAGER_IFACE, NOBODY, SUBHOST_IFACE
from .subhosts import Subhosts, install

pytestmark = pytest.mark.system


# Run and OpenShell pass descriptors: called with dbus-next (python3-dbus-next in the box).
CLIENT = r'''
import asyncio, json, os, sys
from dbus_next import BusType, Message, MessageType
from dbus_next.aio import MessageBus

async def main(path, member, argv):
    bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
    def call(signature, body, fds=()):
        return bus.call(Message(destination="org.overlayboot.OverlayBoot1", path=path,
                                interface="org.overlayboot.OverlayBoot1.Subhost", member=member,
                                signature=signature, body=body, unix_fds=list(fds)))
    if member == "Many":  # N short OpenShell and Run calls in turn: errors, service fds
        count, null, errors = int(argv[0]), os.open("/dev/null", os.O_RDWR), []
        for _ in range(count):
            for signature, body, fds in (("asa{ss}", [["true"], {}], ()),
                                         ("asa{ss}hhh", [["true"], {}, 0, 0, 0], [null])):
                msg = Message(destination="org.overlayboot.OverlayBoot1", path=path,
                              interface="org.overlayboot.OverlayBoot1.Subhost",
                              member="OpenShell" if len(body) == 2 else "Run",
                              signature=signature, body=body, unix_fds=list(fds))
                reply = await bus.call(msg)
                if reply.message_type == MessageType.ERROR:
                    errors.append(str(reply.body))
                for fd in reply.unix_fds:
                    os.close(fd)
        print(json.dumps({"errors": errors}))
        return
    if member == "Starve":  # many long Runs in flight, then one more call: how long it takes
        null = os.open("/dev/null", os.O_RDWR)
        member = "Run"
        longs = [asyncio.ensure_future(call("asa{ss}hhh", [["sleep", argv[1]], {}, 0, 0, 0],
                                            [null])) for _ in range(int(argv[0]))]
        await asyncio.sleep(2)
        started = asyncio.get_running_loop().time()
        reply = await call("asa{ss}hhh", [["true"], {}, 0, 0, 0], [null])
        elapsed = asyncio.get_running_loop().time() - started
        result = {"body": reply.body, "elapsed": elapsed,
                  "pending": sum(not c.done() for c in longs)}
    elif member == "Run":
        out_r, out_w = os.pipe()
        reply = await call("asa{ss}hhh", [argv, {"GREETING": "hi"}, 0, 1, 1],
                           [os.open("/dev/null", os.O_RDONLY), out_w])
        os.close(out_w)
        output = os.read(out_r, 65536).decode()
        result = {"body": reply.body, "output": output}
    else:
        reply = await call("asa{ss}", [argv, {"TERM": "dumb"}])
        result = {"body": reply.body}
        if reply.message_type != MessageType.ERROR:
            master = reply.unix_fds[reply.body[0]]
            pid = reply.body[1]
            result["cmdline"] = open(f"/proc/{pid}/cmdline").read().split("\0")[0]
            result["ns"] = os.readlink(f"/proc/{pid}/ns/pid")
            os.write(master, b"echo marker-$((6 * 7)) $(hostname); exit\n")
            out = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            result["output"] = out.decode(errors="replace")
    result["error"] = reply.error_name if reply.message_type == MessageType.ERROR else None
    print(json.dumps(result))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
'''


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    systemd_box.write_file("/usr/local/lib/overlay-boot-test/bus_client.py", CLIENT)
    yield systemd_box


def path_of(name: str) -> str:
    return f"{MANAGER}/subhost/{name}"  # test names are letters and digits: no escaping


def started(box: SystemdBox, subhosts: Subhosts, text: str = "START=none\n") -> str:
    name, _ = subhosts.make(text)
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name), timeout=60)
    return name


def prop(box: SystemdBox, name: str, prop: str) -> object:
    out = box.run("busctl", "--json=short", "get-property", BUS, path_of(name), SUBHOST_IFACE,
                  prop).stdout
    return json.loads(out)["data"]


def client(box: SystemdBox, name: str, member: str, *argv: str) -> dict:
    out = box.run("/usr/bin/python3", "/usr/local/lib/overlay-boot-test/bus_client.py",
                  path_of(name), member, *argv).stdout
    return json.loads(out)


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def recorder(box: SystemdBox, name: str) -> tuple[str, Callable[[], list[str]]]:
    """A START script that appends start/stop to a file on the scratch directory (which the
    subhost gets through SHARE); returns it and a reader of that file."""
    record = box.scratch / f"{name}-record"
    script = box.scratch / f"{name}-svc"
    script.write_text(f'#!/bin/sh\necho "$1" >> {record}\n')
    script.chmod(0o755)
    return str(script), lambda: record.read_text().split() if record.exists() else []


# -- the object -----------------------------------------------------------------------------


def test_introspect_shows_the_subhost_object(box: SystemdBox, subhosts: Subhosts) -> None:
    name = started(box, subhosts)
    out = box.run("busctl", "introspect", BUS, path_of(name)).stdout
    for member in ("Name", "State", "Leader", "RootDirectory", "ConfigPath", "Interfaces",
                   "Services", "StartTime"):
        assert any(line.startswith(f".{member} ") and " property " in line
                   for line in out.splitlines()), (member, out)
    for member, signature in (("Stop", "-"), ("Share", "ss"), ("Unshare", "s"),
                              ("OpenShell", "asa{ss}"), ("Run", "asa{ss}hhh")):
        assert any(line.split()[:3] == [f".{member}", "method", signature]
                   for line in out.splitlines()), (member, out)
    assert SUBHOST_IFACE in out
    assert MANAGER_IFACE in box.run("busctl", "introspect", BUS, MANAGER).stdout


def test_properties_are_the_subhost_s(box: SystemdBox, subhosts: Subhosts) -> None:
    name = "t" + secrets.token_hex(3)
    script, _ = recorder(box, name)
    name = started(box, subhosts, f"START={script}\nCABLES= =\nSHARE={box.scratch}\n")
    record = json.loads(box.run("cat", f"/run/overlay-boot/{name}.json").stdout)
    assert prop(box, name, "Name") == name
    assert prop(box, name, "State") == "running"
    leader = prop(box, name, "Leader")
    assert leader == record["leader_pid"]
    # the leader is PID 1 of its own PID namespace
    status = box.run("cat", f"/proc/{leader}/status").stdout
    assert [line.split()[-1] for line in status.splitlines() if line.startswith("NSpid")] == ["1"]
    assert prop(box, name, "RootDirectory") == str(box.scratch / name / "live")
    assert prop(box, name, "ConfigPath") == f"/etc/overlay-boot/{name}.conf"
    assert prop(box, name, "Interfaces") == [["eth0", f"{name}0"]]
    assert prop(box, name, "Services") == [[script, "started"]]
    start_time = prop(box, name, "StartTime")
    assert abs(start_time / 1e6 - record["started"]) < 0.001
    assert abs(start_time / 1e6 - time.time()) < 120


def test_manager_lists_and_finds_subhosts(box: SystemdBox, subhosts: Subhosts) -> None:
    name = started(box, subhosts)
    out = box.run("busctl", "--json=short", "call", BUS, MANAGER, MANAGER_IFACE,
                  "ListSubhosts").stdout
    assert [name, "running", path_of(name)] in json.loads(out)["data"][0]
    out = box.run("busctl", "--json=short", "call", BUS, MANAGER, MANAGER_IFACE, "GetSubhost",
                  "s", name).stdout
    assert json.loads(out)["data"] == [path_of(name)]
    missing = box.run("busctl", "call", BUS, MANAGER, MANAGER_IFACE, "GetSubhost", "s",
                      "tnosuch", check=False)
    assert missing.returncode != 0 and "not running" in missing.stderr


# -- who may call ---------------------------------------------------------------------------


def test_non_root_may_read_but_not_call(box: SystemdBox, subhosts: Subhosts) -> None:
    name = started(box, subhosts)
    read = box.run(*NOBODY, "busctl", "get-property", BUS, path_of(name), SUBHOST_IFACE, "Name")
    assert name in read.stdout
    for call in (("busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Stop"),
                 ("busctl", "call", BUS, MANAGER, MANAGER_IFACE, "ListSubhosts")):
        refused = box.run(*NOBODY, *call, check=False)
        assert refused.returncode != 0
        assert "Access denied" in refused.stderr, refused.stderr
    assert subhosts.state(name) == "active"


def test_the_service_checks_the_caller_itself(box: SystemdBox, subhosts: Subhosts) -> None:
    """With a policy that lets everyone call (an admin's mistake), the service still refuses."""
    name = started(box, subhosts)
    lax = "/etc/dbus-1/system.d/zz-overlay-boot-test-lax.conf"
    # Bounded: a ReloadConfig that meets the daemon's own reload can go unanswered (it once
    # hung past box.run's 60 s); the daemon reloads by itself anyway, and the loop below waits
    # for the effect.
    reload = ("busctl", "--timeout=5", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
              "org.freedesktop.DBus", "ReloadConfig")
    # Put in place by a rename: the bus daemon reloads by itself when system.d changes, and
    # must never read the file half-written (its ReloadConfig then fails).
    box.write_file(f"{lax}.new", f'<busconfig><policy context="default">'
                                 f'<allow send_destination="{BUS}"/></policy></busconfig>\n')
    box.run("mv", f"{lax}.new", lax)
    try:
        # The bus daemon also reloads by itself when system.d changes, and an explicit reload
        # that meets one of its own can fail: what counts is that the lax policy takes effect.
        box.run(*reload, check=False)
        deadline = time.monotonic() + 10
        while True:
            # dbus-send, not busctl: busctl shows any AccessDenied as just "Access denied"
            refused = box.run(*NOBODY, "dbus-send", "--system", "--print-reply",
                              f"--dest={BUS}", path_of(name), f"{SUBHOST_IFACE}.Stop",
                              check=False)
            if "caller uid" in refused.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert refused.returncode != 0
        assert "AccessDenied" in refused.stderr, refused.stderr
        assert "only root may call Stop (caller uid 65534)" in refused.stderr, refused.stderr
    finally:
        box.run("rm", "-f", lax)
        box.run(*reload, check=False)
    assert subhosts.state(name) == "active"


# -- the methods ----------------------------------------------------------------------------


def test_run_passes_descriptors_and_returns_the_status(box: SystemdBox,
                                                       subhosts: Subhosts) -> None:
    name = started(box, subhosts)
    result = client(box, name, "Run", "sh", "-c", 'echo "$GREETING from $(hostname)"; exit 3')
    assert result["error"] is None, result
    assert result["body"] == [3]
    assert result["output"] == f"hi from {name}\n"
    missing = client(box, name, "Run", "tnosuchcommand")
    assert missing["error"] == "org.overlayboot.OverlayBoot1.Error.Failed"


def test_open_shell_gives_a_terminal_inside(box: SystemdBox, subhosts: Subhosts) -> None:
    name = started(box, subhosts)
    leader = prop(box, name, "Leader")
    result = client(box, name, "OpenShell")
    assert result["error"] is None, result
    assert result["cmdline"].startswith("-")  # a login shell
    assert result["ns"] == box.run("readlink", f"/proc/{leader}/ns/pid").stdout.strip()
    assert f"marker-42 {name}" in result["output"]


def _service_fds_and_rss(box: SystemdBox) -> tuple[int, int]:
    pid = box.run("systemctl", "show", "-P", "MainPID", "overlay-boot-bus.service").stdout.strip()
    fds = len(box.run("ls", f"/proc/{pid}/fd").stdout.split())
    rss = box.run("awk", "/^VmRSS/ {print $2}", f"/proc/{pid}/status").stdout.strip()
    return fds, int(rss)


def test_a_thousand_short_open_shell_and_run_calls(box: SystemdBox,
                                                   subhosts: Subhosts) -> None:
    """A command that ends before OpenShell answers (its terminal has no session any more)
    used to fail the call with ENOTTY, about one in five."""
    name = started(box, subhosts)
    client(box, name, "Many", "50")  # warm up: the service, its thread pool, its caches
    fds_before, rss_before = _service_fds_and_rss(box)
    result = client(box, name, "Many", "1000")
    assert result["errors"] == [], result["errors"][:5]
    fds_after, rss_after = _service_fds_and_rss(box)
    assert fds_after <= fds_before + 2, (fds_before, fds_after)  # no descriptor leaks
    assert rss_after <= rss_before + 8 * 1024, (rss_before, rss_after)  # kB: flat


def test_stop_stops_the_unit(box: SystemdBox, subhosts: Subhosts) -> None:
    name = started(box, subhosts, "START=none\nCABLES= =\n")
    box.run("busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Stop")
    eventually(lambda: subhosts.state(name) == "inactive")
    assert subhosts.leftovers(name) == []
    gone = box.run("busctl", "get-property", BUS, path_of(name), SUBHOST_IFACE, "Name",
                   check=False)
    assert gone.returncode != 0


def test_overlay_stop_signals_the_supervisor_without_a_unit(box: SystemdBox,
                                                            subhosts: Subhosts) -> None:
    """No unit: overlay-stop sends SIGTERM itself (no detour through the bus service)."""
    name, path = subhosts.make()
    box.run("overlay-boot", "--no-systemd", path)
    assert subhosts.state(name) != "active"
    assert prop(box, name, "State") == "running"
    stopped = box.run("overlay-stop", name, env={"OVERLAY_BOOT_DEBUG": "1"})
    assert "SIGTERM to its supervisor" in stopped.stderr, stopped.stderr
    assert box.run("ls", f"/run/overlay-boot/{name}.json", check=False).returncode != 0
    assert subhosts.leftovers(name) == []


def test_helpers_refuse_a_subhost_that_is_not_running(box: SystemdBox) -> None:
    name = "t" + secrets.token_hex(3)
    commands = [("overlay-stop", name), ("overlay-go", name), ("overlay-go", name, "--", "true")]
    if box.run("sh", "-c", "command -v overlay-share", check=False).returncode == 0:
        commands.append(("overlay-share", "/tmp", name))
    for command in commands:
        result = box.run(*command, check=False)
        assert result.returncode != 0, command
        assert f"{name} is not running" in result.stderr, (command, result.stderr)
    result = box.run("busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Stop", check=False)
    assert result.returncode != 0 and "no running subhost" in result.stderr


def test_the_service_exits_when_idle(box: SystemdBox, subhosts: Subhosts) -> None:
    dropin = "/run/systemd/system/overlay-boot-bus.service.d/idle.conf"
    box.write_file(dropin, "[Service]\nEnvironment=OVERLAY_BOOT_BUS_IDLE=1\n")
    try:
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "stop", "overlay-boot-bus.service")
        box.run("busctl", "call", BUS, MANAGER, MANAGER_IFACE, "ListSubhosts")  # activates it
        assert box.run("systemctl", "is-active", "overlay-boot-bus.service").stdout.strip() \
            == "active"
        eventually(lambda: box.run("systemctl", "is-active", "overlay-boot-bus.service",
                                   check=False).stdout.strip() == "inactive", timeout=10)
        result = box.run("systemctl", "show", "-P", "Result", "overlay-boot-bus.service")
        assert result.stdout.strip() == "success"
        # and the next call activates it again
        box.run("busctl", "call", BUS, MANAGER, MANAGER_IFACE, "ListSubhosts")
    finally:
        box.run("rm", "-rf", dropin.rsplit("/", 1)[0])
        box.run("systemctl", "daemon-reload")


# -- systemd-machined -----------------------------------------------------------------------


def machines(box: SystemdBox) -> list[str]:
    out = box.run("machinectl", "list", "--no-legend", "--no-pager").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_machinectl_list_status_terminate(box: SystemdBox, subhosts: Subhosts) -> None:
    name = started(box, subhosts, "START=none\nCABLES= =\n")
    eventually(lambda: name in machines(box))
    box.run("overlay-go", name, "--", "sh", "-ec",
            "ip link set eth0 up; ip addr add 10.77.1.2/24 dev eth0")
    listed = box.run("machinectl", "list", "--no-pager").stdout
    line = next(line for line in listed.splitlines() if line.startswith(name))
    assert line.split()[1:3] == ["container", "overlay-boot"]
    assert "10.77.1.2" in line
    status = box.run("machinectl", "status", "--no-pager", name).stdout
    leader = prop(box, name, "Leader")
    assert f"Leader: {leader}" in status
    assert f"Root: {box.scratch / name / 'live'}" in status
    assert f"Iface: {name}0" in status
    assert "10.77.1.2" in status
    assert f"Unit: {subhosts.unit(name)}" in status
    box.run("machinectl", "terminate", name)
    eventually(lambda: subhosts.state(name) == "inactive")
    assert name not in machines(box)
    assert subhosts.leftovers(name) == []
    result = box.run("systemctl", "show", "-P", "Result", subhosts.unit(name)).stdout.strip()
    assert result == "success"


def test_machinectl_reboot_and_poweroff(box: SystemdBox, subhosts: Subhosts) -> None:
    name = "t" + secrets.token_hex(3)
    script, record = recorder(box, name)
    name = started(box, subhosts, f"START={script}\nSHARE={box.scratch}\n")
    unit = subhosts.unit(name)
    eventually(lambda: name in machines(box))
    main_pid = box.run("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
    leader = prop(box, name, "Leader")
    box.run("machinectl", "reboot", name)  # SIGINT to PID 1: services stopped and started
    eventually(lambda: record() == ["start", "stop", "start"])
    eventually(lambda: prop(box, name, "State") == "running")
    assert subhosts.state(name) == "active"
    assert box.run("systemctl", "show", "-P", "MainPID", unit).stdout.strip() == main_pid
    assert prop(box, name, "Leader") == leader
    assert name in machines(box)
    box.run("machinectl", "poweroff", name)  # SIGRTMIN+4: an orderly stop, the unit ends
    eventually(lambda: subhosts.state(name) == "inactive")
    assert record() == ["start", "stop", "start", "stop"]
    assert name not in machines(box)
    assert subhosts.leftovers(name) == []


def test_a_subhost_not_run_by_systemd_is_not_registered(box: SystemdBox,
                                                        subhosts: Subhosts) -> None:
    """machined would take over the caller's unit: only our own unit registers."""
    name, path = subhosts.make()
    box.run("overlay-boot", "--no-systemd", path)
    try:
        assert prop(box, name, "State") == "running"
        time.sleep(0.3)
        assert name not in machines(box)
    finally:
        box.run("overlay-stop", name)


def test_share_and_unshare(box: SystemdBox, subhosts: Subhosts) -> None:
    name = started(box, subhosts)
    hostdir = box.scratch / f"{name}-shared"
    hostdir.mkdir()
    (hostdir / "file").write_text("from the host\n")
    box.run("busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Share", "ss", str(hostdir),
            "/mnt/from-host")
    inside = box.run("overlay-go", name, "--", "cat", "/mnt/from-host/file").stdout
    assert inside == "from the host\n"
    # In-process, yet no thread of the long-lived service is left in the subhost's namespace
    # (the service has a mount namespace of its own: PrivateDevices=).
    pid = box.run("systemctl", "show", "-P", "MainPID", "overlay-boot-bus.service").stdout.strip()
    spaces = box.run("sh", "-c", f"readlink /proc/{pid}/task/*/ns/mnt").stdout.split()
    leader = prop(box, name, "Leader")
    assert set(spaces) == {box.run("readlink", f"/proc/{pid}/ns/mnt").stdout.strip()}, spaces
    assert box.run("readlink", f"/proc/{leader}/ns/mnt").stdout.strip() not in spaces
    # The same mount as a SHARE= line makes: nodev (a confined subhost), a slave.
    info = box.run("overlay-go", name, "--", "grep", " /mnt/from-host ",
                   "/proc/self/mountinfo").stdout.split()
    assert "nodev" in info[5].split(","), info
    assert any(tag.startswith("master:") for tag in info[6:info.index("-")]), info
    again = box.run("busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Share", "ss",
                    str(hostdir), "/mnt/from-host", check=False)
    assert again.returncode != 0 and "already" in again.stderr, again.stderr
    box.run("busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Unshare", "s", "/mnt/from-host")
    gone = box.run("overlay-go", name, "--", "cat", "/mnt/from-host/file", check=False)
    assert gone.returncode != 0
    missing = box.run("busctl", "call", BUS, path_of(name), SUBHOST_IFACE, "Share", "ss",
                      "/nonexistent", "", check=False)
    assert missing.returncode != 0 and "not a directory" in missing.stderr, missing.stderr


def test_share_and_unshare_take_absolute_paths_only(box: SystemdBox, subhosts: Subhosts) -> None:
    """Caller strings never become options of overlay-share, nor relative paths."""
    name = started(box, subhosts)

    def call(member: str, *args: str):
        return box.run("dbus-send", "--system", "--print-reply", f"--dest={BUS}", path_of(name),
                       f"{SUBHOST_IFACE}.{member}", *(f"string:{a}" for a in args), check=False)

    for args in (("--help", ""), ("--remove", "/mnt"), ("relative", ""), (str(box.scratch), "-x"),
                 (str(box.scratch), "mnt/relative")):
        result = call("Share", *args)
        assert result.returncode != 0, args
        assert "InvalidArgs" in result.stderr and "must be an absolute path" in result.stderr, \
            (args, result.stderr)
    for spelling in ("--help", "relative"):
        result = call("Unshare", spelling)
        assert result.returncode != 0 and "must be an absolute path" in result.stderr, spelling
    # overlay-boot's own mounts are no shares, however spelt.
    for spelling in ("//proc", "/var/run", "//", "/dev/"):
        result = call("Unshare", spelling)
        assert result.returncode != 0, spelling
        assert "is not a share" in result.stderr, (spelling, result.stderr)
    check = box.run("overlay-go", name, "--", "sh", "-c",
                    "test -e /proc/1/stat && test -d /run/systemd && echo intact")
    assert check.stdout == "intact\n"


def test_long_runs_do_not_starve_other_calls(box: SystemdBox, subhosts: Subhosts) -> None:
    """Twelve Run calls whose commands go on (more than the machine's default thread pool):
    another call is still answered at once."""
    name = started(box, subhosts)
    result = client(box, name, "Starve", "12", "60")
    assert result["error"] is None, result
    assert result["body"] == [0]
    # answered while the long ones were all still running (how fast: make bench)
    assert result["pending"] == 12
    sleeps = box.run("overlay-go", name, "--", "sh", "-c",
                     "grep -lx sleep /proc/[0-9]*/comm | wc -l").stdout.strip()
    assert sleeps == "12"
