#!/usr/bin/env python3
"""Prototype: can a subhost run in its own user namespace?  (findings: docs/USERNS.md)

Run as root on the machine to judge: ``python3 bench/userns_prototype.py [--runs N]``.

It probes, on this kernel and its filesystems, standard library only (ctypes for the system
calls, ``ip``/``su``/``setpriv`` from the host for the few things a subhost would run):

1. a user namespace whose root is host UID BASE (uid_map/gid_map ``0 BASE 65536``);
2. idmapped mounts (``mount_setattr(MOUNT_ATTR_IDMAP)``) of ext4 (the host's ``/``), tmpfs,
   xfs and btrfs (loop images, when mkfs.xfs/mkfs.btrfs exist) and overlay;
3. an *existing* UPPER written by the current (no user namespace) model - host-uid-0 files, a
   file of uid 1000, a whiteout, an opaque directory, a device node - through overlay variants:
   A0 overlay mounted by host root (fsuid 0) over idmapped layers (``/`` and BASE idmapped),
   A  the same mounted by host root with fsuid/fsgid BASE (its capabilities kept),
   D  host root mounts it over an idmapped ``/`` and a plain BASE (an id-shifted UPPER),
   B  overlay mounted inside the user namespace over idmapped layers (and with userxattr),
   C  overlay mounted inside the user namespace over the plain layers;
   what each shows inside, what it writes to UPPER, and whether the current model still reads
   UPPER correctly afterwards; then building blocks for a start with one fork (3b);
4. a whole subhost start in the user namespace (variant A; PID, mount, UTS, IPC, cgroup and
   network namespaces owned by it) and what works inside: /proc, sysfs, devpts, hostname,
   chown, chroot, setuid binaries, su, port 80, a veth from a "host" netns, and what is refused
   (device nodes, kernel sysctls, open_by_handle_at, ...);
5. the start time of that sequence against the current one (median of ``--runs`` runs);
6. systemd booted as PID 1 of such a subhost (its cgroup delegated), up to "running".

Everything runs in forked children with private mount namespaces; scratch directories, loop
devices, the delegated cgroup and processes are removed before it exits (also on errors and
Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import random
import select
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from overlay_boot.linux import libc  # noqa: E402
from overlay_boot.netns import set_up  # noqa: E402

# --- system calls Python and overlay_boot.linux.libc do not offer ------------------------------
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_MOUNT_SETATTR = 442
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_IDMAP = 0x00100000
MOUNT_ATTR_NODEV = 0x00000004

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.name_to_handle_at.restype = ctypes.c_int
_libc.open_by_handle_at.restype = ctypes.c_int


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _syscall(number: int, what: str, *args: object) -> int:
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def mount_setattr(fd: int, attr: MountAttr, recursive: bool = False) -> None:
    flags = libc.AT_EMPTY_PATH | (libc.AT_RECURSIVE if recursive else 0)
    _syscall(SYS_MOUNT_SETATTR, "mount_setattr", ctypes.c_int(fd), ctypes.c_char_p(b""),
             ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))


def fsopen(fstype: str) -> int:
    return _syscall(SYS_FSOPEN, f"fsopen {fstype}", ctypes.c_char_p(fstype.encode()),
                    ctypes.c_uint(FSOPEN_CLOEXEC))


def fsconfig(fsfd: int, cmd: int, key: str | None = None, value: str | None = None,
             aux: int = 0) -> None:
    raw_key = ctypes.c_char_p(key.encode() if key else None)
    raw_value = ctypes.c_char_p(value.encode() if value is not None else None)
    try:
        _syscall(SYS_FSCONFIG, f"fsconfig {key or cmd}", ctypes.c_int(fsfd), ctypes.c_uint(cmd),
                 raw_key, raw_value, ctypes.c_int(aux))
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror} {fs_log(fsfd)}".strip()) from None


def fsmount(fsfd: int, attr_flags: int = 0) -> int:
    return _syscall(SYS_FSMOUNT, "fsmount", ctypes.c_int(fsfd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                    ctypes.c_uint(attr_flags))


def fs_log(fsfd: int) -> str:
    """The messages the filesystem left on its fs_context descriptor (why a mount failed)."""
    lines = []
    while True:
        try:
            lines.append(os.read(fsfd, 1024).decode(errors="replace").strip())
        except OSError:
            return "[" + "; ".join(lines) + "]" if lines else ""


def open_by_handle(path: str, mount_dir: str) -> str:
    """name_to_handle_at + open_by_handle_at (the "Shocker" escape needs the second)."""
    buf = ctypes.create_string_buffer(8 + 128)
    ctypes.memmove(buf, (128).to_bytes(4, sys.byteorder), 4)
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(libc.AT_FDCWD, path.encode(), buf, ctypes.byref(mount_id), 0):
        err = ctypes.get_errno()
        raise OSError(err, f"name_to_handle_at {path}: {os.strerror(err)}")
    mount_fd = os.open(mount_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = _libc.open_by_handle_at(mount_fd, buf, os.O_RDONLY)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"open_by_handle_at {path}: {os.strerror(err)}")
        os.close(fd)
        return "opened by handle"
    finally:
        os.close(mount_fd)


# --- results -------------------------------------------------------------------------------------

@dataclass
class Finding:
    area: str
    probe: str
    result: str  # "works", "fails", "refused" (a refusal we want), "info", "n/a"
    detail: str = ""


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, area: str, probe: str, result: str, detail: str = "") -> None:
        self.findings.append(Finding(area, probe, result, detail))
        print(f"  [{result:7}] {area}: {probe}{' - ' + detail if detail else ''}", flush=True)


def error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return f"{errno.errorcode.get(exc.errno, exc.errno)} ({exc})"
    return f"{type(exc).__name__}: {exc}"


def attempt(func: Callable[[], object]) -> tuple[bool, str]:
    """(True, repr of the result) or (False, the error): one probe step that may fail."""
    try:
        value = func()
    except Exception as exc:  # a probe reports every failure
        return False, error_text(exc)
    return True, "" if value is None else str(value)


class KernelLog:
    """The overlayfs lines the kernel logged while the block ran (its warnings go to dmesg)."""

    def __init__(self, needle: str = "overlayfs") -> None:
        self.needle = needle
        self.lines: list[str] = []
        self.fd = -1

    def __enter__(self) -> KernelLog:
        with contextlib.suppress(OSError):
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.fd < 0:
            return
        try:
            while True:
                record = os.read(self.fd, 8192).decode(errors="replace")
                message = record.split(";", 1)[-1].strip()
                if self.needle in message:
                    self.lines.append(message)
        except OSError:  # EAGAIN: nothing more (EPIPE: overrun; we keep what we have)
            pass
        finally:
            os.close(self.fd)


# --- children --------------------------------------------------------------------------------

def in_child(func: Callable[..., object], *args: object) -> Any:
    """Run ``func(*args)`` in a forked child, return its JSON-able result (or raise its error)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            payload = {"ok": func(*args)}
        except BaseException as exc:
            payload = {"error": error_text(exc)}
            code = 1
        with contextlib.suppress(BaseException):
            os.write(write_end, json.dumps(payload).encode())
        os._exit(code)
    os.close(write_end)
    data = read_all(read_end)
    os.waitpid(pid, 0)
    result = json.loads(data or b'{"error": "child died without an answer"}')
    if "error" in result:
        raise RuntimeError(result["error"])
    return result["ok"]


def read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def private_mount_ns() -> None:
    """A mount namespace of our own from which nothing propagates back to the host."""
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)


# --- user namespaces and idmapped mounts -------------------------------------------------------

@dataclass(frozen=True)
class IdRange:
    base: int
    count: int = 65536

    def map_text(self) -> str:
        return f"0 {self.base} {self.count}\n"


