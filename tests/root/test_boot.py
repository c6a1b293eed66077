"""PID 1's start on the real kernel: linux/boot.py + linux/mounts.py + linux/libc.py.

Each test forks a real subhost PID 1 with ``spawn_subhost``; its ``run_init`` is ``probe``,
which looks around inside (after pivot_root) and reports what it saw as one ``RESULT <json>``
line on the status pipe. ``probe`` runs in the already loaded interpreter in a root that may
hold nothing but what the mount plan made, so it imports nothing.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import select
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from overlay_boot import record
from overlay_boot.config import Cable, Config, Share
from overlay_boot.linux import boot, libc

pytestmark = pytest.mark.root

json.dumps({"warm": [1]})  # nothing may be imported lazily after pivot_root


# --- host side helpers ----------------------------------------------------------------------

def host_mounts() -> set[tuple[str, str]]:
    """(mount point, fstype) of every mount the test process sees."""
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, tail = line.partition(" - ")
            found.add((fields.split()[4], tail.split()[0]))
    return found


def mounts_under(path: Path) -> set[tuple[str, str]]:
    return {m for m in host_mounts() if m[0] == str(path) or m[0].startswith(f"{path}/")}


@dataclass
class Scratch:
    base: Path
    marker: Path  # a tmpfs mounted on the host, holding a file "host-secret"
    name: str
    netns: Path


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    """BASE on a fresh tmpfs, a host-only tmpfs marker, and a netns (``ip netns add``)."""
    name = "t" + secrets.token_hex(3)
    base = Path(tempfile.mkdtemp(prefix=f"{name}-base-"))
    marker = Path(tempfile.mkdtemp(prefix=f"{name}-marker-"))
    mounted: list[Path] = []
    netns_made = False
    try:
        for where in (base, marker):
            libc.mount("tmpfs", where, "tmpfs", 0, "mode=755")
            mounted.append(where)
            # Shared, as on a systemd host: a mount PID 1 makes must still not reach the host.
            libc.mount(None, where, None, libc.MS_SHARED)
        (marker / "host-secret").write_text("host only\n")
        subprocess.run(["ip", "netns", "add", name], check=True)
        netns_made = True
        yield Scratch(base, marker, name, Path("/run/netns") / name)
    finally:
        if netns_made:
            subprocess.run(["ip", "netns", "del", name], check=False)
        for where in reversed(mounted):
            libc.umount2(where, libc.MNT_DETACH)
        for where in (base, marker):
            os.rmdir(where)


def make_config(s: Scratch, variant: str, **overrides) -> Config:
    base = s.base
    conf = base / f"{s.name}.conf"
    conf.write_text("BASE=.\n")
    if variant == "overlay":
        paths = {"live": base / "live", "upper": base / "root", "work": base / "work",
                 "lower": (Path("/"),)}
    elif variant == "bind":
        tree = base / "tree"
        paths = {"live": base / "live", "upper": tree, "work": base / "work", "lower": (tree,)}
    else:
        tree = base / "tree"
        paths = {"live": tree, "upper": tree, "work": base / "work", "lower": (tree,)}
    for key in ("live", "upper", "work"):
        paths[key].mkdir(exist_ok=True)
    config = Config(
        path=conf, name=s.name, base=base, cables=(Cable(0, f"{s.name}0", "eth0", None, None),),
        ram_size="7M", **paths,
    )
    assert config.variant == variant
    return record.replace(config, **overrides)


@dataclass
class Run:
    pid: int
    lines: list[str]
    status: int | None
    host_mounts_while_running: set[tuple[str, str]]

    @property
    def result(self) -> dict:
        found = [json.loads(line[7:]) for line in self.lines if line.startswith("RESULT ")]
        assert found, self.lines
        return found[0]


def run_subhost(config: Config, s: Scratch, init, *, hooks_env=None, journal=None,
                timeout: float = 30) -> Run:
    """Start PID 1, read its status lines to EOF, reap it. While it runs (after its RESULT
    line) PID 1 waits on a pipe, so the host's mounts can be looked at meanwhile."""
    status_r, status_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = None
    lines: list[str] = []
    seen_while: set[tuple[str, str]] = set()
    try:
        pid = boot.spawn_subhost(
            config, s.netns, status_w, lambda fd, relay: init(fd, go_r, relay), hooks_env or {},
            journal_socket=journal, keep_fds=(go_r,),
        )
        os.close(status_w)
        status_w = -1
        deadline = time.monotonic() + timeout
        buffer = b""
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"PID 1 did not finish: {lines} {buffer!r}"
            if not select.select([status_r], [], [], left)[0]:
                continue
            chunk = os.read(status_r, 65536)
            if not chunk:
                break
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            for raw in done:
                lines.append(raw.decode())
                if raw.startswith(b"RESULT "):
                    seen_while = mounts_under(s.base)
                    os.close(go_w)
                    go_w = -1
        _, status = os.waitpid(pid, 0)
        pid_done = pid
        pid = None
        return Run(pid_done, lines, status, seen_while)
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in (status_r, status_w, go_r, go_w):
            if fd >= 0:
                os.close(fd)


