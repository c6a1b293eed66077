"""A real systemd booted as PID 1 of private namespaces, for end-to-end tests (SPEC §8).

The box's root is an overlay of the host's ``/`` whose upper layer lives in ``state_dir``, so
what the box writes survives a poweroff and the next boot on the same state sees it. The box
has its own PID, mount, UTS, IPC, cgroup and network namespaces, a private ``/dev``, a
read-only sysfs of its own netns, a fresh cgroup2 hierarchy rooted in a cgroup of its own on
the host, and its own system bus. ``scratch`` is a host directory bound into the box at the
same path: overlayfs refuses an upper directory on the box's overlay root, so subhost BASE
directories of tests go there. What the host has installed locally does not show: the box's
``/usr/local`` starts empty, and local installs of the project's D-Bus policy and units in
``/etc`` are hidden, so tests never depend on the host's own installs.

Standard library only: usable from pytest fixtures and from plain scripts::

    with SystemdBox(Path("/tmp/mybox")) as box:      # boot(); destroy() on exit
        box.run("systemctl", "start", "foo.service")
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path

LAUNCHER = Path(__file__).with_name("box_launcher.py")
PYTHON = "/usr/bin/python3"
NSENTER = "/usr/bin/nsenter"
CONTAINER = "overlay-boot-test"
CGROUP_PREFIX = "obtest-box-"  # then the creator's PID: stale ones can be told apart
BOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}

# Host units the tests don't need, units that would act on the host's devices or kernel,
# and gettys (a getty hanging up the console ends the box). Templates mask every instance.
DEFAULT_MASK: tuple[str, ...] = (
    # consoles and gettys
    "console-getty.service", "container-getty@.service", "getty@.service",
    "serial-getty@.service", "autovt@.service", "getty-static.service",
    "systemd-ask-password-console.path", "systemd-ask-password-wall.path",
    # kernel filesystems and devices (ours are set up by the launcher, or not wanted)
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount",
    "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
    "systemd-binfmt.service", "kmod-static-nodes.service", "modprobe@.service",
    "systemd-modules-load.service",
    "systemd-sysctl.service", "systemd-udevd.service", "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket", "systemd-udev-trigger.service",
    "systemd-udev-settle.service", "systemd-hwdb-update.service",
    "systemd-remount-fs.service", "systemd-fsck-root.service", "systemd-pstore.service",
    "systemd-repart.service", "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service",
    "systemd-firstboot.service", "systemd-machine-id-commit.service",
    "systemd-random-seed.service", "systemd-timesyncd.service", "ldconfig.service",
    "systemd-journal-catalog-update.service",
    # the host's own services and timers
    "postgresql.service", "networking.service", "ifupdown-pre.service",
    "e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer",
    "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer", "man-db.timer",
    "systemd-tmpfiles-clean.timer",
    # installed for the subhosts' use (tests run them inside subhosts, not in the box)
    "ssh.service", "rsyslog.service", "syslog.socket",
)


# What a local install of the project on the host (`make install`, `make demo`) put there
# would shadow the box's own install or the Debian package installed in the box: the box's
# /usr/local starts as Debian's empty skeleton (base-files', plus python3.X's dist-packages),
# and these host files are whited out.
LOCAL_SKELETON = ("bin", "etc", "games", "include", "lib", "sbin", "share", "share/man", "src")
HIDDEN_HOST_FILES = ("etc/dbus-1/system.d/*overlay*", "etc/systemd/system/overlay-boot*",
                     "etc/systemd/system/*.wants/overlay-boot*")


class CommandFailed(subprocess.CalledProcessError):
    """A command in the box failed; unlike its base class, says what it printed on stderr."""

    def __str__(self) -> str:
        err = self.stderr.decode(errors="replace") if isinstance(self.stderr, bytes) \
            else (self.stderr or "")
        tail = err.strip()[-2000:]
        return super().__str__() + (f"\nstderr: {tail}" if tail else "")


class BoxError(RuntimeError):
    """The box failed to boot or to stop; the message carries the tail of its console."""


def cgroup2_root() -> Path:
    """Where the host's cgroup2 hierarchy is mounted (unified or hybrid layout)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            return Path(fields[4])
    raise BoxError("no cgroup2 hierarchy mounted on the host")