def create_userns(ids: IdRange, marks: Callable[[str], None] | None = None,
                  reap: bool = True) -> int:
    """A user namespace mapping 0..count-1 to base..; returns its descriptor.

    A user namespace needs a process to be created in: a short-lived forked helper unshares
    it, we write its maps (as root no newuidmap is needed) and keep the namespace by fd.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            libc.unshare(libc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(errno.EPERM, "unshare(CLONE_NEWUSER) failed in the helper")
        if marks is not None:
            marks("userns: helper fork + unshare(CLONE_NEWUSER)")
        write_maps(pid, ids)
        userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        if marks is not None:
            marks("userns: uid_map, gid_map, open ns fd")
        return userns_fd
    finally:
        os.close(ready_r)
        os.close(go_w)
        if reap:  # else the caller reaps it later, off the start path
            os.waitpid(pid, 0)


def write_maps(pid: int, ids: IdRange) -> None:
    for name in ("uid_map", "gid_map"):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, ids.map_text().encode())
        finally:
            os.close(fd)


def idmapped_tree(path: str | Path, userns_fd: int, recursive: bool = False) -> int:
    """A detached clone of the mount at ``path`` with the idmapping of ``userns_fd``."""
    flags = libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC
    if recursive:
        flags |= libc.AT_RECURSIVE
    fd = libc.open_tree(path, flags)
    try:
        mount_setattr(fd, MountAttr(attr_set=MOUNT_ATTR_IDMAP, userns_fd=userns_fd), recursive)
    except BaseException:
        os.close(fd)
        raise
    return fd


def attach(tree_fd: int, target: Path) -> None:
    libc.move_mount(tree_fd, target)
    os.close(tree_fd)


PR_SET_SECUREBITS = 28
PR_GET_SECUREBITS = 27
SECBIT_NO_SETUID_FIXUP = 1 << 2
_libc.setfsuid.restype = ctypes.c_int
_libc.setfsgid.restype = ctypes.c_int


@contextlib.contextmanager
def mapped_creator(ids: IdRange | None) -> Iterator[None]:
    """Host root with fsuid/fsgid = BASE and its capabilities kept (no setuid fixup)."""
    if ids is None:
        yield
        return
    bits = libc.prctl(PR_GET_SECUREBITS)
    libc.prctl(PR_SET_SECUREBITS, bits | SECBIT_NO_SETUID_FIXUP)
    _libc.setfsgid(ids.base)
    _libc.setfsuid(ids.base)
    try:
        yield
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)
        libc.prctl(PR_SET_SECUREBITS, bits)


def enter_userns(userns_fd: int) -> None:
    """Become root of the user namespace (and lose every capability outside it)."""
    libc.setns(userns_fd, libc.CLONE_NEWUSER)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def overlay_options(lower: Path, upper: Path, work: Path, extra: str = "") -> str:
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    return f"{options},{extra}" if extra else options


def mount_overlay(target: Path, lower: Path, upper: Path, work: Path, extra: str = "",
                  nodev: bool = False) -> str:
    """overlay through fsopen/fsconfig + move_mount; returns what the kernel said about it.

    (The fs_context descriptor carries overlayfs' messages: why a mount failed, or which
    feature it turned off.)
    """
    fsfd = fsopen("overlay")
    try:
        fsconfig(fsfd, FSCONFIG_SET_STRING, "source", "userns-proto")
        for key, value in (("lowerdir", lower), ("upperdir", upper), ("workdir", work)):
            fsconfig(fsfd, FSCONFIG_SET_STRING, key, str(value))
        for flag in filter(None, extra.split(",")):
            fsconfig(fsfd, FSCONFIG_SET_FLAG, flag)
        fsconfig(fsfd, FSCONFIG_CMD_CREATE)
        said = fs_log(fsfd)
        attach(fsmount(fsfd, MOUNT_ATTR_NODEV if nodev else 0), target)
        return said
    finally:
        os.close(fsfd)


def overlay_tree(lower_fd: int, base_fd: int, upper: str, work: str) -> int:
    """A detached, nodev overlay whose layers are descriptors of detached (idmapped) trees."""
    upper_fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=base_fd)
    work_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=base_fd)
    fsfd = fsopen("overlay")
    try:
        fsconfig(fsfd, FSCONFIG_SET_STRING, "source", "userns-proto")
        fsconfig(fsfd, FSCONFIG_SET_FD, "lowerdir+", None, lower_fd)
        fsconfig(fsfd, FSCONFIG_SET_FD, "upperdir", None, upper_fd)
        fsconfig(fsfd, FSCONFIG_SET_FD, "workdir", None, work_fd)
        fsconfig(fsfd, FSCONFIG_CMD_CREATE)
        return fsmount(fsfd, MOUNT_ATTR_NODEV)
    finally:
        for fd in (fsfd, upper_fd, work_fd):
            os.close(fd)


# --- the existing UPPER (written by the current model) and what each variant makes of it ---------

@dataclass(frozen=True)
class Layout:
    """Paths of one scratch subhost: BASE with upper/ and work/, LIVE, attach points."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def live(self) -> Path:
        return self.root / "live"

    @property
    def lower_at(self) -> Path:
        return self.root / "mnt-lower"

    @property
    def base_at(self) -> Path:
        return self.root / "mnt-base"

    def create(self) -> Layout:
        for path in (self.upper, self.work, self.live, self.lower_at, self.base_at):
            path.mkdir(parents=True, mode=0o755, exist_ok=True)
        for path in (self.root, self.base):
            os.chmod(path, 0o755)  # user-namespace root is "others" here: it needs search
        return self


@dataclass(frozen=True)
class Sample:
    """Lower-layer paths the UPPER scenario deletes, copies up and makes opaque."""

    old_whiteout: str
    new_whiteout: str
    copy_up: str
    old_opaque: str
    new_opaque: str

    @staticmethod
    def pick() -> Sample:
        files = [p for p in ("/etc/debian_version", "/etc/issue", "/etc/issue.net", "/etc/motd",
                             "/etc/host.conf", "/etc/hostname") if os.path.isfile(p)]
        dirs = [p for p in ("/etc/default", "/usr/share/doc/bash", "/usr/share/doc/coreutils",
                            "/etc/cron.d", "/etc/ssl", "/usr/share/doc/dpkg")
                if os.path.isdir(p) and os.listdir(p)]
        if len(files) < 3 or len(dirs) < 2:
            raise SystemExit("this host's / lacks the sample files the probe deletes in UPPER")
        return Sample(files[0], files[1], files[2], dirs[0], dirs[1])