# --- what PID 1 looks at inside ---------------------------------------------------------------

def _try(func):
    try:
        return func()
    except OSError as exc:
        return f"error {errno.errorcode.get(exc.errno, exc.errno)}"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _dev_facts() -> dict:
    facts: dict = {}
    for name in ("null", "zero", "full", "random", "urandom", "tty", "console"):
        st = os.stat(f"/dev/{name}")
        facts[name] = [stat.S_IMODE(st.st_mode), stat.S_ISCHR(st.st_mode),
                       os.major(st.st_rdev), os.minor(st.st_rdev), st.st_gid]
    facts["links"] = {n: _try(lambda n=n: os.readlink(f"/dev/{n}"))
                      for n in ("ptmx", "fd", "stdin", "stdout", "stderr", "log")}
    with open("/dev/null", "wb") as f:
        facts["null_write"] = f.write(b"x" * 100)
    with open("/dev/zero", "rb") as f:
        facts["zero_read"] = f.read(4) == b"\0" * 4
    with open("/dev/urandom", "rb") as f:
        facts["urandom_len"] = len(f.read(16))

    def write_full():
        fd = os.open("/dev/full", os.O_WRONLY)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    facts["full_write"] = _try(write_full)
    master, slave = os.openpty()
    facts["pty_name"] = os.ttyname(slave)
    facts["pts"] = sorted(os.listdir("/dev/pts"))
    os.close(master)
    os.close(slave)
    facts["shm_mode"] = stat.S_IMODE(os.stat("/dev/shm").st_mode)
    return facts


def probe(marker: Path, host_pid: int):
    """Build a run_init that reports what it sees, then waits for the test's go-ahead."""
    def run_init(status_fd: int, go_fd: int, relay=None):
        facts: dict = {}
        try:
            facts["pid"] = os.getpid()
            facts["hostname"] = socket.gethostname()
            facts["proc_self"] = os.readlink("/proc/self")
            facts["proc1_stat"] = _read("/proc/1/stat").split()[0]
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
            facts["host_pid_visible"] = host_pid in pids and host_pid != 1
            facts["pids"] = sorted(pids)
            facts["mounts"] = [[line.split()[4], line.partition(" - ")[2].split()[0]]
                               for line in _read("/proc/self/mountinfo").splitlines()]
            root, proc1_root = os.stat("/"), os.stat("/proc/1/root/")
            facts["proc1_root_is_root"] = (root.st_dev, root.st_ino) == (
                proc1_root.st_dev, proc1_root.st_ino)
            facts["proc1_root_link"] = os.readlink("/proc/1/root")
            facts["proc1_root_listing"] = sorted(os.listdir("/proc/1/root/"))
            facts["marker"] = _try(lambda: sorted(os.listdir(marker)))
            facts["dev"] = _dev_facts()
            facts["net"] = sorted(os.listdir("/sys/class/net"))
            run = os.statvfs("/run")
            facts["run_bytes"] = run.f_blocks * run.f_frsize
            facts["run_lock_mode"] = _try(lambda: stat.S_IMODE(os.stat("/run/lock").st_mode))
            facts["interfaces"] = _try(lambda: _read("/etc/network/interfaces"))
            facts["shared_dir"] = _try(lambda: sorted(os.listdir("/srv/shared")))
            facts["shared_file"] = _try(lambda: _read("/etc/shared.conf"))
            _try(lambda: Path("/srv/shared/from-inside").write_text("hi from inside\n"))

            def log_to_dev_log():
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.connect("/dev/log")
                    sock.send(b"<13>probe: hello journal")
                if relay is not None:  # what PID 1's loop does when /dev/log is readable
                    relay.pump()
                return "sent"
            facts["dev_log_send"] = _try(log_to_dev_log)
        except BaseException as exc:  # report, don't hang the test
            facts["exception"] = repr(exc)
        os.write(status_fd, ("RESULT " + json.dumps(facts) + "\n").encode())
        os.read(go_fd, 1)  # the test looks at the host's mounts meanwhile
        os._exit(0)
    return run_init