def _fstype(path: Path) -> str:
    best, fstype = "", ""
    target = str(path.resolve())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[fields.index("-") + 1]
    return fstype


def _host_mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/")
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _ns_inode(pid: int | str, ns: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{ns}").st_ino
    except OSError:
        return None


def _remove_cgroup(path: Path, timeout: float = 5.0) -> None:
    """Remove a cgroup tree bottom-up, killing what is left in it first."""
    if not path.is_dir():
        return
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1\n")
    dirs = sorted((Path(d) for d, _, _ in os.walk(path)), key=lambda p: len(p.parts),
                  reverse=True)
    deadline = time.monotonic() + timeout
    for d in dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY while dying tasks leave
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def _remove_stale_cgroups() -> None:
    """Remove box cgroups whose creator is gone (a caller killed before it cleaned up)."""
    for path in cgroup2_root().glob(f"{CGROUP_PREFIX}*"):
        creator = path.name[len(CGROUP_PREFIX):].split("-")[0]
        if creator.isdigit() and not Path(f"/proc/{creator}").exists():
            with contextlib.suppress(OSError):
                _remove_cgroup(path, timeout=1)


def _kill_group_but_leader(pgid: int) -> None:
    """SIGKILL every process of process group PGID except its leader."""
    for _ in range(20):
        members = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == pgid:
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(entry.name))
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


NETNS_COOKIE = (
    "import socket; s = socket.socket(socket.AF_UNIX);"
    "print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), 'little'))"  # SO_NETNS_COOKIE
)


def _netns_cookie(ns_path: str) -> int | None:
    """The never reused 64-bit cookie of the network namespace at NS_PATH."""
    r = subprocess.run([NSENTER, f"--net={ns_path}", PYTHON, "-c", NETNS_COOKIE],
                       capture_output=True, text=True, timeout=30)
    return int(r.stdout) if r.returncode == 0 else None