OLD_ROOT_FILE = "/etc/userns-proto-root"
OLD_USER_FILE = "/userns-proto/user1000"
PLANTED_NODE = "/userns-proto/planted-null"  # c 1 3, left in UPPER by (old) subhost root
NEW_ROOT_FILE = "/userns-proto/new-root"
NEW_CHOWNED_FILE = "/userns-proto/new-1000"
MARK = "only-this"


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def write_old_upper(layout: Layout, sample: Sample) -> None:
    """In a child: UPPER as the current model leaves it (overlay of / mounted by host root)."""
    private_mount_ns()
    mount_overlay(layout.live, Path("/"), layout.upper, layout.work)
    live = layout.live
    under(live, OLD_ROOT_FILE).write_text("written by the current model\n")
    under(live, OLD_USER_FILE).parent.mkdir(exist_ok=True)
    under(live, OLD_USER_FILE).write_text("uid 1000\n")
    os.chown(under(live, OLD_USER_FILE), 1000, 1000)
    os.mknod(under(live, PLANTED_NODE), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    under(live, sample.old_whiteout).unlink()
    shutil.rmtree(under(live, sample.old_opaque))
    under(live, sample.old_opaque).mkdir()
    under(live, sample.old_opaque + "/" + MARK).write_text("x\n")
    libc.umount2(live, libc.MNT_DETACH)


def look_inside(live: Path, sample: Sample) -> dict[str, str]:
    """What a process sees and can do in LIVE (run as root of the user namespace)."""
    seen: dict[str, str] = {}

    def owner(path: str) -> str:
        st = os.lstat(under(live, path))
        return f"{st.st_uid}:{st.st_gid}"

    seen["lower /etc/passwd owner"] = attempt(lambda: owner("/etc/passwd"))[1]
    seen["old root file owner"] = attempt(lambda: owner(OLD_ROOT_FILE))[1]
    seen["old uid-1000 file owner"] = attempt(lambda: owner(OLD_USER_FILE))[1]
    hidden = not os.path.lexists(under(live, sample.old_whiteout))
    seen["old whiteout hides lower file"] = str(hidden)
    seen["a device node planted in UPPER earlier still opens"] = describe(
        attempt(lambda: under(live, PLANTED_NODE).write_text("x")))
    seen["old opaque dir shows only UPPER"] = str(
        os.listdir(under(live, sample.old_opaque)) == [MARK])

    def write_new() -> None:
        under(live, NEW_ROOT_FILE).write_text("new\n")

    def copy_up() -> None:
        with open(under(live, sample.copy_up), "a") as file:
            file.write("appended inside\n")

    def new_opaque() -> None:
        shutil.rmtree(under(live, sample.new_opaque))
        under(live, sample.new_opaque).mkdir()
        under(live, sample.new_opaque + "/" + MARK).write_text("x\n")

    def chown_new() -> None:
        under(live, NEW_CHOWNED_FILE).write_text("new\n")
        os.chown(under(live, NEW_CHOWNED_FILE), 1000, 1000)

    seen["create a file"] = describe(attempt(write_new))
    seen["copy-up (append to a lower file)"] = describe(attempt(copy_up))
    seen["delete a lower file"] = describe(
        attempt(lambda: under(live, sample.new_whiteout).unlink()))
    seen["replace a lower dir (opaque)"] = describe(attempt(new_opaque))
    seen["chown to 1000"] = describe(attempt(chown_new))
    seen["chown to 70000 (unmapped)"] = describe(
        attempt(lambda: os.chown(under(live, NEW_ROOT_FILE), 70000, 70000)))
    return seen


def describe(outcome: tuple[bool, str]) -> str:
    ok, text = outcome
    return ("ok " + text).strip() if ok else "FAILS " + text


def look_at_disk(layout: Layout, sample: Sample) -> dict[str, str]:
    """The host's view of UPPER after the variant wrote to it: owners, whiteouts, xattrs."""
    seen = {}
    for label, path in (("new file", NEW_ROOT_FILE), ("copied-up file", sample.copy_up),
                        ("chowned file", NEW_CHOWNED_FILE), ("new whiteout", sample.new_whiteout),
                        ("new opaque dir", sample.new_opaque)):
        seen[f"on disk: {label}"] = disk_entry(under(layout.upper, path))
    return seen


def disk_entry(path: Path) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
    if stat.S_ISCHR(st.st_mode):
        kind = f"char {os.major(st.st_rdev)}/{os.minor(st.st_rdev)}"
    xattrs = [x for x in os.listxattr(path, follow_symlinks=False) if "overlay" in x]
    text = f"{kind} uid {st.st_uid} gid {st.st_gid}"
    if st.st_size == 0 and kind == "file" and xattrs:
        text += " (empty)"
    return text + (f" xattrs {','.join(sorted(xattrs))}" if xattrs else "")


def reread_with_current_model(layout: Layout, sample: Sample) -> dict[str, str]:
    """Mount UPPER the current way again (host root, plain /): is what the variant wrote kept?"""
    private_mount_ns()
    mount_overlay(layout.live, Path("/"), layout.upper, layout.work)
    live = layout.live
    return {
        "current model: new whiteout hides lower file":
            str(not os.path.lexists(under(live, sample.new_whiteout))),
        "current model: new opaque dir shows only UPPER":
            str(os.listdir(under(live, sample.new_opaque)) == [MARK]),
        "current model: new file owner": attempt(
            lambda: os.lstat(under(live, NEW_ROOT_FILE)).st_uid)[1],
        "current model: old opaque dir still opaque":
            str(os.listdir(under(live, sample.old_opaque)) == [MARK]),
    }


def attach_idmapped_layers(layout: Layout, userns_fd: int) -> None:
    """Host root: idmapped clones of / and of BASE (upper and work must share one mount)."""
    attach(idmapped_tree("/", userns_fd), layout.lower_at)
    attach(idmapped_tree(layout.base, userns_fd), layout.base_at)


def variant_host_mounts(layout: Layout, sample: Sample, ids: IdRange,
                        mapped_fsuid: bool, idmap_base: bool = True) -> dict[str, str]:
    """A: host root mounts the overlay over idmapped layers; the subhost only uses it.

    overlayfs does its own work in UPPER (workdir, whiteouts, copy-up) with the credentials of
    whoever mounted it. With ``mapped_fsuid`` those are host root's capabilities with fsuid and
    fsgid BASE: the one host id that the idmapped BASE maps (back to 0 on disk).
    """
    private_mount_ns()
    userns_fd = create_userns(ids)
    attach(idmapped_tree("/", userns_fd), layout.lower_at)
    base = layout.base
    if idmap_base:
        attach(idmapped_tree(layout.base, userns_fd), layout.base_at)
        base = layout.base_at
    with mapped_creator(ids if mapped_fsuid else None):
        said = mount_overlay(layout.live, layout.lower_at, base / "upper", base / "work")

    def inside() -> dict[str, str]:
        enter_userns(userns_fd)
        return look_inside(layout.live, sample)

    return {"mount": "ok " + said, **in_child(inside)}


def variant_userns_mounts(layout: Layout, sample: Sample, ids: IdRange, extra: str,
                          idmapped: bool) -> dict[str, str]:
    """B/C: root of the user namespace mounts the overlay itself (over idmapped layers or not)."""
    private_mount_ns()
    userns_fd = create_userns(ids)
    if idmapped:
        attach_idmapped_layers(layout, userns_fd)
        lower, base = layout.lower_at, layout.base_at
    else:
        lower, base = Path("/"), layout.base

    def inside() -> dict[str, str]:
        enter_userns(userns_fd)
        libc.unshare(libc.CLONE_NEWNS)
        ok, said = attempt(lambda: mount_overlay(layout.live, lower, base / "upper",
                                                 base / "work", extra))
        if not ok:
            return {"mount": "FAILS " + said}
        return {"mount": "ok " + said, **look_inside(layout.live, sample)}

    return in_child(inside)


UPPER_VARIANTS: dict[str, tuple[str, Callable[..., dict[str, str]], tuple[object, ...]]] = {
    "A0": ("host root, fsuid 0, mounts overlay over idmapped / and BASE", variant_host_mounts,
           (False,)),
    "A": ("host root with fsuid BASE mounts overlay over idmapped / and BASE",
          variant_host_mounts, (True,)),
    "D": ("host root mounts overlay over idmapped / and plain BASE (a shifted UPPER)",
          variant_host_mounts, (False, False)),
    "B": ("userns root mounts overlay over idmapped / and BASE", variant_userns_mounts,
          ("", True)),
    "B+userxattr": ("as B with -o userxattr", variant_userns_mounts, ("userxattr", True)),
    "C": ("userns root mounts overlay over plain / and BASE", variant_userns_mounts,
          ("", False)),
}


def probe_existing_upper(report: Report, scratch: Path, sample: Sample, ids: IdRange) -> None:
    print("\n== 3. an existing UPPER (made without user namespace) through each variant")
    for key, (title, func, extra) in UPPER_VARIANTS.items():
        layout = Layout(scratch / f"upper-{key}").create()
        in_child(write_old_upper, layout, sample)
        area = f"UPPER variant {key} ({title})"
        try:
            with KernelLog() as kernel:
                seen = in_child(func, layout, sample, ids, *extra)
        except RuntimeError as exc:
            report.add(area, "the variant", "fails", str(exc))
            continue
        if kernel.lines:
            report.add(area, "kernel log", "info", " | ".join(kernel.lines))
        assert isinstance(seen, dict)
        mounted = seen.get("mount", "").startswith("ok")
        if mounted:
            seen.update(look_at_disk(layout, sample))
            again = in_child(reread_with_current_model, layout, sample)
            seen.update(again)
        for probe, value in seen.items():
            report.add(area, probe, judge(probe, value), value)


EXPECTED_REFUSALS = ("chown to 70000", "a device node planted", "mknod",
                     "userns root mounts proc for", "open kernel.", "open /proc/sysrq",
                     "open /sys/kernel", "open_by_handle_at", "finit_module")


def judge(probe: str, value: str) -> str:
    if "n/a:" in value:
        return "n/a"
    failed = value.startswith("FAILS") or value == "False"
    if any(probe.startswith(p) for p in EXPECTED_REFUSALS):
        return "refused" if failed else "fails"
    if failed:
        return "fails"
    return "works" if value == "True" or value.startswith("ok") else "info"


# --- which filesystems can be idmapped -------------------------------------------------------

@dataclass(frozen=True)
class FsCase:
    name: str
    mountpoint: Path
    prepare: Callable[[], None]  # runs in the child's private mount namespace, as host root


def probe_idmap_fs(case: FsCase, ids: IdRange) -> dict[str, str]:
    private_mount_ns()
    case.prepare()
    probe = case.mountpoint / "made-by-host-root"
    probe.write_text("x\n")
    userns_fd = create_userns(ids)
    try:
        tree = idmapped_tree(case.mountpoint, userns_fd)
    except OSError as exc:
        return {"idmapped mount": "FAILS " + error_text(exc)}
    idmapped = case.mountpoint.with_name(case.mountpoint.name + "-idmapped")
    idmapped.mkdir(exist_ok=True)
    attach(tree, idmapped)
    seen = {"idmapped mount": "ok",
            "host uid 0 file seen from host through it": str(
                os.stat(idmapped / probe.name).st_uid)}

    def inside() -> dict[str, str]:
        enter_userns(userns_fd)
        made = idmapped / "made-inside"
        return {"seen inside as uid": str(os.stat(idmapped / probe.name).st_uid),
                "create inside": describe(attempt(lambda: made.write_text("y\n")))}

    seen.update(in_child(inside))
    with contextlib.suppress(OSError):
        on_disk = os.stat(case.mountpoint / "made-inside").st_uid
        seen["file made inside, on disk uid"] = str(on_disk)
    return seen


@contextlib.contextmanager
def loop_image(scratch: Path, fstype: str) -> Iterator[str | None]:
    """A formatted loop device (detached afterwards), or None when mkfs.TYPE is missing."""
    mkfs = shutil.which(f"mkfs.{fstype}")
    if mkfs is None:
        yield None
        return
    image = scratch / f"{fstype}.img"
    with open(image, "wb") as file:
        file.truncate(320 * 1024 * 1024)  # sparse; xfs wants >= 300 MiB
    subprocess.run([mkfs, "-q", str(image)], check=True, stdout=subprocess.DEVNULL)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
        image.unlink()


def probe_filesystems(report: Report, scratch: Path, ids: IdRange) -> None:
    print("\n== 2. idmapped mounts per filesystem type")
    root_fs = filesystem_of("/")

    def mount_tmpfs(target: Path) -> Callable[[], None]:
        return lambda: libc.mount("tmpfs", target, "tmpfs", 0, "mode=755")

    def mount_device(device: str, fstype: str, target: Path) -> Callable[[], None]:
        return lambda: libc.mount(device, target, fstype, 0)

    def mount_plain_overlay(target: Path) -> Callable[[], None]:
        layout = Layout(scratch / "fs-overlay-layers").create()

        def mount() -> None:
            mount_overlay(target, Path("/"), layout.upper, layout.work)
        return mount

    scratch_on_root = scratch / "fs-root"
    scratch_on_root.mkdir()
    cases = [FsCase(f"{root_fs} (the filesystem of the host's /)", scratch_on_root, lambda: None)]
    for name, maker in (("tmpfs", mount_tmpfs), ("overlay", mount_plain_overlay)):
        target = scratch / f"fs-{name}"
        target.mkdir()
        cases.append(FsCase(name, target, maker(target)))
    with loop_image(scratch, "xfs") as xfs_dev, loop_image(scratch, "btrfs") as btrfs_dev:
        for fstype, device in (("xfs", xfs_dev), ("btrfs", btrfs_dev)):
            if device is None:
                report.add(f"idmap {fstype}", "idmapped mount", "n/a", f"no mkfs.{fstype} here")
                continue
            target = scratch / f"fs-{fstype}"
            target.mkdir()
            cases.append(FsCase(f"{fstype} (loop image)", target,
                                mount_device(device, fstype, target)))
        for case in cases:
            try:
                seen = in_child(probe_idmap_fs, case, ids)
            except RuntimeError as exc:
                report.add(f"idmap {case.name}", "probe", "fails", str(exc))
                continue
            for probe, value in seen.items():
                report.add(f"idmap {case.name}", probe, judge(probe, value), value)


def filesystem_of(path: str) -> str:
    with open("/proc/self/mountinfo") as file:
        best = ("", "?")
        for line in file:
            fields = line.split()
            mountpoint, fstype = fields[4], fields[fields.index("-") + 1]
            if path.startswith(mountpoint) and len(mountpoint) >= len(best[0]):
                best = (mountpoint, fstype)
    return best[1]




# --- building blocks for other start sequences ------------------------------------------------

def alt_detached_overlay(layout: Layout, ids: IdRange) -> dict[str, str]:
    """Host root builds the overlay as a detached mount (fsmount, layers given by fd); root of
    the user namespace attaches it in its own mount namespace with move_mount."""
    private_mount_ns()
    userns_fd = create_userns(ids)
    lower = idmapped_tree("/", userns_fd)
    base = idmapped_tree(layout.base, userns_fd)
    with mapped_creator(ids):
        ok, said = attempt(lambda: overlay_tree(lower, base, "upper", "work"))
    seen = {"overlay from descriptors of detached idmapped trees (lowerdir+ by fd)":
            describe((ok, "" if ok else said))}
    if not ok:
        return seen

    def inside() -> dict[str, str]:
        enter_userns(userns_fd)
        libc.unshare(libc.CLONE_NEWNS)
        attached = describe(attempt(lambda: libc.move_mount(int(said), layout.live)))
        owner = attempt(lambda: os.stat(layout.live / "etc/passwd").st_uid)
        return {"userns root attaches it (move_mount) in its own mount ns": attached,
                "its /etc/passwd owner inside": describe(owner)}

    seen.update(in_child(inside))
    return seen


def alt_init_owned_pidns(layout: Layout, ids: IdRange) -> dict[str, str]:
    """PID namespace made before the user namespace (as overlay-boot makes it today): can the
    subhost have a /proc? Mounted from inside (no), or made by host root and attached (?)."""
    userns_fd = create_userns(ids)
    libc.unshare(libc.CLONE_NEWPID)

    def pid1() -> dict[str, str]:
        private_mount_ns()
        fsfd = fsopen("proc")  # host root, in the new PID namespace: its procfs
        fsconfig(fsfd, FSCONFIG_CMD_CREATE)
        proc_fd = fsmount(fsfd)
        enter_userns(userns_fd)
        libc.unshare(libc.CLONE_NEWNS)
        target = layout.root / "proc-probe"
        inside = describe(attempt(lambda: libc.mount("proc", target, "proc", KERNEL_FS)))
        attached = describe(attempt(lambda: libc.move_mount(proc_fd, target)))
        pids = attempt(lambda: sorted(int(n) for n in os.listdir(target) if n.isdigit()))
        return {"userns root mounts proc for a PID ns owned by host root": inside,
                "host root's detached proc of that PID ns, attached by userns root": attached,
                "PIDs in that /proc": describe(pids)}

    return in_child(pid1)


def probe_alternatives(report: Report, scratch: Path, ids: IdRange) -> None:
    print("\n== 3b. building blocks for a start with fewer processes")
    layout = Layout(scratch / "alternatives").create()
    (layout.root / "proc-probe").mkdir()
    for func in (alt_detached_overlay, alt_init_owned_pidns):
        try:
            seen = in_child(func, layout, ids)
        except RuntimeError as exc:
            report.add("alternatives", func.__name__, "fails", str(exc))
            continue
        for probe, value in seen.items():
            report.add("alternatives", probe, judge(probe, value), value)


# --- a whole subhost start in the user namespace (variant A) -----------------------------------

TTY_GID = 5
HOST_ADDR, SUB_ADDR = "10.231.9.1", "10.231.9.2"  # only inside the netns made here
DEV_NODES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
             ("urandom", 1, 9), ("tty", 5, 0))
