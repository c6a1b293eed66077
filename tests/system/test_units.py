"""overlay-boot@NAME.service in a really booted systemd, driven through systemctl/journalctl.

The project is installed into the box with `make install` (Debian's /usr/bin/python3 with
Debian's python3-pyroute2/-dbus-next/-pystemd, as a user's host has them). Subhost bases live on
the box's scratch directory (an overlay upper can't be on the box's own overlay root).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .box import SystemdBox
from .subhosts import Subhosts, install

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def box(systemd_box: SystemdBox) -> Iterator[SystemdBox]:
    install(systemd_box)
    yield systemd_box


def test_new_config_gives_a_unit(box: SystemdBox, subhosts: Subhosts) -> None:
    name, path = subhosts.make()
    box.run("systemctl", "daemon-reload")
    cat = box.run("systemctl", "cat", subhosts.unit(name)).stdout
    assert f"OVERLAY_BOOT_CONFIG={path}" in cat
    assert f"SourcePath={path}" in cat
    assert "RequiresMountsFor=" in cat


def test_start_waits_and_stop_reverses(box: SystemdBox, subhosts: Subhosts) -> None:
    record = box.scratch / f"rec-{secrets.token_hex(3)}"
    name, _ = subhosts.make(link=False)
    scripts = [subhosts.script(name, w, record) for w in ("first", "second")]
    conf = box.scratch / name / f"{name}.conf"
    # The record is written inside the subhost: share the scratch directory with it.
    conf.write_text(
        f"BASE=.\nSTART={' '.join(scripts)}\nCABLES= =\nSHARE={box.scratch}\n"
    )
    box.run("ln", "-sf", str(conf), f"/etc/overlay-boot/{name}.conf")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name), timeout=60)
    # `systemctl start` returned: both start scripts have run (the second sleeps first).
    assert record.read_text().splitlines() == ["start first", "start second"]
    assert subhosts.state(name) == "active"
    journal = box.journal(subhosts.unit(name), "second says start")
    assert "second says start" in journal
    assert any("second says start" in line and "second" in line.split(":")[0]
               for line in journal.splitlines())
    status = box.run("systemctl", "show", "-P", "StatusText", subhosts.unit(name)).stdout
    assert name in status
    box.run("systemctl", "stop", subhosts.unit(name), timeout=60)
    assert subhosts.state(name) == "inactive"
    assert record.read_text().splitlines() == [
        "start first", "start second", "stop second", "stop first"]
    assert subhosts.leftovers(name) == []


def test_escaped_name_through_systemd(box: SystemdBox, subhosts: Subhosts) -> None:
    """c2: a NAME with '.', '+' and a non-ASCII letter is the unit overlay-boot@<escaped>:
    `systemctl start` of what systemd-escape gives runs it, overlay-boot CONF starts it
    through the same unit, overlay-stop NAME stops it through systemd."""
    name, _ = subhosts.make("START=none\nCABLES==\n", name=f"t{secrets.token_hex(2)}.ü+1")
    escaped = box.run("systemd-escape", "--template=overlay-boot@.service", name).stdout.strip()
    assert escaped == subhosts.unit(name) and "\\x2b" in escaped and "\\xc3\\xbc" in escaped
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", escaped, timeout=60)
    assert subhosts.state(name) == "active"
    assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
    assert box.run("ls", f"/run/netns/{name}", f"/sys/class/net/{name}0").returncode == 0
    box.run("overlay-stop", name, timeout=60)
    assert subhosts.state(name) == "inactive"
    assert subhosts.leftovers(name) == []

    # A config the generator does not know: overlay-boot CONF names it in a runtime drop-in.
    other, conf = subhosts.make("START=none\n", name=f"t{secrets.token_hex(2)}@x.y",
                                link=False)
    box.run("overlay-boot", conf, timeout=60)
    assert subhosts.state(other) == "active"
    dropins = box.run("systemctl", "show", "-P", "DropInPaths", subhosts.unit(other)).stdout
    assert "60-overlay-boot-command-line.conf" in dropins
    # The template's ExecStopPost= stays: it removes that drop-in at the end.
    assert "overlay-stop" in box.run("systemctl", "show", "-P", "ExecStopPost",
                                     subhosts.unit(other)).stdout
    box.run("systemctl", "stop", subhosts.unit(other), timeout=60)
    assert subhosts.state(other) == "inactive"
    assert subhosts.leftovers(other) == []


def test_template_linked_twice_gives_two_subhosts(box: SystemdBox, subhosts: Subhosts) -> None:
    """c1: one template config with BASE=., linked into /etc/overlay-boot (the link is
    followed: BASE is the template's directory) and from another subhost directory (BASE is
    that directory, as in 1.6.4): two subhosts, each on its own BASE, started side by side."""
    tag = secrets.token_hex(2)
    tmpl = box.scratch / f"tmpl-{tag}"
    sub = box.scratch / f"sub-{tag}"
    for base in (tmpl, sub):
        for d in ("live", "root", "work"):
            (base / d).mkdir(parents=True)
        base.chmod(0o755)
    (tmpl / "tmpl.conf").write_text("BASE=.\nSTART=none\n")
    (tmpl / "tmpl.conf").chmod(0o644)
    first, second = f"ta{tag}", f"tb{tag}"
    subhosts.names += [first, second]
    box.run("ln", "-sf", str(tmpl / "tmpl.conf"), f"/etc/overlay-boot/{first}.conf")
    (sub / f"{second}.conf").symlink_to(tmpl / "tmpl.conf")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(first), timeout=60)
    box.run("overlay-boot", str(sub / f"{second}.conf"), timeout=60)
    assert (subhosts.state(first), subhosts.state(second)) == ("active", "active")
    for name, base in ((first, tmpl), (second, sub)):
        record = json.loads(box.run("cat", f"/run/overlay-boot/{name}.json").stdout)
        assert record["root"] == str(base / "live"), record
        assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
    for name in (first, second):
        box.run("overlay-stop", name, timeout=60)
        assert subhosts.leftovers(name) == []


def test_dev_log_reaches_the_journal(box: SystemdBox, subhosts: Subhosts) -> None:
    name, _ = subhosts.make()
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name))
    marker = f"syslog-from-inside-{secrets.token_hex(3)}"
    # The sender stays alive a moment: journald finds a message's unit from the sender's
    # cgroup, which it can't read once the process is gone (long-lived daemons are fine).
    box.run("overlay-go", name, "--", "python3", "-c",
            f"import syslog, time; syslog.syslog('{marker}'); time.sleep(1)")
    assert marker in box.journal(subhosts.unit(name), marker)


def test_every_line_from_short_lived_loggers_reaches_the_unit(box: SystemdBox,
                                                              subhosts: Subhosts) -> None:
    """1000 `logger` processes, each gone at once: every line is under the unit (journald
    attributes by the sender's cgroup, looked up after the sender may have exited: PID 1
    relays /dev/log, so the sender is alive)."""
    name, _ = subhosts.make()
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name))
    tag = f"burst{secrets.token_hex(3)}"
    box.run("overlay-go", name, "--", "sh", "-c",
            f"for i in $(seq 1000); do logger -i -t {tag} line-$i; done", timeout=120)
    deadline = time.monotonic() + 20
    while True:
        lines = box.run("journalctl", "-q", "-u", subhosts.unit(name), "-t", tag,
                        "-o", "cat").stdout.split()
        if len(lines) >= 1000 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(lines) == sorted(f"line-{i}" for i in range(1, 1001))
    fields = json.loads(box.run("journalctl", "-q", "-u", subhosts.unit(name), "-t", tag,
                                "-o", "json", "-n", "1").stdout)
    assert fields["SYSLOG_IDENTIFIER"] == tag and fields["SYSLOG_PID"] != fields["_PID"]


def test_a_syslog_daemon_inside_can_take_dev_log_over(box: SystemdBox, subhosts: Subhosts) -> None:
    """/dev/log is a symlink to the bound journal socket: a daemon (rsyslog) may replace it."""
    name, _ = subhosts.make()
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name))
    assert box.run("overlay-go", name, "--", "readlink", "/dev/log").stdout.strip() \
        == "/run/systemd/journal/dev-log"
    takeover = box.run(
        "overlay-go", name, "--", "python3", "-c",
        "import os, socket\n"
        "os.unlink('/dev/log')\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.bind('/dev/log')\n"
        "c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "c.sendto(b'<13>hello', '/dev/log')\n"
        "print(s.recv(100).decode())\n",
        check=False,
    )
    assert takeover.returncode == 0, takeover.stderr
    assert takeover.stdout.strip() == "<13>hello"


def test_overlay_go_runs_inside(box: SystemdBox, subhosts: Subhosts) -> None:
    name, _ = subhosts.make()
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", subhosts.unit(name))
    assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
    result = box.run("overlay-go", name, "--", "sh", "-c", "exit 7", check=False)
    assert result.returncode == 7


def test_kill_9_of_the_supervisor(box: SystemdBox, subhosts: Subhosts) -> None:
    name, _ = subhosts.make("START=none\nCABLES= =\n")
    box.run("systemctl", "daemon-reload")
    unit = subhosts.unit(name)
    box.run("systemctl", "start", unit)
    main_pid = box.run("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
    box.run("kill", "-9", main_pid)
    deadline = time.monotonic() + 20
    while subhosts.state(name) not in ("failed", "inactive") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subhosts.state(name) == "failed"
    assert subhosts.leftovers(name) == []
    box.run("systemctl", "reset-failed", unit)
    box.run("systemctl", "start", unit)
    assert subhosts.state(name) == "active"


def test_machined_registration_with_the_start(box: SystemdBox, subhosts: Subhosts) -> None:
    """machined is asked to register the subhost as soon as its PID 1 exists, while PID 1
    builds the tree: a start that fails after that leaves no machine behind, and a good start
    has PID 1 registered as the leader by the time `systemctl start` returns."""
    name, _ = subhosts.make("START=none\nCABLES= =\nPREMOUNT=false\n")
    box.run("systemctl", "daemon-reload")
    unit = subhosts.unit(name)
    assert box.run("systemctl", "start", unit, check=False).returncode != 0
    assert "PREMOUNT" in box.journal(unit, "PREMOUNT")
    box.run("systemctl", "reset-failed", unit)
    assert subhosts.leftovers(name) == []
    (box.scratch / name / f"{name}.conf").write_text("BASE=.\nSTART=none\nCABLES= =\n")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", unit)
    record = json.loads(box.run("cat", f"/run/overlay-boot/{name}.json").stdout)
    status = box.run("machinectl", "status", name, check=False).stdout
    assert f"Leader: {record['leader_pid']}" in status, status
    box.run("systemctl", "stop", unit)
    assert subhosts.leftovers(name) == []


def test_bad_config_is_reported_and_refused(box: SystemdBox, subhosts: Subhosts) -> None:
    name, _ = subhosts.make("START=none\nCABLES=nope\n")
    box.run("systemctl", "daemon-reload")
    unit = subhosts.unit(name)
    # Skipped by the generator: no drop-in naming the config. (Under systemd the generator
    # reports to /dev/kmsg, which this box has not got; its dry run shows the same report.)
    cat = box.run("systemctl", "cat", unit, check=False).stdout
    assert "OVERLAY_BOOT_CONFIG" not in cat
    dry = box.run("/usr/local/lib/systemd/system-generators/overlay-boot-generator",
                  "--dry-run", check=False)
    assert dry.returncode != 0
    assert f"{name}.conf" in dry.stderr and "CABLES" in dry.stderr, dry.stderr
    started = box.run("systemctl", "start", unit, check=False)
    assert started.returncode != 0
    status = box.run("systemctl", "status", "--no-pager", "-l", unit, check=False).stdout
    assert "CABLES" in status, status
    result = box.run("systemctl", "show", "-P", "ExecMainStatus", unit).stdout.strip()
    assert result == "78"
    verify = box.run("overlay-boot", "--verify", f"/etc/overlay-boot/{name}.conf", check=False)
    assert verify.returncode == 78
    box.run("rm", f"/etc/overlay-boot/{name}.conf")
    box.run("systemctl", "reset-failed", unit)


def test_command_line_acts_through_systemd(box: SystemdBox, subhosts: Subhosts) -> None:
    """`overlay-boot CONF` for a config the generator doesn't know: a transient unit."""
    name, path = subhosts.make(link=False)
    box.run("overlay-boot", path)
    assert subhosts.state(name) == "active"
    assert box.run("overlay-go", name, "--", "hostname").stdout.strip() == name
    box.run("overlay-stop", path)
    assert subhosts.state(name) in ("inactive", "unknown")