class _Footprint:
    """A booted box's namespaces, identified so that leftovers can be found after it ended.

    Namespace inode numbers are reused as soon as a namespace dies (and other boxes or
    subhosts make new ones all the time). So the PID, UTS, IPC and cgroup namespaces —
    which hold nothing of value — are pinned by descriptors (a pidfd pins the PID namespace);
    the mount namespace is recognised by its root (the box's upper directory) and the network
    namespace by its cookie, which are unique.
    """

    def __init__(self, pid: int, upper: Path) -> None:
        self.upper = str(upper)
        self.inodes = {ns: ino for ns in ("pid", "uts", "ipc", "cgroup", "mnt", "net")
                       if (ino := _ns_inode(pid, ns)) is not None}
        self.pins = [os.pidfd_open(pid)]
        self.pins += [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                      for ns in ("uts", "ipc", "cgroup")]
        self.net_cookie = _netns_cookie(f"/proc/{pid}/ns/net")
        self._finalizer = weakref.finalize(self, _close_all, list(self.pins))

    def close(self) -> None:
        self._finalizer()

    def _is_box_mnt(self, pid: str) -> bool:
        try:
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
                fields = line.split()
                if fields[4] == "/":
                    return f"upperdir={self.upper}," in fields[-1] + ","
        except OSError:
            pass
        return False

    def _is_box_net(self, ns_path: str) -> bool:
        return self.net_cookie is not None and _netns_cookie(ns_path) == self.net_cookie

    def leftovers(self) -> list[str]:
        found = []
        me = str(os.getpid())
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or entry.name == me:
                continue
            pinned = [ns for ns in ("pid", "uts", "ipc", "cgroup")
                      if _ns_inode(entry.name, ns) == self.inodes.get(ns)]
            if not pinned and _ns_inode(entry.name, "mnt") == self.inodes.get("mnt") \
                    and self._is_box_mnt(entry.name):
                pinned = ["mnt"]
            if not pinned and _ns_inode(entry.name, "net") == self.inodes.get("net") \
                    and self._is_box_net(f"/proc/{entry.name}/ns/net"):
                pinned = ["net"]
            if pinned:
                found.append(f"process {entry.name} in the box's {pinned[0]} namespace")
        # a netns kept by a bind mount (like `ip netns add`) on the host
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if fields[fields.index("-") + 1] == "nsfs" \
                    and fields[3] == f"net:[{self.inodes.get('net')}]" \
                    and self._is_box_net(fields[4]):
                found.append(f"netns bind {fields[4]}")
        return found


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class SystemdBox:
    """One box on one state directory; boot and power off as often as needed."""

    def __init__(self, state_dir: Path | str, *, mask: Iterable[str] = DEFAULT_MASK,
                 hostname: str = "obtest-box", args: Iterable[str] = ()) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.mask = tuple(mask)
        self.hostname = hostname
        self.args = tuple(args)  # extra systemd arguments (kernel command line syntax)
        self.upper = self.state_dir / "upper"
        self.work = self.state_dir / "work"
        self.root = self.state_dir / "root"
        self.scratch = self.state_dir / "scratch"
        self.console = self.state_dir / "console.log"
        self.boot_seconds: float | None = None
        self.poweroff_seconds: float | None = None
        self.state: str | None = None  # "running" or "degraded" while booted
        self._launcher: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._cgroup: Path | None = None
        self._last_cgroup: Path | None = None
        self._footprint: _Footprint | None = None  # the last boot's, for leftovers()

    # -- life cycle -------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """Host PID of the box's systemd."""
        if self._pid is None:
            raise BoxError("the box is not running")
        return self._pid

    @property
    def running(self) -> bool:
        return self._launcher is not None and self._launcher.poll() is None

    def boot(self, timeout: float = 30) -> None:
        """Start systemd; return once `systemctl is-system-running --wait` is done.

        The box dies with the thread that calls this (a parent-death signal, so that a
        killed test run leaves no box behind): boot from a thread that outlives the box.
        """
        if self._launcher is not None:
            raise BoxError("the box is already booted")
        fstype = _fstype(self.state_dir.parent if not self.state_dir.exists()
                         else self.state_dir)
        if fstype == "overlay":
            raise BoxError(f"{self.state_dir} is on an overlay: an overlay upper can't be")
        for d in (self.upper, self.work, self.root, self.scratch):
            d.mkdir(parents=True, exist_ok=True)
        self._keep_host_tmp()
        self._hide_local_installs()
        with self.console.open("a") as f:
            f.write(f"-- boot at {time.strftime('%Y-%m-%d %H:%M:%S')} --\n")
        if self._footprint is not None:
            self._footprint.close()
            self._footprint = None
        _remove_stale_cgroups()
        self._cgroup = cgroup2_root() / f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self._cgroup.mkdir()
        self._last_cgroup = self._cgroup
        cfg = {
            "caller": os.getpid(), "cgroup": str(self._cgroup), "root": str(self.root),
            "upper": str(self.upper), "work": str(self.work), "scratch": str(self.scratch),
            "console": str(self.console), "hostname": self.hostname,
            "container": CONTAINER, "mask": list(self.mask),
            "args": [f"systemd.hostname={self.hostname}", *self.args],
        }
        start = time.monotonic()
        try:
            with self.console.open("ab") as log:
                self._launcher = subprocess.Popen(
                    [PYTHON, str(LAUNCHER), json.dumps(cfg)], stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=log, start_new_session=True)
            self._pid = self._read_pid(start + timeout)
            self._wait_running(start + timeout)
        except BaseException:
            self.kill()
            raise
        self.boot_seconds = time.monotonic() - start
        self._footprint = _Footprint(self.pid, self.upper)

    def poweroff(self, timeout: float = 30) -> None:
        """`systemctl poweroff`; wait for the box's PID 1 to exit; clean up the host side."""
        if self._launcher is None:
            return
        start = time.monotonic()
        try:
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=timeout)
            self._launcher.wait(timeout)
        except BaseException:
            self.kill()
            raise
        self.poweroff_seconds = time.monotonic() - start
        self._reap()

    def kill(self) -> None:
        """Last resort: SIGKILL the box's PID 1 (the kernel kills the rest), clean up."""
        if self._launcher is None:
            self._remove_cgroup()
            return
        if self._pid is not None and self._launcher.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        if self._cgroup is not None:
            with contextlib.suppress(OSError):
                (self._cgroup / "cgroup.kill").write_text("1\n")
        try:
            self._launcher.wait(10)
        except subprocess.TimeoutExpired:
            self._launcher.kill()  # the launcher's death signal takes the box with it
            self._launcher.wait(10)
        self._reap()

    def destroy(self) -> None:
        """Power off if running (kill if that fails) and delete the state directory."""
        try:
            if self.running:
                self.poweroff()
        finally:
            self.kill()
            if self.state_dir.exists():
                if mounts := _host_mounts_under(self.state_dir):
                    raise BoxError(f"not removing {self.state_dir}: mounted {mounts}")
                shutil.rmtree(self.state_dir)

    def __enter__(self) -> SystemdBox:
        self.boot()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- using it -------------------------------------------------------------------

    def run(self, *cmd: str | os.PathLike[str], check: bool = True,
            input: str | bytes | None = None, timeout: float = 60,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            capture: bool = True) -> subprocess.CompletedProcess:
        """Run a command in all of the box's namespaces (``nsenter -t PID -a``).

        The command gets a clean environment (BOX_ENV plus `env`) and runs in the box's PID
        namespace but in the caller's cgroup. Text in and out unless `input` is bytes.
        On timeout the command (its process group, inside the box) is killed and
        TimeoutExpired raised.
        """
        argv = [NSENTER, "-t", str(self.pid), "-a"]
        if cwd is not None:
            argv.append(f"--wdns={cwd}")
        argv += ["--", *map(os.fspath, cmd)]
        text = not isinstance(input, bytes)
        pipe = subprocess.PIPE if capture else None
        with subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else
                              subprocess.DEVNULL, stdout=pipe, stderr=pipe, text=text,
                              env={**BOX_ENV, **(env or {})}, process_group=0) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                # Not nsenter itself: its child would become an orphan of the host's init
                # (nsenter's own PID namespace), a zombie the box's shutdown waits for.
                _kill_group_but_leader(proc.pid)
                try:
                    proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                raise
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, argv, out, err)
        return result

    def systemctl(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run("systemctl", *args, **kwargs)

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        """Write a file inside the box (through its overlay root)."""
        self.run("sh", "-ec", 'mkdir -p "$(dirname "$1")"; cat > "$1"; chmod "$2" "$1"', "-",
                 path, f"{mode:o}", input=content)

    def journal(self, unit: str, needle: str | None = None, timeout: float = 5) -> str:
        """`journalctl -u UNIT -o cat`, once it shows NEEDLE (stream lines reach journald
        asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            self.run("journalctl", "--sync", check=False)
            out = self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout
            if needle is None or needle in out or time.monotonic() > deadline:
                return out
            time.sleep(0.05)

    def failed_units(self) -> list[str]:
        out = self.systemctl("list-units", "--state=failed", "--plain", "--no-legend",
                             check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def console_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def changed_files(self, not_counted: Iterable[str] = ("var/log", "var/lib/systemd",
                                                          "var/tmp", "tmp")) -> dict[str, str]:
        """How the box's files differ from the host's: each path (relative to /) in the upper
        layer with its kind, "directory", "whiteout" (a host file removed in the box) or
        "file of N bytes". A directory that exists on the host too is no difference (the
        overlay copies parents up when a file is made in them); the trees NOT_COUNTED (logs,
        systemd's own state) are left out. Compare two of these to see what a command in the
        box left behind."""
        skip = {os.path.normpath(p) for p in not_counted}
        host = Path("/")
        found: dict[str, str] = {}
        for top, dirs, files in os.walk(self.upper):
            rel_top = os.path.relpath(top, self.upper)
            dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_top, d)) not in skip]
            for d in dirs:
                rel = os.path.normpath(os.path.join(rel_top, d))
                if (host / rel).is_symlink() or not (host / rel).is_dir():
                    found[rel] = "directory"
            for f in files:
                rel = os.path.normpath(os.path.join(rel_top, f))
                st = os.lstat(self.upper / rel)
                whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
                found[rel] = "whiteout" if whiteout else f"file of {st.st_size} bytes"
        return found

    def leftovers(self) -> list[str]:
        """What the last boot left on the host: mounts, processes or netns binds of its
        namespaces, its cgroup. Empty when clean; works after destroy() too."""
        found = [f"mount {m}" for m in _host_mounts_under(self.state_dir)]
        if self._footprint is not None:
            found += self._footprint.leftovers()
        if self._last_cgroup is not None and self._last_cgroup.exists():
            found.append(f"cgroup {self._last_cgroup}")
        return found

    # -- internals -------------------------------------------------------------------

    def _keep_host_tmp(self) -> None:
        """Stop the box's boot from emptying /tmp (Debian's tmpfiles.d/tmp.conf: `D /tmp`).

        That would white out the host's /tmp in the box (state and scratch directories of
        tests live there) and costs a walk of it at every boot. Written into the upper layer
        while the overlay is not mounted; a box-side `/etc/tmpfiles.d/tmp.conf` wins.
        """
        conf = self.upper / "etc/tmpfiles.d/tmp.conf"
        if not conf.is_symlink() and not conf.exists():
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.symlink_to("/dev/null")

    def _hide_local_installs(self, host: Path = Path("/")) -> None:
        """Keep what the host has installed locally out of the box (issue 14, item 9).

        Written into the upper layer while the overlay is not mounted: /usr/local becomes an
        opaque directory (the host's /usr/local does not show through; what the box itself
        installs there on an earlier boot of the same state stays), and each file of
        HIDDEN_HOST_FILES present on the host and not in the upper layer gets a whiteout.
        """
        local = self.upper / "usr/local"
        local.mkdir(parents=True, exist_ok=True)
        os.setxattr(local, "trusted.overlay.opaque", b"y")
        for sub in LOCAL_SKELETON:
            (local / sub).mkdir(exist_ok=True)
        for site in host.glob("usr/local/lib/python3*/dist-packages"):
            (local / site.relative_to(host / "usr/local")).mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(local / "man"):
            (local / "man").symlink_to("share/man")
        for pattern in HIDDEN_HOST_FILES:
            for found in host.glob(pattern):
                whiteout = self.upper / found.relative_to(host)
                if whiteout.is_symlink() or whiteout.exists():
                    continue
                whiteout.parent.mkdir(parents=True, exist_ok=True)
                os.mknod(whiteout, stat.S_IFCHR, os.makedev(0, 0))

    def _read_pid(self, deadline: float) -> int:
        assert self._launcher is not None and self._launcher.stdout is not None
        out = self._launcher.stdout
        ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
        line = out.readline() if ready else b""
        if not line.strip().isdigit():
            raise BoxError(f"the box launcher failed:\n{self.console_tail()}")
        return int(line)

    def _wait_running(self, deadline: float) -> None:
        while True:
            if not self.running:
                raise BoxError(f"the box's systemd exited during boot:\n{self.console_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoxError(f"the box did not boot in time:\n{self.console_tail()}")
            try:
                r = self.run("systemctl", "is-system-running", "--wait", check=False,
                             timeout=left)
            except subprocess.TimeoutExpired:
                continue
            self.state = r.stdout.strip()
            if self.state in ("running", "degraded"):
                return
            if self.state not in ("offline", "initializing", "starting", ""):
                raise BoxError(f"the box's systemd is {self.state}:\n{self.console_tail()}")
            time.sleep(0.005)  # systemd's private socket is not there yet

    def _reap(self) -> None:
        if self._launcher is not None:
            if self._launcher.stdout is not None:
                self._launcher.stdout.close()
            self._launcher.wait()
        self._launcher = None
        self._pid = None
        self.state = None
        self._remove_cgroup()

    def _remove_cgroup(self) -> None:
        if self._cgroup is not None:
            _remove_cgroup(self._cgroup)
            self._cgroup = None


def main(argv: list[str]) -> int:
    """Boot a box on a temporary state, report timings, power off: a quick check by hand."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="obtest-box-") as tmp:
        box = SystemdBox(Path(tmp) / "state")
        try:
            box.boot()
            print(f"booted ({box.state}) in {box.boot_seconds:.3f} s, pid {box.pid}")
            if len(argv) > 1:
                print(box.run(*argv[1:], check=False).stdout, end="")
            box.poweroff()
            print(f"powered off in {box.poweroff_seconds:.3f} s; leftovers: {box.leftovers()}")
        finally:
            box.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