KERNEL_FS = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC


@dataclass
class Pipes:
    """status: the subhost to the prober (lines); control: the prober to the subhost."""

    status_r: int
    status_w: int
    control_r: int
    control_w: int

    @staticmethod
    def make() -> Pipes:
        return Pipes(*os.pipe(), *os.pipe())

    def send(self, line: str) -> None:
        os.write(self.status_w, line.encode() + b"\n")


def build_live(layout: Layout, ids: IdRange, userns_fd: int) -> None:
    """Host root, in a private mount namespace: LIVE and its /dev, owned by the subhost's ids."""
    private_mount_ns()
    mount_live(layout, ids, userns_fd)
    make_dev(layout.live / "dev", ids.base)


def mount_live(layout: Layout, ids: IdRange, userns_fd: int) -> None:
    """The overlay is nodev: device nodes left in UPPER (by the old model) must not open."""
    attach_idmapped_layers(layout, userns_fd)
    with mapped_creator(ids):
        mount_overlay(layout.live, layout.lower_at, layout.base_at / "upper",
                      layout.base_at / "work", nodev=True)


def make_dev(dev: Path, root_id: int) -> None:
    """/dev as a tmpfs with the usual nodes, owned by host id ``root_id`` (root inside).

    Mounted by host root, so its nodes work (a tmpfs mounted inside the user namespace would
    be nodev); uid=/gid= make it the subhost root's own directory.
    """
    libc.mount("tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_STRICTATIME,
               f"mode=755,size=4M,uid={root_id},gid={root_id}")
    for name, major, minor in DEV_NODES:
        os.mknod(dev / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)
        os.chown(dev / name, root_id, root_id + (TTY_GID if name == "tty" else 0))
    for path in ("pts", "shm"):
        (dev / path).mkdir()
        os.chown(dev / path, root_id, root_id)
    os.symlink("pts/ptmx", dev / "ptmx")
    os.lchown(dev / "ptmx", root_id, root_id)


