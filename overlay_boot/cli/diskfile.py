"""overlay-diskfile: mount a disk image (or one of its partitions) for LOWER or UPPER.

Used in a config as ``LOWER=!overlay-diskfile mnt/ disk.img 2``: overlay-boot runs it with
the subhost's BASE as working directory; it mounts partition 2 of ``disk.img`` on ``mnt``
(unless that partition is already mounted there) and prints ``mnt/``, the value to use.
Standard library only; the mount itself is done by mount(8) with ``-o loop``, so the loop
device is released again when the filesystem is unmounted.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from overlay_boot.cli.common import UsageError, run_main
from overlay_boot.errors import SubhostError
from overlay_boot.partitions import PartitionError, find_partition, read_table

PROG = "overlay-diskfile"

USAGE = f"""\
usage: {PROG} MOUNTPOINT[/SUBPATH] [DISKFILE [PARTITION]]

Mount the disk image DISKFILE, or its partition number PARTITION (1-based, as fdisk
numbers them; MBR including logical partitions, or GPT), on MOUNTPOINT unless it is
already mounted there, then print the first argument unchanged as the path to use.
The filesystem type is detected by mount(8); the image is mounted read-write unless
it is not writable. Without DISKFILE the path is just printed.

MOUNTPOINT is the first component of a relative path (resolved against the working
directory, which is BASE when overlay-boot runs it): "mnt/", "mnt/upper" and
"mnt/some/path" all mount on "mnt". For an absolute path it is the prefix where this
image is already mounted, else the longest existing prefix, which must then be an
empty directory.

Config examples:
  LOWER=!{PROG} mnt/ disk.img 2
  UPPER=!{PROG} mnt/upper disk.img
  WORK=mnt/work

