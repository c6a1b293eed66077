"""Run as root INSIDE a subhost: try each known way to reach or damage the host, print JSON.

Standard library only (it runs with the subhost's ``/usr/bin/python3``). Every probe is
harmless where it succeeds: files are opened for writing but never written, nodes and mounts
made on scratch paths are removed again, the timezone is set to the value it has. A result is
``"ok"`` (the operation worked) or the errno name it failed with (``"EPERM"``, …); ``"absent"``
when what it needs does not exist on this kernel.

    python3 hostile_probe.py [OTHER_SUBHOST_FILE] [PLANTED_DEVICE_NODE] [LEFTOVER_CMDLINE]

LEFTOVER_CMDLINE: the command line (words joined by blanks) of a process a PREMOUNT hook
left running, which still has the host's tree as its working directory.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import socket
import stat
import subprocess
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
MS_REMOUNT, MS_BIND = 0x20, 0x1000
MACHINE = platform.machine()
SYSCALLS = {  # x86_64, aarch64
    "init_module": {"x86_64": 175, "aarch64": 105},
    "keyctl": {"x86_64": 250, "aarch64": 219},
    "open_by_handle_at": {"x86_64": 304, "aarch64": 265},
}


def _errno_name(number: int) -> str:
    return errno.errorcode.get(number, str(number))


def _libc_result(result: int) -> str:
    return "ok" if result >= 0 else _errno_name(ctypes.get_errno())


def attempt(func, *args) -> str:
    try:
        func(*args)
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return _errno_name(exc.errno or 0)
    return "ok"


def open_for_write(path: str) -> str:
    """Open without writing a byte: the open alone says whether a write could happen."""
    if not os.path.lexists(path):
        return "absent"
    return attempt(lambda: os.close(os.open(path, os.O_WRONLY)))


def open_for_read(path: str) -> str:
    if not os.path.lexists(path):
        return "absent"
    return attempt(lambda: os.close(os.open(path, os.O_RDONLY)))


def mknod(kind: int, major: int, minor: int) -> str:
    path = f"/tmp/hostile-node-{os.getpid()}"
    result = attempt(os.mknod, path, kind | 0o600, os.makedev(major, minor))
    if result == "ok":
        os.unlink(path)
    return result


def syscall(name: str, *args: int | bytes | None) -> str:
    number = SYSCALLS[name].get(MACHINE)
    if number is None:
        return "absent"
    return _libc_result(libc.syscall(ctypes.c_long(number), *args))


def mount_proc() -> str:
    target = f"/tmp/hostile-proc-{os.getpid()}"
    os.makedirs(target, exist_ok=True)
    try:
        result = _libc_result(libc.mount(b"proc", target.encode(), b"proc", 0, None))
        if result == "ok":
            libc.umount2(target.encode(), 2)
        return result
    finally:
        os.rmdir(target)


def remount_rw(path: str) -> str:
    if not os.path.exists(path):
        return "absent"
    return _libc_result(libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND, None))


def unmount(path: str) -> str:
    if not os.path.exists(path):
        return "absent"
    return _libc_result(libc.umount2(path.encode(), 0))


def open_by_handle() -> str:
    """The "Shocker" escape: a handle for inode 2 (a filesystem's root) of the mount of /."""
    handle = ctypes.create_string_buffer(
        (8).to_bytes(4, "little") + (1).to_bytes(4, "little")  # handle_bytes, handle_type
        + (2).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    mount_fd = os.open("/", os.O_RDONLY)
    try:
        return syscall("open_by_handle_at", mount_fd, handle, os.O_RDONLY)
    finally:
        os.close(mount_fd)


def set_timezone_unchanged() -> str:
    """settimeofday(NULL, tz) with the timezone the kernel has: needs CAP_SYS_TIME."""
    tz = (ctypes.c_int * 2)()
    tv = (ctypes.c_long * 2)()
    libc.gettimeofday(tv, tz)
    return _libc_result(libc.settimeofday(None, tz))


def keyring() -> str:
    """keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0): uid 0's keyring is the host's."""
    return syscall("keyctl", 0, ctypes.c_long(-4), 0)


def load_module() -> str:
    if not os.path.exists("/proc/modules"):
        return "absent"  # a kernel built without module support
    return syscall("init_module", None, 0, b"")


def first_sysfs_file() -> str:
    for path in ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/uevent_helper",
                 "/sys/power/state", "/sys/kernel/profiling"):
        if os.path.exists(path):
            return path
    return "/sys/kernel/uevent_helper"


def capabilities() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f)
                if k.startswith("Cap")}