def enter_subhost_namespaces(userns_fd: int) -> None:
    """Become the subhost's root; every namespace made from here on belongs to its userns."""
    enter_userns(userns_fd)
    libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
                 | libc.CLONE_NEWCGROUP | libc.CLONE_NEWNET)
    libc.unshare(libc.CLONE_NEWPID)  # our next child is PID 1 of a PID namespace of the userns


def finish_inside(live: Path, locked: bool = True) -> dict[str, str]:
    """PID 1, root of the userns: the kernel filesystems, then pivot_root into LIVE.

    LIVE came from the host's mount namespace: in ours it is locked (MNT_LOCKED), and
    pivot_root refuses a locked new root (EINVAL). A recursive bind of LIVE onto itself is a
    mount of our own to pivot into.
    """
    done = {}
    if locked:
        done["rbind LIVE onto itself (an unlocked mount for pivot_root)"] = describe(attempt(
            lambda: libc.mount(live, live, None, libc.MS_BIND | libc.MS_REC)))
    for what, func in (
        ("mount proc (PID ns of the userns)",
         lambda: libc.mount("proc", live / "proc", "proc", KERNEL_FS)),
        ("mount sysfs (net ns of the userns)",
         lambda: libc.mount("sysfs", live / "sys", "sysfs", KERNEL_FS)),
        ("mount devpts newinstance",
         lambda: libc.mount("devpts", live / "dev/pts", "devpts",
                            libc.MS_NOSUID | libc.MS_NOEXEC,
                            f"newinstance,ptmxmode=0666,mode=620,gid={TTY_GID}")),
        ("mount tmpfs /dev/shm",
         lambda: libc.mount("tmpfs", live / "dev/shm", "tmpfs",
                            libc.MS_NOSUID | libc.MS_NODEV, "mode=1777")),
    ):
        done[what] = describe(attempt(func))
    os.chdir(live)
    done["pivot_root into LIVE and detach the host's /"] = describe(attempt(pivot_here))
    return done


def pivot_here() -> None:
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")


def start_in_userns(layout: Layout, ids: IdRange, pipes: Pipes | None,
                    pid1: Callable[[dict[str, str]], None]) -> int:
    """The prototype's start sequence (variant A) up to PID 1; returns PID 1's exit status.

    Runs in a forked child of the prober (it stands for PID 1's parent in overlay-boot).
    """
    libc.set_pdeathsig(signal.SIGKILL)
    userns_fd = create_userns(ids)
    build_live(layout, ids, userns_fd)
    enter_subhost_namespaces(userns_fd)
    os.close(userns_fd)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            libc.set_pdeathsig(signal.SIGKILL)
            pid1(finish_inside(layout.live))
        except BaseException as exc:
            if pipes is not None:
                with contextlib.suppress(OSError):
                    pipes.send("result " + json.dumps({"PID 1": "FAILS " + error_text(exc)}))
            code = 1
        os._exit(code)
    if pipes is not None:
        pipes.send(f"pid {pid}")
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])



def open_for_write(path: str) -> str:
    """Whether ``path`` opens for writing; nothing is written (a probe must not change the host)."""
    if not os.path.exists(path):
        return "n/a: absent on this kernel"
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    os.close(fd)
    return "ok opened for writing"


PROBE_DIR = "/userns-probe"  # in LIVE, i.e. in this scratch subhost's UPPER
SYS_FINIT_MODULE = {"x86_64": 313, "aarch64": 273, "riscv64": 273}


def load_module() -> str:
    """finit_module(-1): the capability check comes first (EPERM), EBADF would mean allowed."""
    number = SYS_FINIT_MODULE.get(os.uname().machine)
    if number is None:
        return "n/a: not probed on this architecture"
    if not os.path.exists("/proc/modules"):
        return "n/a: this kernel has no module support (CONFIG_MODULES=n)"
    _syscall(number, "finit_module", ctypes.c_int(-1), ctypes.c_char_p(b""), ctypes.c_int(0))
    return "returned"


def run(argv: list[str], **kwargs: object) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False,
                            stdin=subprocess.DEVNULL, **kwargs)
    text = (result.stdout + result.stderr).strip().replace("\n", " | ")
    if result.returncode != 0:
        raise OSError(0, f"{' '.join(argv)}: exit {result.returncode}: {text}")
    return text


def in_forked(func: Callable[[], object]) -> str:
    """``func`` in a forked child (for things that change the process: chroot, setuid)."""
    return str(in_child(func))


def chroot_probe() -> str:
    os.makedirs(f"{PROBE_DIR}/chroot", exist_ok=True)
    os.chroot(f"{PROBE_DIR}/chroot")
    os.chdir("/")
    return "ok, cwd " + os.getcwd()


def setuid_copy_probe() -> str:
    shutil.copy("/usr/bin/id", f"{PROBE_DIR}/suid-id")
    os.chmod(f"{PROBE_DIR}/suid-id", 0o4755)
    return "euid " + run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                          f"{PROBE_DIR}/suid-id", "-u"])


def owner_mode(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_uid}:{st.st_gid} mode {stat.filemode(st.st_mode)}"


def mknod_probe(kind: int, major: int, minor: int) -> None:
    path = f"{PROBE_DIR}/node-{major}-{minor}"
    os.mknod(path, kind | 0o600, os.makedev(major, minor))
    os.unlink(path)


def mount_probe(fstype: str, options: str | None = None) -> None:
    target = f"{PROBE_DIR}/mnt-{fstype}"
    os.makedirs(target, exist_ok=True)
    libc.mount(fstype, target, fstype, 0, options)
    libc.umount2(target, libc.MNT_DETACH)


def probes_inside() -> dict[str, str]:
    """What root of the user namespace can and cannot do inside the started subhost."""
    checks: list[tuple[str, Callable[[], object]]] = [
        ("uid_map", lambda: Path("/proc/self/uid_map").read_text().split()),
        ("lower /etc/passwd owner", lambda: owner_mode("/etc/passwd")),
        ("lower /usr/bin/su owner", lambda: owner_mode("/usr/bin/su")),
        ("sethostname", lambda: libc.sethostname("userns-proto") or os.uname().nodename),
        ("write /dev/null", lambda: Path("/dev/null").write_text("x")),
        ("openpty (devpts)", lambda: os.ttyname(os.openpty()[1])),
        ("create a file, chown it to 1000", lambda: (Path(PROBE_DIR, "c").write_text("x"),
                                                     os.chown(f"{PROBE_DIR}/c", 1000, 1000))[1]),
        ("chroot", lambda: in_forked(chroot_probe)),
        ("su nobody -c 'id -u'", lambda: run(["su", "-s", "/bin/sh", "nobody", "-c", "id -u"])),
        ("setuid-root copy of id run by uid 1000", lambda: in_forked(setuid_copy_probe)),
        ("mount tmpfs", lambda: mount_probe("tmpfs")),
        ("mount proc again", lambda: mount_probe("proc")),
        ("mount cgroup2", lambda: mount_probe("cgroup2")),
        ("per-netns sysctl net.ipv4.ip_forward",
         lambda: Path("/proc/sys/net/ipv4/ip_forward").write_text("1")),
        ("mknod c 1 3 (a device node)", lambda: mknod_probe(stat.S_IFCHR, 1, 3)),
        ("a device node planted in UPPER earlier (c 1 3) opens, overlay mounted nodev",
         lambda: Path(PLANTED_NODE).write_text("x")),
        ("mknod b 7 0 (a block device)", lambda: mknod_probe(stat.S_IFBLK, 7, 0)),
        ("open kernel.core_pattern for writing",
         lambda: open_for_write("/proc/sys/kernel/core_pattern")),
        ("open /proc/sysrq-trigger for writing", lambda: open_for_write("/proc/sysrq-trigger")),
        ("open /sys/kernel/mm/transparent_hugepage/enabled for writing",
         lambda: open_for_write("/sys/kernel/mm/transparent_hugepage/enabled")),
        ("open_by_handle_at (/dev/null, on the host-made tmpfs)",
         lambda: open_by_handle("/dev/null", "/dev")),
        ("finit_module", load_module),
    ]
    return {what: describe(attempt(func)) for what, func in checks}