Exit status 0 on success, 1 on any error (message on stderr), 64 on wrong usage.
"""

_LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: device, inode, rdevice, offset, sizelimit; number, encrypt type,
# key size, flags; file name, crypt name, key; init[2]
_LOOP_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")


class DiskfileError(SubhostError):
    """A failure to report on stderr; the command exits 1."""


@dataclass(frozen=True)
class Target:
    """What to mount: an image file (its identity) and the byte range of the filesystem."""

    label: str  # for messages: "disk.img" or "disk.img partition 2"
    path: str  # absolute path of the image
    dev: int
    ino: int
    offset: int
    size: int | None  # None: up to the end of the image


@dataclass(frozen=True)
class MountEntry:
    mount_point: str
    root: str
    major: int
    minor: int
    fstype: str
    source: str


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return run_main(lambda: _main(args), PROG)


def _main(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if args and args[0] == "--":
        args = args[1:]
    if not 1 <= len(args) <= 3 or not args[0] or (len(args) > 1 and not args[1]):
        raise UsageError(f"{USAGE.splitlines()[0]} (--help tells more)")
    path = args[0]
    if len(args) == 1 or not _mounting_wanted():
        print(path)
        return 0
    partition = None
    if len(args) == 3:
        if not args[2].isdigit() or int(args[2]) < 1:
            raise UsageError(f"partition must be a number from 1, not {args[2]!r}")
        partition = int(args[2])
    ensure_mounted(path, args[1], partition)
    print(path)
    return 0


def _mounting_wanted() -> bool:
    """1.6.4 mounted only when run by overlay-boot itself (``ACTION=overlay-boot``): other
    tools that read the config (overlay-stop, overlay-go) got the path without a mount. We
    mount unless ``ACTION`` names another overlay tool, so running it by hand works too."""
    action = os.environ.get("ACTION", "")
    return not action.startswith("overlay-") or action == "overlay-boot"


def ensure_mounted(path: str, diskfile: str, partition: int | None) -> str:
    """Mount the image (partition) for ``path`` unless already there; return the mount point."""
    target = _target(diskfile, partition)
    with open(target.path, "rb") as lock:
        # Two subhosts starting at once with the same image must not both mount it.
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        mounts = read_mountinfo()
        if os.path.isabs(path):
            mount_point, done = _absolute_mount_point(path, target, mounts)
        else:
            mount_point, done = _relative_mount_point(path, target, mounts)
        if not done:
            _mount(target, mount_point)
    return mount_point


def _target(diskfile: str, partition: int | None) -> Target:
    label = diskfile if partition is None else f"{diskfile} partition {partition}"
    image = os.path.abspath(diskfile)
    try:
        st = os.stat(image)
    except OSError as exc:
        raise DiskfileError(f"disk image {diskfile}: {exc.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise DiskfileError(f"disk image {diskfile}: not a regular file")
    if partition is None:
        return Target(label, image, st.st_dev, st.st_ino, 0, None)
    try:
        part = find_partition(image, partition)
    except PartitionError as exc:
        raise DiskfileError(f"{label}: {exc}") from None
    except OSError as exc:
        raise DiskfileError(f"disk image {diskfile}: {exc.strerror}") from None
    return Target(label, image, st.st_dev, st.st_ino, part.offset, part.size)


def _relative_mount_point(path: str, target: Target,
                          mounts: list[MountEntry]) -> tuple[str, bool]:
    """The first component of the path (after any leading ``..``) under the working dir."""
    parts = [p for p in os.path.normpath(path).split("/") if p != "."]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    if ups == len(parts):
        raise DiskfileError(f"{path!r} names no mount point below the working directory")
    mount_point = os.path.realpath(os.path.join(*parts[:ups + 1]))
    if not os.path.isdir(mount_point):
        raise DiskfileError(f"mount point {mount_point} for {target.label} "
                            "is not an existing directory")
    top = _top_mount(mounts, mount_point)
    if top is not None:
        if is_mount_of(top, target):
            return mount_point, True
        raise _occupied(mount_point, top, target)
    return mount_point, False


def _absolute_mount_point(path: str, target: Target,
                          mounts: list[MountEntry]) -> tuple[str, bool]:
    prefixes = []
    prefix = os.path.normpath(path)
    while prefix != "/":
        prefixes.append(prefix)
        prefix = os.path.dirname(prefix)
    for prefix in prefixes:
        real = os.path.realpath(prefix)
        top = _top_mount(mounts, real) if os.path.isdir(real) else None
        if top is not None and is_mount_of(top, target):
            return real, True
    existing = next((os.path.realpath(p) for p in prefixes if os.path.isdir(p)), None)
    if existing is None or existing == "/":
        raise DiskfileError(f"no existing directory in {path} to mount {target.label} on")
    top = _top_mount(mounts, existing)
    if top is not None:
        raise _occupied(existing, top, target)
    try:
        empty = not os.listdir(existing)
    except OSError as exc:
        raise DiskfileError(f"mount point {existing}: {exc.strerror}") from None
    if not empty:
        raise DiskfileError(f"refusing to mount {target.label} on {existing}: not an empty "
                            f"directory (its files would be hidden); for {path}, create "
                            "the intended mount point first")
    return existing, False


def _occupied(mount_point: str, top: MountEntry, target: Target) -> DiskfileError:
    return DiskfileError(f"cannot mount {target.label} on {mount_point}: {top.source} "
                         f"({top.fstype}) is already mounted there")


def _mount(target: Target, mount_point: str) -> None:
    options = "loop"
    if target.size is not None:
        options += f",offset={target.offset},sizelimit={target.size}"
    cmd = ["mount", "-o", options, "--", target.path, mount_point]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise DiskfileError(f"cannot run mount for {target.label}: {exc.strerror}") from None
    output = " ".join((done.stderr + done.stdout).split())  # one line for the config error
    if done.returncode != 0:
        hint = ""
        if target.size is None and _has_partition_table(target.path):
            hint = " (the image has a partition table: give a partition number)"
        raise DiskfileError(f"cannot mount {target.label} on {mount_point}: "
                            f"{output or f'mount exited with status {done.returncode}'}{hint}")
    if output:
        sys.stderr.write(f"{PROG}: {output}\n")  # e.g. "write-protected, mounted read-only"


def _has_partition_table(image: str) -> bool:
    try:
        with open(image, "rb") as f:
            return read_table(f) is not None
    except (OSError, PartitionError):
        return False


def read_mountinfo(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """The mount table in mount order (a later entry on the same mount point is on top)."""
    entries = []
    with open(path, "rb") as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index(b"-", 6)
                major, minor = fields[2].split(b":")
                entries.append(MountEntry(
                    mount_point=_unescape(fields[4]), root=_unescape(fields[3]),
                    major=int(major), minor=int(minor), fstype=_unescape(fields[sep + 1]),
                    source=_unescape(fields[sep + 2]) if len(fields) > sep + 2 else ""))
            except (ValueError, IndexError):
                continue
    return entries


def _unescape(field: bytes) -> str:
    """mountinfo writes space, tab, newline and backslash as three octal digits."""
    out = bytearray()
    i = 0
    while i < len(field):
        octal = field[i + 1:i + 4]
        if field[i] == 0x5C and len(octal) == 3 and all(0x30 <= c <= 0x37 for c in octal):
            out.append(int(octal, 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def _top_mount(mounts: list[MountEntry], mount_point: str) -> MountEntry | None:
    found = None
    for entry in mounts:
        if entry.mount_point == mount_point:
            found = entry
    return found


def is_mount_of(entry: MountEntry, target: Target) -> bool:
    """Whether the mount is the root of the target's filesystem on a loop device of it."""
    if entry.root != "/":
        return False
    sys_loop = Path(f"/sys/dev/block/{entry.major}:{entry.minor}")
    if not (sys_loop / "loop").is_dir():
        return False
    try:
        device = f"/dev/{sys_loop.resolve().name}"
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = fcntl.ioctl(fd, _LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
        finally:
            os.close(fd)
    except OSError:
        return False
    lo_dev, lo_ino, _, lo_offset, lo_sizelimit = _LOOP_INFO64.unpack(raw)[:5]
    if (lo_dev, lo_ino, lo_offset) != (target.dev, target.ino, target.offset):
        return False
    return lo_sizelimit == 0 or lo_sizelimit == target.size


if __name__ == "__main__":
    sys.exit(main())