def sleeper(status_fd: int, _relay: object = None):
    os.write(status_fd, b"UP\n")
    while True:
        signal.pause()


# --- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["overlay", "bind", "premounted"])
def test_variants_inside_view(scratch: Scratch, variant: str) -> None:
    before = host_mounts()
    share_dir = scratch.base / "share-dir"
    share_dir.mkdir()
    (share_dir / "from-host").write_text("x")
    share_file = scratch.base / "share-file"
    share_file.write_text("shared file\n")
    journal = scratch.base / "journal.sock"
    config = make_config(scratch, variant, shares=(
        Share(share_dir, Path("/srv/shared")), Share(share_file, Path("/etc/shared.conf"))))
    upper = config.upper
    (upper / "only-in-subhost").write_text("mine\n")

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal_sock:
        journal_sock.bind(str(journal))
        run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()), journal=journal)
        journal_sock.settimeout(5)
        journal_msg = journal_sock.recv(4096)

    facts = run.result
    assert "exception" not in facts, facts
    assert run.status == 0, run.lines
    assert facts["pid"] == 1 and facts["proc_self"] == "1" and facts["proc1_stat"] == "1"
    assert facts["hostname"] == scratch.name
    assert not facts["host_pid_visible"]
    assert max(facts["pids"]) < 50, facts["pids"]
    # the root: pivot_root'ed, the host's root and other mounts are gone
    assert facts["proc1_root_is_root"] and facts["proc1_root_link"] == "/"
    assert "only-in-subhost" in facts["proc1_root_listing"]
    assert facts["marker"] in ([], "error ENOENT"), facts["marker"]  # host tmpfs not there
    points = {p: t for p, t in facts["mounts"]}
    assert points["/"] == ("overlay" if variant == "overlay" else "tmpfs")
    assert {t for _, t in facts["mounts"]} <= {"overlay", "tmpfs", "devpts", "proc", "sysfs"}
    assert points["/dev"] == "tmpfs" and points["/dev/pts"] == "devpts"
    assert points["/dev/shm"] == "tmpfs" and points["/proc"] == "proc"
    assert points["/sys"] == "sysfs" and points["/run"] == "tmpfs"
    assert str(scratch.marker) not in points
    # /dev
    dev = facts["dev"]
    assert dev["null"] == [0o666, True, 1, 3, 0]
    assert dev["zero"] == [0o666, True, 1, 5, 0]
    assert dev["full"] == [0o666, True, 1, 7, 0]
    assert dev["random"] == [0o666, True, 1, 8, 0]
    assert dev["urandom"] == [0o666, True, 1, 9, 0]
    assert dev["tty"] == [0o666, True, 5, 0, 5]
    assert dev["console"] == [0o622, True, 5, 1, 5]
    assert dev["links"] == {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                            "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
                            "log": "/run/systemd/journal/dev-log"}
    assert dev["null_write"] == 100 and dev["zero_read"] and dev["urandom_len"] == 16
    assert dev["full_write"] == "error ENOSPC"
    assert dev["pty_name"] == "/dev/pts/0" and dev["pts"] == ["0", "ptmx"]  # a new instance
    assert dev["shm_mode"] == 0o1777
    # own netns, /run, shares, /dev/log
    assert facts["net"] == ["lo"]
    assert facts["run_bytes"] == 7 * 1024 * 1024 and facts["run_lock_mode"] == 0o1777
    assert facts["shared_dir"] == ["from-host"]
    assert (share_dir / "from-inside").read_text() == "hi from inside\n"
    assert facts["shared_file"] == "shared file\n"
    assert facts["dev_log_send"] == "sent" and journal_msg == b"<13>probe: hello journal"
    # the generated interfaces file, in UPPER
    text = (upper / "etc/network/interfaces").read_text()
    assert facts["interfaces"] == text
    assert f"subhost {scratch.name}" in text and "iface eth0 inet manual" in text
    # no mount ever reached the host, none is left
    assert run.host_mounts_while_running == {(str(scratch.base), "tmpfs")}
    assert host_mounts() == before