def network_inside(pipes: Pipes) -> dict[str, str]:
    """lo and the veth end the prober moved in; serve one connection on port 80."""
    seen = {"lo up (ioctl)": describe(attempt(lambda: set_up("lo")))}
    seen["ip addr add / link up on the veth"] = describe(attempt(lambda: (
        run(["ip", "addr", "add", f"{SUB_ADDR}/24", "dev", "ups0"]),
        run(["ip", "link", "set", "ups0", "up"]))[1]))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        ok, said = attempt(lambda: server.bind(("0.0.0.0", 80)))
        seen["bind port 80"] = describe((ok, said))
        if not ok:
            pipes.send("listening no")
            return seen
        server.listen(1)
        server.settimeout(10)
        pipes.send("listening yes")
        ok, said = attempt(lambda: serve_once(server))
        seen["accept on port 80"] = describe((ok, said))
    return seen


def serve_once(server: socket.socket) -> str:
    conn, peer = server.accept()
    with conn:
        conn.sendall(b"hello from port 80 inside\n")
    return f"from {peer[0]}"


def subhost_pid1(pipes: Pipes) -> Callable[[dict[str, str]], None]:
    def pid1(done: dict[str, str]) -> None:
        os.read(pipes.control_r, 3)  # "go": the veth is in our netns
        if not all(value.startswith("ok") for value in done.values()):
            pipes.send("listening no")  # not inside LIVE: probing would touch the host's /
            pipes.send("result " + json.dumps(done))
            return
        os.mkdir(PROBE_DIR)
        seen = {**done, **network_inside(pipes), **probes_inside()}
        pipes.send("result " + json.dumps(seen))
    return pid1


def host_side(pipes: Pipes) -> None:
    """A stand-in for the host's network: a netns of its own with the other end of the veth."""
    libc.set_pdeathsig(signal.SIGKILL)
    libc.unshare(libc.CLONE_NEWNET)
    set_up("lo")
    run(["ip", "link", "add", "uph0", "type", "veth", "peer", "name", "ups0"])
    run(["ip", "addr", "add", f"{HOST_ADDR}/24", "dev", "uph0"])
    run(["ip", "link", "set", "uph0", "up"])
    pipes.send("ready")
    if os.read(pipes.control_r, 8).strip() != b"connect":
        return
    ok, said = attempt(lambda: fetch_banner(SUB_ADDR, 80))
    pipes.send("result " + json.dumps({"TCP host netns -> subhost port 80 over the veth":
                                      describe((ok, said))}))


def fetch_banner(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=10) as conn:
        return conn.recv(100).decode().strip()


class Lines:
    """Line reader on a status pipe with a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def next(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from the subhost")
            if select.select([self.fd], [], [], remaining)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise EOFError("the subhost closed its status pipe")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def fork_run(func: Callable[[], object]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            result = func()
            code = result if isinstance(result, int) else 0
        except BaseException as exc:
            print(f"  child {os.getpid()}: {error_text(exc)}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    return pid


def probe_started_subhost(report: Report, scratch: Path, sample: Sample, ids: IdRange) -> None:
    print("\n== 4. a subhost started in its user namespace (variant A): what works inside")
    layout = Layout(scratch / "subhost").create()
    in_child(write_old_upper, layout, sample)
    sub, host = Pipes.make(), Pipes.make()
    children = [fork_run(lambda: host_side(host))]
    try:
        children.append(fork_run(lambda: start_in_userns(layout, ids, sub, subhost_pid1(sub))))
        for key, value in drive_subhost(sub, host, children[0]).items():
            report.add("inside the userns subhost", key, judge(key, value), value)
        suid = under(layout.upper, PROBE_DIR + "/suid-id")
        with contextlib.suppress(OSError):
            st = os.lstat(suid)
            report.add("inside the userns subhost", "the setuid-root copy, on disk in UPPER",
                       "risk" if st.st_uid == 0 and st.st_mode & stat.S_ISUID else "info",
                       f"uid {st.st_uid} mode {stat.filemode(st.st_mode)}: a setuid binary of "
                       "host root for any host user who can reach UPPER")
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in (sub.status_r, sub.status_w, sub.control_r, sub.control_w, host.status_r,
                   host.status_w, host.control_r, host.control_w):
            os.close(fd)


def drive_subhost(sub: Pipes, host: Pipes, host_pid: int) -> dict[str, str]:
    sub_lines, host_lines = Lines(sub.status_r), Lines(host.status_r)
    if host_lines.next() != "ready":
        raise RuntimeError("the host-side netns did not come up")
    first = sub_lines.next()
    if not first.startswith("pid "):
        return json.loads(first.removeprefix("result "))
    pid1 = int(first.split()[1])
    host_ns = f"/proc/{host_pid}/ns/net"
    moved = attempt(lambda: run(["nsenter", f"--net={host_ns}", "ip", "link", "set", "ups0",
                                 "netns", str(pid1)]))
    seen = {"move the veth end into the subhost's netns (host root)": describe(moved)}
    os.write(sub.control_w, b"go\n")
    line = sub_lines.next()
    if line == "listening yes":
        os.write(host.control_w, b"connect\n")
        seen.update(json.loads(host_lines.next().removeprefix("result ")))
        line = sub_lines.next()
    elif line.startswith("listening"):
        line = sub_lines.next()
    seen.update(json.loads(line.removeprefix("result ")))
    return seen




# --- systemd as PID 1 in the user namespace ----------------------------------------------------

SYSTEMD = "/lib/systemd/systemd"


def delegate_cgroup(path: Path, root_id: int) -> None:
    """A cgroup2 directory handed to the subhost's root (systemd needs to write below it)."""
    path.mkdir()
    os.chown(path, root_id, root_id)
    for name in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(path / name, root_id, root_id)


def remove_cgroup(path: Path, timeout: float = 5.0) -> None:
    """Bottom-up rmdir of a cgroup tree once its processes are gone (cgroup.kill first)."""
    if not path.is_dir():
        return
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1\n")
    dirs = sorted((Path(d) for d, _, _ in os.walk(path)), key=lambda d: len(d.parts),
                  reverse=True)
    deadline = time.monotonic() + timeout
    for directory in dirs:
        while True:
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY while dying processes leave
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def boot_systemd(layout: Layout, ids: IdRange, cgroup: Path, console: str,
                 masks: list[str]) -> int:
    """Variant A's start, then exec systemd as PID 1 (a child of this starting process)."""
    libc.set_pdeathsig(signal.SIGKILL)
    (cgroup / "cgroup.procs").write_text("0\n")  # the cgroup namespace's root is this cgroup
    userns_fd = create_userns(ids)
    build_live(layout, ids, userns_fd)
    console_at = layout.live / "dev/console"
    console_at.touch()
    libc.mount(console, console_at, None, libc.MS_BIND)
    enter_subhost_namespaces(userns_fd)
    os.close(userns_fd)
    pid = os.fork()
    if pid == 0:
        try:
            libc.set_pdeathsig(signal.SIGKILL)
            done = finish_inside_for_systemd(layout.live)
            if all(value.startswith("ok") for value in done.values()):
                env = {"container": "userns-proto", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                       "LANG": "C.UTF-8"}
                os.execve(SYSTEMD, [SYSTEMD, *(f"systemd.mask={u}" for u in masks)], env)
            print(f"userns-proto: not started: {done}", flush=True)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def finish_inside_for_systemd(live: Path) -> dict[str, str]:
    """finish_inside plus the cgroup2 mount systemd needs (cgroup ns of the user namespace)."""
    done = finish_inside(live)  # ends in LIVE, after pivot_root
    done["mount cgroup2 on /sys/fs/cgroup"] = describe(attempt(lambda: libc.mount(
        "cgroup2", "/sys/fs/cgroup", "cgroup2", KERNEL_FS)))
    return done