def other_subhost(path: str) -> str:
    """What a file of another subhost's UPPER looks like from here."""
    try:
        with open(path, "rb") as f:
            return "readable: " + f.read(64).decode("utf-8", "replace")
    except OSError as exc:
        return _errno_name(exc.errno or 0)


def ordinary() -> dict[str, str]:
    """What every Debian system needs its root to do."""
    results: dict[str, str] = {}
    scratch = f"/tmp/hostile-ordinary-{os.getpid()}"
    with open(scratch, "w") as f:
        f.write("x")
    results["chown"] = attempt(os.chown, scratch, 65534, 65534)
    os.unlink(scratch)
    sock = socket.socket()
    try:
        results["bind_port_80"] = attempt(sock.bind, ("127.0.0.1", 80))
    finally:
        sock.close()
    pid = os.fork()
    if pid == 0:
        try:
            os.chroot("/")
            os._exit(0)
        except OSError:
            os._exit(1)
    results["chroot"] = "ok" if os.waitpid(pid, 0)[1] == 0 else "EPERM"
    results["net_sysctl"] = open_for_write("/proc/sys/net/ipv4/ip_forward")
    # A setuid-root program run by an unprivileged user: passwd -S reads /etc/shadow.
    run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "passwd", "-S"], capture_output=True, text=True)
    results["setuid_passwd"] = "ok" if run.returncode == 0 and run.stdout.startswith(
        "nobody") else f"failed: {run.stderr.strip()}"
    results["su"] = "ok" if subprocess.run(
        ["su", "-s", "/bin/sh", "nobody", "-c", "test $(id -u) = 65534"]).returncode == 0 \
        else "failed"
    return results


def find_process(cmdline: str) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    words = f.read().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            if b" ".join(words).decode("utf-8", "replace") == cmdline:
                return int(entry)
    return None


def mount_options(points: tuple[str, ...]) -> dict[str, str]:
    """Per mount point: its per-mount options, then its superblock options (mountinfo)."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] in points:
                found[fields[4]] = f"{fields[5]} {fields[-1]}"  # the last one wins
    return found


def main(argv: list[str]) -> None:
    other_file = argv[1] if len(argv) > 1 else ""
    planted = argv[2] if len(argv) > 2 else ""
    leftover = argv[3] if len(argv) > 3 else ""
    results = {
        "capabilities": capabilities(),
        "core_pattern": open_for_write("/proc/sys/kernel/core_pattern"),
        "modprobe_path": open_for_write("/proc/sys/kernel/modprobe"),
        "drop_caches": open_for_write("/proc/sys/vm/drop_caches"),
        "sysrq_trigger": open_for_write("/proc/sysrq-trigger"),
        "kcore": open_for_read("/proc/kcore"),
        "proc_keys": open_for_read("/proc/keys"),
        "kallsyms": open_for_read("/proc/kallsyms"),
        "timer_list": open_for_read("/proc/timer_list"),
        "sysfs_write": open_for_write(first_sysfs_file()),
        "adjtime_write": open_for_write("/etc/adjtime"),
        "mknod_block": mknod(stat.S_IFBLK, 7, 0),
        "mknod_char": mknod(stat.S_IFCHR, 1, 3),
        "open_by_handle_at": open_by_handle(),
        "mount_proc": mount_proc(),
        "remount_proc_sys_rw": remount_rw("/proc/sys"),
        "unmount_mask": unmount("/proc/keys"),
        "init_module": load_module(),
        "settimeofday": set_timezone_unchanged(),
        "keyctl": keyring(),
        "pid1_fd": attempt(os.readlink, "/proc/1/fd/0"),
        "pid1_mem": open_for_read("/proc/1/mem"),
        "pid1_root": attempt(os.readlink, "/proc/1/root"),
        "dumpable_pid1": open_for_read("/proc/1/environ"),
        "ordinary": ordinary(),
        "mounts": mount_options(("/dev/shm", "/dev/pts", "/", "/sys", "/proc/sys",
                                 "/proc/sys/net")),
    }
    if other_file:
        results["other_subhost"] = other_subhost(other_file)
    if planted:
        results["planted_device"] = open_for_read(planted)
    if leftover:
        pid = find_process(leftover)
        results["hook_leftover_cwd"] = ("absent" if pid is None
                                        else attempt(os.listdir, f"/proc/{pid}/cwd"))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