def test_existing_interfaces_file_is_kept(scratch: Scratch) -> None:
    config = make_config(scratch, "overlay")
    (config.upper / "etc/network").mkdir(parents=True)
    (config.upper / "etc/network/interfaces").write_text("# mine\n")
    run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()))
    assert run.result["interfaces"] == "# mine\n"


def test_run_none_and_missing_journal(scratch: Scratch) -> None:
    config = make_config(scratch, "overlay", ram_size=None)
    run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()),
                      journal=scratch.base / "no-such-socket")
    facts = run.result
    assert "/run" not in {p for p, _ in facts["mounts"]}
    assert facts["dev"]["links"]["log"] == "error ENOENT"


def test_hooks_arguments_environment_and_namespace(scratch: Scratch) -> None:
    hook = scratch.base / "hook.sh"
    hook.write_text(
        "#!/bin/sh\n"
        'out="$(dirname "$0")/$1.out"; shift\n'
        'printf "%s\\n" "$@" "CONFIG=$CONFIG" "PWD=$(pwd)" "HOOKVAR=$HOOKVAR" "ACTION=$ACTION" '
        '"PID=$$" > "$out"\n'
        'if [ -e "$1/proc/1" ]; then echo "proc mounted" >> "$out"; fi\n'
    )
    hook.chmod(0o755)
    config = make_config(scratch, "overlay", premount=f"{hook} pre",
                         postmount=f"{hook} post")
    run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()),
                      hooks_env={"HOOKVAR": "from-supervisor"})
    assert run.status == 0, run.lines
    pre = (scratch.base / "pre.out").read_text().splitlines()
    post = (scratch.base / "post.out").read_text().splitlines()
    # ACTION=overlay-boot as 1.6.4 exported it: site hooks modelled on its overlay-diskfile
    # only mount then (c4)
    common = [f"CONFIG={config.path}", f"PWD={scratch.base}", "HOOKVAR=from-supervisor",
              "ACTION=overlay-boot"]
    assert pre[:5] == [str(config.upper), *common]
    assert post[:6] == [str(config.live), str(config.upper), *common]
    # both ran in the subhost's PID namespace; only POSTMOUNT sees LIVE with /proc
    assert int(pre[5].removeprefix("PID=")) < 50 and int(post[6].removeprefix("PID=")) < 50
    assert "proc mounted" not in pre and post[-1] == "proc mounted"


def test_failing_premount_reports_error_and_leaves_nothing(scratch: Scratch) -> None:
    before = host_mounts()
    config = make_config(scratch, "overlay", premount="exit 3;")
    run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()))
    assert os.waitstatus_to_exitcode(run.status) == 1
    assert len(run.lines) == 1 and run.lines[0].startswith("ERROR PREMOUNT"), run.lines
    assert "exit status 3" in run.lines[0] and str(config.upper) in run.lines[0]
    assert host_mounts() == before
    assert not (config.upper / "etc").exists()  # stopped before anything was written