def in_box(pid: int, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(pid), "-a", *argv], capture_output=True,
                          text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def probe_systemd(report: Report, scratch: Path, ids: IdRange) -> None:
    print("\n== 6. systemd as PID 1 of a subhost in its user namespace (variant A)")
    area = "systemd in the userns subhost"
    if not os.path.exists(SYSTEMD):
        report.add(area, "boot", "n/a", f"no {SYSTEMD}")
        return
    from tests.system.box import DEFAULT_MASK, cgroup2_root

    layout = Layout(scratch / "systemd").create()
    cgroup = cgroup2_root() / f"userns-proto-{os.getpid()}"
    delegate_cgroup(cgroup, ids.base)
    master, slave = os.openpty()
    os.chown(os.ttyname(slave), ids.base, ids.base + TTY_GID)
    console_log = bytearray()
    forked = time.perf_counter()
    starter = fork_run(lambda: boot_systemd(layout, ids, cgroup, os.ttyname(slave),
                                            list(DEFAULT_MASK)))
    try:
        try:
            pid1 = wait_for_child_of(starter, 10)
        except TimeoutError as exc:
            report.add(area, "boot", "fails", str(exc))
            return
        wait_for_bus(pid1, 60)
        state = in_box(pid1, "systemctl", "is-system-running", "--wait", timeout=90)
        drain(master, console_log)
        report.add(area, "systemctl is-system-running --wait",
                   "works" if state.stdout.strip() in ("running", "degraded") else "fails",
                   f"{state.stdout.strip() or state.stderr.strip()}, "
                   f"{time.perf_counter() - forked:.1f} s after the fork "
                   "(units masked as in tests/system/box.py)")
        failed = in_box(pid1, "systemctl", "--failed", "--no-legend", "--plain")
        units = [line.split()[0] for line in failed.stdout.splitlines() if line.strip()]
        report.add(area, "failed units", "info" if not units else "fails",
                   ", ".join(units) or "none")
        for unit in units:
            why = in_box(pid1, "journalctl", "-b", "-u", unit, "-n", "4", "--no-pager", "-q",
                         "-o", "cat")
            report.add(area, f"why {unit}", "info", why.stdout.strip().replace("\n", " | "))
        ids_seen = in_box(pid1, "sh", "-c", "cat /proc/1/uid_map; id -u")
        report.add(area, "uid map of PID 1, id inside", "info",
                   " ".join(ids_seen.stdout.split()))
        active = in_box(pid1, "systemctl", "is-active", "systemd-journald.service",
                        "systemd-logind.service", "dbus.service")
        report.add(area, "journald, logind, dbus active", "works" if active.returncode == 0
                   else "fails", " ".join(active.stdout.split()))
        cgroups = in_box(pid1, "cat", "/proc/1/cgroup")
        report.add(area, "PID 1's cgroup (own cgroup namespace)", "info",
                   " ".join(cgroups.stdout.split()))
        began = time.perf_counter()
        os.kill(pid1, signal.SIGRTMIN + 4)  # systemd in a container: poweroff
        os.waitpid(starter, 0)
        starter = 0
        report.add(area, "poweroff (SIGRTMIN+4) until PID 1 exited", "works",
                   f"{time.perf_counter() - began:.1f} s")
    finally:
        if starter:
            with contextlib.suppress(ProcessLookupError):
                os.kill(starter, signal.SIGKILL)
            os.waitpid(starter, 0)
        drain(master, console_log)
        os.close(master)
        os.close(slave)
        remove_cgroup(cgroup)
        log = scratch / "systemd-console.log"
        log.write_bytes(bytes(console_log))
        tail = bytes(console_log).decode(errors="replace").replace("\r", "").splitlines()[-6:]
        print("    console (last lines): " + " | ".join(tail), flush=True)


def wait_for_bus(pid1: int, timeout: float) -> None:
    """Until systemd's private socket answers (systemctl fails before that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if in_box(pid1, "test", "-S", "/run/systemd/private").returncode == 0:
            return
        time.sleep(0.1)


def wait_for_child_of(parent: int, timeout: float) -> int:
    """The first child of ``parent`` (PID 1 of the subhost, as the host sees it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            for child in children:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{child}/exe") == os.path.realpath(SYSTEMD):
                        return int(child)
        time.sleep(0.02)
    raise TimeoutError("systemd did not start as PID 1 of the subhost")


def drain(master: int, into: bytearray) -> None:
    while select.select([master], [], [], 0)[0]:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        into.extend(data)


# --- start timings ----------------------------------------------------------------------------

class Marks:
    """perf_counter() points (CLOCK_MONOTONIC: comparable across our processes)."""

    def __init__(self) -> None:
        self.points: list[tuple[str, float]] = []

    def __call__(self, name: str) -> None:
        self.points.append((name, time.perf_counter()))


def pid1_then_ready(live: Path, locked: bool, marks: Marks, pipes: Pipes) -> int:
    """Fork PID 1 (a new PID namespace was unshared): mounts, pivot_root, "ready", wait."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            libc.set_pdeathsig(signal.SIGKILL)
            done = finish_inside(live, locked)
            if all(value.startswith("ok") for value in done.values()):
                marks("PID 1: proc, sysfs, devpts, shm, pivot_root")
                pipes.send("ready " + json.dumps(marks.points))
                os.read(pipes.control_r, 5)
                code = 0
            else:
                pipes.send("failed " + json.dumps(done))
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def start_current(layout: Layout, _ids: IdRange, pipes: Pipes) -> int:
    """Today's start, reduced to its kernel work: namespaces, overlay of /, /dev, PID 1."""
    marks = Marks()
    marks("fork of the starting process")
    libc.set_pdeathsig(signal.SIGKILL)
    libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC | libc.CLONE_NEWCGROUP
                 | libc.CLONE_NEWNET)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    marks("unshare mount/UTS/IPC/cgroup/net")
    mount_overlay(layout.live, Path("/"), layout.upper, layout.work)
    marks("overlay of /")
    make_dev(layout.live / "dev", 0)
    marks("/dev tmpfs + nodes")
    libc.unshare(libc.CLONE_NEWPID)
    return pid1_then_ready(layout.live, False, marks, pipes)


def start_userns(layout: Layout, ids: IdRange, pipes: Pipes) -> int:
    """Variant A: user namespace, idmapped layers, host-mounted overlay, the rest inside."""
    marks = Marks()
    libc.set_pdeathsig(signal.SIGKILL)
    marks("fork of the starting process")
    userns_fd = create_userns(ids, marks, reap=False)  # the helper is reaped after PID 1
    private_mount_ns()
    marks("unshare mount")
    attach_idmapped_layers(layout, userns_fd)
    marks("idmapped clones of / and BASE")
    with mapped_creator(ids):
        mount_overlay(layout.live, layout.lower_at, layout.base_at / "upper",
                      layout.base_at / "work")
    marks("overlay of the idmapped layers")
    make_dev(layout.live / "dev", ids.base)
    marks("/dev tmpfs + nodes")
    enter_subhost_namespaces(userns_fd)
    os.close(userns_fd)
    marks("setns userns, unshare mount/UTS/IPC/cgroup/net/pid")
    return pid1_then_ready(layout.live, True, marks, pipes)


def start_bare(layout: Layout, _ids: IdRange, pipes: Pipes) -> int:
    """SPEC §7's reference: unshare of all namespaces + an overlay mount of /."""
    marks = Marks()
    marks("fork of the starting process")
    libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC | libc.CLONE_NEWCGROUP
                 | libc.CLONE_NEWNET | libc.CLONE_NEWPID)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    marks("unshare all")
    mount_overlay(layout.live, Path("/"), layout.upper, layout.work)
    marks("overlay of /")
    pipes.send("ready " + json.dumps(marks.points))
    os.read(pipes.control_r, 5)
    return 0