def test_ten_in_parallel(box: SystemdBox, subhosts: Subhosts) -> None:
    names = [subhosts.make("START=none\nCABLES= =\n")[0] for _ in range(10)]
    box.run("systemctl", "daemon-reload")
    units = [subhosts.unit(n) for n in names]
    box.run("systemctl", "start", *units, timeout=120)
    assert [subhosts.state(n) for n in names] == ["active"] * 10
    box.run("systemctl", "stop", *units, timeout=120)
    for n in names:
        assert subhosts.state(n) == "inactive"
        assert subhosts.leftovers(n) == []


def minimal_lower(dest: Path, programs: tuple[str, ...]) -> None:
    """A root with PROGRAMS and the libraries they load, copied from this host (usr-merged):
    the box's own root is an overlay, which cannot be a USERNS= layer."""
    for top in ("bin", "sbin", "lib", "lib64"):
        (dest / "usr" / top).mkdir(parents=True, exist_ok=True)
        (dest / top).symlink_to(f"usr/{top}")
    files = set(programs)
    for program in programs:
        ldd = subprocess.run(["ldd", program], capture_output=True, text=True, check=True)
        files.update(word for line in ldd.stdout.splitlines() for word in line.split()
                     if word.startswith("/"))
    for path in files:
        target = dest / "usr" / os.path.relpath(path, "/usr" if path.startswith("/usr/")
                                                else "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), target)
    (dest / "etc").mkdir()
    (dest / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc/group").write_text("root:x:0:\n")
    (dest / "root").mkdir(mode=0o700)


def test_userns_subhost_under_the_unchanged_unit(box: SystemdBox, subhosts: Subhosts) -> None:
    """USERNS=: the unit as it is starts it in its user namespace, with its cable (made by the
    supervisor into the network namespace the user namespace owns); stop is clean."""
    ids = 65536 * (16 + secrets.randbelow(60000))
    lower = box.scratch / f"lower-{secrets.token_hex(3)}"
    minimal_lower(lower, ("/bin/sh", "/bin/cat", "/bin/hostname", "/sbin/ip"))
    name, _ = subhosts.make(f"START=none\nCABLES= =\nUSERNS={ids}\nLOWER={lower}\n")
    (box.scratch / name).chmod(0o700)
    # The box's own root is an overlay: as LOWER (the default) it is refused before the start.
    refused, _ = subhosts.make(f"START=none\nUSERNS={ids + 65536}\n")
    (box.scratch / refused).chmod(0o700)
    box.run("systemctl", "daemon-reload")
    assert box.run("systemctl", "start", subhosts.unit(refused), check=False).returncode != 0
    assert "LOWER / is on an overlay, which cannot be idmapped (USERNS=)" in box.journal(
        subhosts.unit(refused), "cannot be idmapped")
    assert subhosts.leftovers(refused) == []
    unit = subhosts.unit(name)
    started = box.run("systemctl", "start", unit, check=False)
    assert started.returncode == 0, box.journal(unit)
    assert subhosts.state(name) == "active"
    inside = box.run("overlay-go", name, "--", "sh", "-c",
                     "cat /proc/self/uid_map; ip link set eth0 up && echo eth0-up; hostname")
    assert inside.stdout.split() == ["0", str(ids), "65536", "eth0-up", name], inside
    record = json.loads(box.run("cat", f"/run/overlay-boot/{name}.json").stdout)
    assert record["userns"] == f"{ids}:65536"
    deadline = time.monotonic() + 10  # registered with systemd-machined in the background
    while name not in box.run("machinectl", "list", "--no-legend").stdout \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"Leader: {record['leader_pid']}" in box.run("machinectl", "status", name).stdout
    # PID 1 cannot remove the netns bind and runtime files here: the unit's ExecStopPost= does.
    assert "overlay-stop" in box.run("systemctl", "show", "-P", "ExecStopPost", unit).stdout
    box.run("systemctl", "stop", unit)
    assert subhosts.state(name) == "inactive"
    assert subhosts.leftovers(name) == []


def test_enabled_and_listed_subhosts_start_at_boot(new_box: SystemdBox) -> None:
    new_box.boot()
    new_box.run("make", "-s", "-C", str(REPO), "install", timeout=180)
    made = Subhosts(new_box)
    enabled, _ = made.make()
    listed, listed_path = made.make(link=False)
    new_box.write_file("/etc/subhosts.conf", f"# boot list\n{listed_path}\n")
    new_box.run("systemctl", "daemon-reload")
    new_box.run("systemctl", "enable", made.unit(enabled))
    new_box.poweroff()
    new_box.boot()
    for name in (enabled, listed):
        deadline = time.monotonic() + 20
        while made.state(name) != "active" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert made.state(name) == "active", new_box.journal(made.unit(name))
    record = json.loads(new_box.run("cat", f"/run/overlay-boot/{listed}.json").stdout)
    assert record["name"] == listed
    new_box.run("systemctl", "stop", made.unit(enabled), made.unit(listed))
    for name in (enabled, listed):
        assert made.leftovers(name) == []


def test_command_line_runs_bang_values_once(box: SystemdBox, subhosts: Subhosts) -> None:
    """`overlay-boot CONF` through systemd only parses and checks the config: its `!` values
    run once, in the unit. A `!` NAME cannot name the unit: refused, nothing run."""
    counter = box.scratch / f"count-{secrets.token_hex(3)}"
    name, path = subhosts.make(f"START=!echo ran >> {counter}; echo none\n", link=False)
    box.run("overlay-boot", path)
    assert subhosts.state(name) == "active"
    box.run("overlay-stop", path)
    assert counter.read_text() == "ran\n"
    marker = box.scratch / f"named-{secrets.token_hex(3)}"
    _, bang = subhosts.make(f"NAME=!touch {marker}; echo x\nSTART=none\n", link=False)
    refused = box.run("overlay-boot", bang, check=False)
    assert refused.returncode == 78, refused.stderr
    assert "a subhost started through systemd (unit overlay-boot@NAME) needs a literal NAME" \
        in refused.stderr
    assert not marker.exists()


def test_pid1_is_the_only_process_of_a_running_subhost(box: SystemdBox,
                                                       subhosts: Subhosts) -> None:
    """Under systemd the supervisor hands the unit over to PID 1 (MAINPID=) and exits: one
    long-lived process per subhost, named by the runtime record as the one to signal, and
    a clean stop (SIGTERM to PID 1, the START services stopped) leaves nothing behind."""
    record_file = box.scratch / f"rec-{secrets.token_hex(3)}"
    name, _ = subhosts.make(link=False)
    script = subhosts.script(name, "only", record_file)
    conf = box.scratch / name / f"{name}.conf"
    conf.write_text(f"BASE=.\nSTART={script}\nCABLES= =\nSHARE={box.scratch}\n")
    box.run("ln", "-sf", str(conf), f"/etc/overlay-boot/{name}.conf")
    box.run("systemctl", "daemon-reload")
    unit = subhosts.unit(name)
    box.run("systemctl", "start", unit, timeout=60)
    main = int(box.run("systemctl", "show", "-P", "MainPID", unit).stdout)
    record = json.loads(box.run("cat", f"/run/overlay-boot/{name}.json").stdout)
    assert record["leader_pid"] == record["supervisor_pid"] == main
    assert "/overlay_boot/linux/entry.py" in box.run("cat", f"/proc/{main}/cmdline").stdout
    cgroup = box.run("systemctl", "show", "-P", "ControlGroup", unit).stdout.strip()
    # The services' daemon runs inside PID 1's namespace; on the host side nothing else
    # lives once the supervisor (and its machined registration) have exited.
    host_pidns = box.run("readlink", "/proc/self/ns/pid").stdout.strip()
    deadline = time.monotonic() + 30
    while True:
        procs = box.run("cat", f"/sys/fs/cgroup{cgroup}/cgroup.procs").stdout.split()
        outside = [p for p in procs if int(p) != main and box.run(
            "readlink", f"/proc/{p}/ns/pid", check=False).stdout.strip() == host_pidns]
        if not outside:
            break
        assert time.monotonic() < deadline, f"still in the unit besides PID 1: {outside}"
        time.sleep(0.1)
    status = box.run("systemctl", "show", "-P", "StatusText", unit).stdout
    assert name in status
    box.run("systemctl", "stop", unit, timeout=60)
    assert subhosts.state(name) == "inactive"
    assert record_file.read_text().splitlines() == ["start only", "stop only"]
    assert subhosts.leftovers(name) == []


def test_a_clean_start_writes_one_line_of_its_own(box: SystemdBox, subhosts: Subhosts) -> None:
    """Each journal line costs journald (100 subhosts started at once, issue #13): a clean
    start says once that the subhost runs and which process is its PID 1, nothing more."""
    name, _ = subhosts.make("START=none\nCABLES= =\n")
    box.run("systemctl", "daemon-reload")
    unit = subhosts.unit(name)
    box.run("systemctl", "start", unit, timeout=60)
    main = box.run("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
    cgroup = box.run("systemctl", "show", "-P", "ControlGroup", unit).stdout.strip()
    host_pidns = box.run("readlink", "/proc/self/ns/pid").stdout.strip()
    deadline = time.monotonic() + 30
    while any(p != main and box.run("readlink", f"/proc/{p}/ns/pid", check=False).stdout.strip()
              == host_pidns for p in box.run("cat", f"/sys/fs/cgroup{cgroup}/cgroup.procs"
                                             ).stdout.split()):
        assert time.monotonic() < deadline, "the supervisor did not exit"
        time.sleep(0.05)
    box.journal(unit, "is running")
    ours = [json.loads(line).get("MESSAGE") for line in box.run(
        "journalctl", "-q", "-u", unit, "-t", "overlay-boot", "-o", "json",
        "--output-fields=MESSAGE").stdout.splitlines()]
    assert ours == [f"subhost {name} is running (PID 1 is {main}, the unit's main process "
                    "from now on)"], ours
    box.run("systemctl", "stop", unit, timeout=60)
    assert subhosts.leftovers(name) == []


def test_pid1_removes_the_netns_bind_and_runtime_files_itself(box: SystemdBox,
                                                              subhosts: Subhosts) -> None:
    """After a clean stop PID 1 has removed /run/netns/NAME (an unlink from its own mount
    namespace detaches the host's bind), the mark and the runtime files before it exits: the
    generator's drop-in empties the unit's ExecStopPost= (no process is started after a clean
    stop), and nothing is left the moment `systemctl stop` returns, nor is the cleanup unit
    (OnFailure=) started."""
    name, _ = subhosts.make("START=none\nCABLES= =\n")
    unit = subhosts.unit(name)
    box.run("systemctl", "daemon-reload")
    assert box.run("systemctl", "show", "-P", "ExecStopPost", unit).stdout.strip() == ""
    assert box.run("systemctl", "show", "-P", "OnFailure", unit).stdout.split() == \
        [f"overlay-boot-cleanup@{name}.service"]
    since = box.run("date", "+%s.%N").stdout.strip()
    box.run("systemctl", "start", unit, timeout=60)
    assert box.run("test", "-e", f"/run/netns/{name}", check=False).returncode == 0
    box.run("systemctl", "stop", unit, timeout=60)
    left = box.run("sh", "-c", f"ls -d /run/netns/{name} /run/overlay-boot/{name}.* "
                   "2>/dev/null", check=False).stdout.split()
    assert left == []
    assert name not in box.run("cat", "/proc/self/mountinfo").stdout
    assert subhosts.state(name) == "inactive"
    cleanup_log = box.run("journalctl", "--since", f"@{since}", "-u",
                          f"overlay-boot-cleanup@{name}.service", "-q", "-o", "cat",
                          check=False).stdout
    assert cleanup_log.strip() == ""
    assert subhosts.leftovers(name) == []