def test_failing_postmount_is_a_warning(scratch: Scratch, capfd) -> None:
    """c14: 1.6.4 never looked at POSTMOUNT's exit status; a hook ending in a false test
    (``[ -e x ] && y``) must not stop a subhost that used to start."""
    ran = scratch.base / "post-ran"
    config = make_config(scratch, "overlay", postmount=f"touch {ran}; [ -e /nonexistent ] &&")
    run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()))
    assert os.waitstatus_to_exitcode(run.status) == 0, run.lines
    assert ran.exists()
    assert run.result["mounts"]  # PID 1's probe ran: the subhost started
    assert not any(line.startswith("ERROR") for line in run.lines), run.lines
    err = capfd.readouterr().err
    assert "POSTMOUNT" in err and "exit status 1" in err and "going on" in err, err


def test_failing_mount_names_step_and_path(scratch: Scratch) -> None:
    before = host_mounts()
    config = make_config(scratch, "overlay", work=scratch.marker)  # WORK on another fs
    run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()))
    assert os.waitstatus_to_exitcode(run.status) == 1
    assert len(run.lines) == 1, run.lines
    line = run.lines[0]
    assert line.startswith(f"ERROR mount overlay {scratch.name} on {config.live}"), line
    assert f"workdir={scratch.marker}" in line
    assert host_mounts() == before


def test_missing_netns_is_an_error(scratch: Scratch) -> None:
    config = make_config(scratch, "overlay")
    missing = replace(scratch, netns=Path("/run/netns") / f"{scratch.name}-none")
    run = run_subhost(config, missing, probe(scratch.marker, os.getpid()))
    assert run.lines == [f"ERROR enter network namespace {missing.netns}: "
                         f"No such file or directory"] or "No such file" in run.lines[0], run.lines
    assert os.waitstatus_to_exitcode(run.status) == 1


def test_caller_stays_in_its_pid_namespace(scratch: Scratch) -> None:
    own = os.readlink("/proc/self/ns/pid")
    config = make_config(scratch, "overlay")
    run = run_subhost(config, scratch, probe(scratch.marker, os.getpid()))
    assert run.result["pid"] == 1
    assert os.readlink("/proc/self/ns/pid_for_children") == own
    child = os.fork()
    if child == 0:
        os._exit(0 if os.getppid() > 1 else 1)  # would be PID 1 (ppid 0) in a new namespace
    _, status = os.waitpid(child, 0)
    assert status == 0


def test_parent_death_kills_pid1_and_its_mounts(scratch: Scratch) -> None:
    before = host_mounts()
    config = make_config(scratch, "overlay")
    report_r, report_w = os.pipe()
    libc.set_child_subreaper(True)  # orphaned PID 1 comes back to us, to be reaped
    middle = pid1 = None
    try:
        middle = os.fork()
        if middle == 0:  # the intermediate parent: a stand-in for the supervisor
            try:
                status_r, status_w = os.pipe()
                pid = boot.spawn_subhost(config, scratch.netns, status_w, sleeper, {},
                                         journal_socket=None)
                os.close(status_w)
                up = os.read(status_r, 100)
                os.write(report_w, f"{pid} {up.decode().strip()}\n".encode())
                while True:
                    signal.pause()
            finally:
                os._exit(1)
        os.close(report_w)
        select.select([report_r], [], [], 30)
        pid_text, up = os.read(report_r, 100).decode().split()
        pid1 = int(pid_text)
        assert up == "UP"
        assert "/dev/pts" in _mounts_of(pid1)  # it did pivot into its own root
        os.kill(middle, signal.SIGKILL)
        os.waitpid(middle, 0)
        middle = None
        deadline = time.monotonic() + 10
        while True:  # PID 1 is reparented to us once the middle process is gone
            done, status = os.waitpid(pid1, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "PID 1 survived its parent"
            time.sleep(0.02)
        pid1 = None
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert host_mounts() == before
    finally:
        for pid in (middle, pid1):
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        libc.set_child_subreaper(False)
        os.close(report_r)


def _mounts_of(pid: int) -> list[str]:
    """Mount points in PID 1's mount namespace, as the host sees them through /proc/PID."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line.split()[4] for line in f]