def detached_dev(root_id: int) -> int:
    """/dev as a detached tmpfs made by host root (its nodes work), owned by ``root_id``."""
    fsfd = fsopen("tmpfs")
    try:
        fsconfig(fsfd, FSCONFIG_SET_STRING, "mode", "755")
        fsconfig(fsfd, FSCONFIG_SET_STRING, "size", "4M")
        fsconfig(fsfd, FSCONFIG_SET_STRING, "uid", str(root_id))
        fsconfig(fsfd, FSCONFIG_SET_STRING, "gid", str(root_id))
        fsconfig(fsfd, FSCONFIG_CMD_CREATE)
        dev = fsmount(fsfd)
    finally:
        os.close(fsfd)
    for name, major, minor in DEV_NODES:
        os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
        os.chmod(name, 0o666, dir_fd=dev)
        os.chown(name, root_id, root_id + (TTY_GID if name == "tty" else 0), dir_fd=dev)
    for name in ("pts", "shm"):
        os.mkdir(name, dir_fd=dev)
        os.chown(name, root_id, root_id, dir_fd=dev)
    os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
    os.chown("ptmx", root_id, root_id, dir_fd=dev, follow_symlinks=False)
    return dev


def start_userns_one_fork(layout: Layout, ids: IdRange, pipes: Pipes) -> int:
    """Variant A with one fork, as overlay-boot forks PID 1 today.

    The starting process plays the supervisor: it forks PID 1 into a new PID namespace. PID 1
    (still host root) makes its procfs and /dev as detached mounts, then unshares its user
    namespace and waits. The supervisor writes the maps and builds the overlay as a detached
    mount over idmapped layers, and passes it over a socket; PID 1 takes its ids, unshares
    the other namespaces and attaches everything. No helper process, no MNT_LOCKED LIVE.
    """
    marks = Marks()
    marks("fork of the starting process")
    libc.set_pdeathsig(signal.SIGKILL)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    libc.unshare(libc.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            mine.close()
            libc.set_pdeathsig(signal.SIGKILL)
            code = one_fork_pid1(layout, ids, pipes, theirs, marks)
        finally:
            os._exit(code)
    theirs.close()
    marks("supervisor: fork PID 1")
    mine.recv(1)  # PID 1 is in its user namespace
    marks("PID 1: detached proc and /dev, unshare(CLONE_NEWUSER)")
    write_maps(pid, ids)
    userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    marks("supervisor: maps, ns fd")
    lower = idmapped_tree("/", userns_fd)
    base = idmapped_tree(layout.base, userns_fd)
    with mapped_creator(ids):
        live = overlay_tree(lower, base, "upper", "work")
    marks("supervisor: idmapped trees, detached overlay")
    socket.send_fds(mine, [json.dumps(marks.points).encode()], [live])
    for fd in (lower, base, live, userns_fd):
        os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def one_fork_pid1(layout: Layout, ids: IdRange, pipes: Pipes, sock: socket.socket,
                  marks: Marks) -> int:
    private_mount_ns()
    fsfd = fsopen("proc")
    fsconfig(fsfd, FSCONFIG_CMD_CREATE)
    proc = fsmount(fsfd)
    os.close(fsfd)
    dev = detached_dev(ids.base)
    libc.unshare(libc.CLONE_NEWUSER)
    sock.send(b"1")
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
    marks.points = json.loads(data)
    marks("PID 1: received the overlay")
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
                 | libc.CLONE_NEWCGROUP | libc.CLONE_NEWNET)
    live = layout.live
    libc.move_mount(fds[0], live)
    libc.move_mount(proc, live / "proc")
    libc.move_mount(dev, live / "dev")
    libc.mount("sysfs", live / "sys", "sysfs", KERNEL_FS)
    libc.mount("devpts", live / "dev/pts", "devpts", libc.MS_NOSUID | libc.MS_NOEXEC,
               f"newinstance,ptmxmode=0666,mode=620,gid={TTY_GID}")
    libc.mount("tmpfs", live / "dev/shm", "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=1777")
    os.chdir(live)
    pivot_here()
    marks("PID 1: ids, unshare, attach, sysfs, devpts, shm, pivot_root")
    if os.stat("/etc/passwd").st_uid != 0 or not os.path.exists("/proc/1/status"):
        pipes.send("failed: LIVE is not what it should be")
        return 1
    pipes.send("ready " + json.dumps(marks.points))
    os.read(pipes.control_r, 5)
    return 0


STARTS: dict[str, Callable[[Layout, IdRange, Pipes], int]] = {
    "bare: unshare all + overlay of / (SPEC 7 reference)": start_bare,
    "current: namespaces, overlay of /, /dev, PID 1 mounts + pivot_root": start_current,
    "userns (variant A): the same in a user namespace, idmapped layers": start_userns,
    "userns (variant A), one fork: supervisor builds, PID 1 attaches": start_userns_one_fork,
}


@dataclass
class Timed:
    start_ms: float
    stop_ms: float
    steps: dict[str, float]


def timed_start(start: Callable[[Layout, IdRange, Pipes], int], layout: Layout,
                ids: IdRange) -> Timed:
    """One start, from before the fork to PID 1's "ready"; then the stop until all is reaped."""
    pipes = Pipes.make()
    try:
        began = time.perf_counter()
        pid = fork_run(lambda: start(layout, ids, pipes))
        try:
            line = Lines(pipes.status_r).next(30)
            ready = time.perf_counter()
            if not line.startswith("ready "):
                raise RuntimeError(f"start failed: {line}")
            os.write(pipes.control_w, b"stop\n")
        finally:
            os.waitpid(pid, 0)
        stopped = time.perf_counter()
    finally:
        for fd in (pipes.status_r, pipes.status_w, pipes.control_r, pipes.control_w):
            os.close(fd)
    steps, previous = {}, began
    for name, at in json.loads(line.removeprefix("ready ")):
        steps[name] = (at - previous) * 1000
        previous = at
    return Timed((ready - began) * 1000, (stopped - ready) * 1000, steps)


def probe_timings(report: Report, scratch: Path, ids: IdRange, runs: int) -> None:
    print(f"\n== 5. start time, median (p25-p75) of {runs} runs, interleaved, after a warm-up")
    results: dict[str, list[Timed]] = {name: [] for name in STARTS}
    for run_no in range(runs + 1):
        for name, start in STARTS.items():
            layout = Layout(scratch / f"timing-{len(results[name])}-{start.__name__}").create()
            timed = timed_start(start, layout, ids)
            shutil.rmtree(layout.root)
            if run_no > 0:  # the first round warms caches up
                results[name].append(timed)
    for name, timings in results.items():
        report.timings[f"{name}: start"] = [t.start_ms for t in timings]
        report.timings[f"{name}: stop"] = [t.stop_ms for t in timings]
        steps = report.steps.setdefault(name, {})
        for timed in timings:
            for step, ms in timed.steps.items():
                steps.setdefault(step, []).append(ms)
        print(f"  {name}")
        print(f"    start to ready {spread([t.start_ms for t in timings])} ms, "
              f"stop to reaped {spread([t.stop_ms for t in timings])} ms")
        for step, values in steps.items():
            print(f"      {step:55} {spread(values)} ms")


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "-"
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.2f} ({q1:.2f}-{q3:.2f})"


# --- main -----------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed starts per variant (>= 20)")
    parser.add_argument("--only", choices=["fs", "upper", "inside", "systemd", "timing"],
                        action="append",
                        help="run only these parts (default: all)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("userns_prototype: run as root", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parts = set(args.only or ["fs", "upper", "inside", "systemd", "timing"])
    report = Report()
    ids = IdRange(65536 * random.randint(200, 30000))
    print(f"kernel {os.uname().release}, / is {filesystem_of('/')}, "
          f"subhost ids 0..65535 = host {ids.base}..{ids.base + ids.count - 1}, "
          f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    scratch = Path(tempfile.mkdtemp(prefix="userns-proto-", dir="/var/tmp"))
    os.chmod(scratch, 0o755)
    try:
        if "fs" in parts:
            probe_filesystems(report, scratch, ids)
        if "upper" in parts:
            probe_existing_upper(report, scratch, Sample.pick(), ids)
        if "upper" in parts:
            probe_alternatives(report, scratch, ids)
        if "inside" in parts:
            probe_started_subhost(report, scratch, Sample.pick(), ids)
        if "timing" in parts:
            probe_timings(report, scratch, ids, args.runs)
        if "systemd" in parts:
            probe_systemd(report, scratch, ids)
    finally:
        shutil.rmtree(scratch)
    counts: dict[str, int] = {}
    for finding in report.findings:
        counts[finding.result] = counts.get(finding.result, 0) + 1
    tally = ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))
    print(f"\nsummary: {tally or 'timings only'}; load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
