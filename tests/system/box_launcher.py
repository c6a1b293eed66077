"""Launcher of a test box: a real systemd as PID 1 of private namespaces (SPEC §8).

Run by `box.SystemdBox.boot()` as ``python3 box_launcher.py CONFIG_JSON``; standard library
only. The process started (the *launcher*) stays in the host's namespaces and cgroup, in a
session of its own without a controlling terminal. It unshares the PID namespace and forks
the box's first process, prints that child's host PID on stdout, and waits for it; its exit
status is the box's.

The child moves itself into the box's cgroup (created by the caller on the host's cgroup2
hierarchy), unshares the mount, UTS, IPC, cgroup and network namespaces, builds the root —
an overlay of the host's ``/`` — with a private ``/dev``, ``/proc`` (``/proc/sys`` read-only
except ``net``), a read-only ``/sys`` of its own netns and a fresh cgroup2 mount, binds the
scratch directory in at its host path, ``pivot_root``s and execs systemd.

Both processes carry ``PR_SET_PDEATHSIG=SIGKILL``: if the caller dies, so does the box.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import stat
import struct
import sys
import termios
import tty

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1

SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

SYSTEMD = "/lib/systemd/systemd"
BOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {fstype or source} on {target}")


def bind(source: str, target: str, *, readonly: bool = False, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if readonly:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def set_pdeathsig() -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")


def make_dev(dev: str, console_tty: str) -> None:
    """A private /dev: tmpfs, basic nodes, a new devpts instance, shm, mqueue, console."""
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=16m")
    old = os.umask(0)
    try:
        for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                                   ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)):
            os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        for d, mode in (("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755), ("net", 0o755)):
            os.mkdir(f"{dev}/{d}", mode)
        os.mknod(f"{dev}/net/tun", stat.S_IFCHR | 0o666, os.makedev(10, 200))
    finally:
        os.umask(old)
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=620,gid=5")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("core", "/proc/kcore")):
        os.symlink(target, f"{dev}/{name}")
    # The console: the slave of a pty whose master the launcher copies to the boot log.
    with open(f"{dev}/console", "w"):
        pass
    bind(console_tty, f"{dev}/console")


def build_root(cfg: dict) -> str:
    root = cfg["root"]
    mount("overlay", root, "overlay", 0,
          f"lowerdir=/,upperdir={cfg['upper']},workdir={cfg['work']}")
    nosuid = MS_NOSUID | MS_NODEV | MS_NOEXEC
    mount("proc", f"{root}/proc", "proc", nosuid)
    # Kernel-wide knobs stay read-only; the netns' own ones stay writable.
    bind(f"{root}/proc/sys", f"{root}/proc/sys", readonly=True)
    bind(f"{root}/proc/sys/net", f"{root}/proc/sys/net")
    mount(None, f"{root}/proc/sys/net", None, MS_BIND | MS_REMOUNT | nosuid)
    if os.path.exists(f"{root}/proc/sysrq-trigger"):
        bind(f"{root}/proc/sysrq-trigger", f"{root}/proc/sysrq-trigger", readonly=True)
    # A sysfs mounted in the new netns shows that netns' devices; read-only keeps udev and
    # friends off the host's devices.
    mount("sysfs", f"{root}/sys", "sysfs", nosuid | MS_RDONLY)
    mount("cgroup2", f"{root}/sys/fs/cgroup", "cgroup2", nosuid)
    make_dev(f"{root}/dev", cfg["console_tty"])
    scratch = cfg["scratch"]
    os.makedirs(f"{root}{scratch}", exist_ok=True)
    bind(scratch, f"{root}{scratch}", recursive=True)
    return root


def pivot_root(root: str) -> None:
    nr = SYS_PIVOT_ROOT[os.uname().machine]
    os.chdir(root)
    _check(_libc.syscall(nr, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def box_main(cfg: dict) -> None:
    """The box's first process (PID 1 of the new PID namespace); never returns."""
    set_pdeathsig()
    with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
        f.write("0\n")
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
                         | CLONE_NEWNET), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    socket.sethostname(cfg["hostname"])
    pivot_root(build_root(cfg))
    env = {"container": cfg["container"], "PATH": BOX_PATH, "LANG": "C.UTF-8"}
    argv = [SYSTEMD, *cfg.get("args", []), *(f"systemd.mask={u}" for u in cfg["mask"])]
    os.execve(SYSTEMD, argv, env)


def relay_console(master: int, log_path: str, pid: int) -> int:
    """Copy the console to the boot log until the box's first process exits; its status."""
    pidfd = os.pidfd_open(pid)
    with open(log_path, "ab", buffering=0) as log:
        while True:
            ready, _, _ = select.select([master, pidfd], [], [])
            if master in ready:
                with contextlib.suppress(OSError):
                    log.write(os.read(master, 65536).replace(b"\r", b""))
            if pidfd in ready:
                _, status = os.waitpid(pid, 0)
                while select.select([master], [], [], 0)[0]:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    log.write(data.replace(b"\r", b""))
                return os.waitstatus_to_exitcode(status) & 0xFF


def main() -> int:
    cfg = json.loads(sys.argv[1])
    set_pdeathsig()
    if os.getppid() != cfg["caller"]:
        return 1  # the caller died before the death signal was armed
    # The launcher leads a session of its own and must not get the console as its
    # controlling terminal: glibc's openpty() opens the slave O_NOCTTY. The launcher keeps
    # the slave open so that reading the master never sees EIO.
    master, slave = os.openpty()
    slave_path = os.ttyname(slave)
    tty.setraw(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    cfg["console_tty"] = slave_path
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(cfg["console"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.closerange(3, 1 << 16)
            box_main(cfg)
        except BaseException as e:  # noqa: BLE001 - report anything, then die
            os.write(2, f"box launcher: {e!r}\n".encode())
        os._exit(127)
    sys.stdout.write(f"{pid}\n")
    sys.stdout.flush()
    os.close(1)
    os.open(os.devnull, os.O_WRONLY)  # fd 1 again, for anything printed later
    return relay_console(master, cfg["console"], pid)


if __name__ == "__main__":
    sys.exit(main())
