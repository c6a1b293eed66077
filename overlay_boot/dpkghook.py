"""The apt hook: after dpkg changed host packages, report in the journal, per running subhost,
the files of those packages that the subhost shadows (its UPPER has its own copy, a whiteout or
an opaque directory over them).

``DPkg::Pre-Invoke`` runs ``overlay-diff --dpkg-hook pre``: a time stamp. ``DPkg::Post-Invoke``
runs ``overlay-diff --dpkg-hook post``: the packages whose file list dpkg rewrote since the stamp
are the changed ones. Bounded in time (`DEADLINE`, and the hook's timeout(1)); always exits 0:
a report must never fail apt.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import time
from dataclasses import dataclass

from . import state
from .drift import DIR_FLAGS, Layers, is_opaque_fd, is_whiteout_device, layers_of
from .errors import printable

INFO_DIR = os.environ.get("OVERLAY_BOOT_DPKG_INFO", "/var/lib/dpkg/info")
JOURNAL_SOCKET = os.environ.get("OVERLAY_BOOT_JOURNAL_SOCKET", "/run/systemd/journal/socket")
DEADLINE = float(os.environ.get("OVERLAY_BOOT_DPKG_HOOK_DEADLINE", "20"))
IDENTIFIER = "overlay-boot-dpkg"
SHOWN = 20  # files named per subhost and package; the rest are counted


def stamp_path() -> str:
    return str(state.RUN_DIR / "dpkg-hook.stamp")


@dataclass(frozen=True)
class Finding:
    subhost: str
    package: str
    paths: tuple[str, ...]


def main(phase: str) -> int:
    try:
        if phase == "pre":
            _write_stamp()
        else:
            post(time.monotonic() + DEADLINE)
    except Exception as exc:  # noqa: BLE001 - never fail apt
        _journal(f"dpkg hook failed: {type(exc).__name__}: {exc}", priority=4)
    return 0


def _write_stamp() -> None:
    state.RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(stamp_path(), "w") as f:
        f.write(f"{time.time_ns()}\n")


def changed_packages(since_ns: int) -> dict[str, list[str]]:
    """Package → its files, for the packages whose dpkg file list changed at/after SINCE_NS."""
    from .packages import read_list

    changed = {}
    try:
        names = os.listdir(INFO_DIR)
    except OSError:
        return {}
    for name in names:
        if not name.endswith(".list"):
            continue
        path = os.path.join(INFO_DIR, name)
        try:
            if os.stat(path).st_mtime_ns >= since_ns:
                changed[name[:-5]] = read_list(path)
        except OSError:
            continue
    return changed


def post(deadline: float) -> list[Finding]:
    try:
        with open(stamp_path()) as f:
            since = int(f.read().strip())
        os.unlink(stamp_path())
    except (OSError, ValueError):
        since = time.time_ns() - 600 * 1_000_000_000  # no stamp: the last ten minutes
    packages = changed_packages(since)
    findings: list[Finding] = []
    if not packages:
        return findings
    for record in state.running():
        if time.monotonic() > deadline:
            _journal("dpkg hook: out of time; not every subhost was checked", priority=4)
            break
        try:
            layers = _layers(record.config)
        except Exception as exc:  # noqa: BLE001 - the others are still reported
            _journal(f"subhost {record.name}: not checked after the package change: {exc}",
                     priority=4)
            continue
        if "/" not in layers.lower:
            continue  # the host's packages are not below it
        for package, files in sorted(packages.items()):
            hit = shadowed_files(layers.upper, files, deadline)
            if hit:
                findings.append(Finding(record.name, package, tuple(hit)))
    for f in findings:
        names = ", ".join(printable(p) for p in f.paths[:SHOWN])
        more = f" and {len(f.paths) - SHOWN} more" if len(f.paths) > SHOWN else ""
        message = (f"subhost {f.subhost} shadows {len(f.paths)} file(s) of the just changed "
                   f"package {f.package}: {names}{more} (overlay-diff --shadowed "
                   f"{f.subhost}; overlay-reset)")
        _journal(message, priority=4, subhost=f.subhost, package=f.package)
    if findings:
        subhosts = sorted({f.subhost for f in findings})
        sys.stderr.write(f"overlay-boot: subhost(s) {', '.join(subhosts)} shadow files of the "
                         f"changed packages (journalctl -t {IDENTIFIER})\n")
    return findings


def _layers(config_path: str) -> Layers:
    from .config import load_config

    return layers_of(load_config(config_path))


def shadowed_files(upper: str, files: list[str], deadline: float) -> list[str]:
    """Those of FILES (absolute, inside the subhost) that UPPER shadows: a non-directory at the
    path (copy or whiteout), or an opaque directory at it or above it. Read by descriptor."""
    by_parent: dict[str, list[str]] = {}
    for path in files:
        parent, _, name = path.rstrip("/").rpartition("/")
        if name:
            by_parent.setdefault(parent, []).append(name)
    upper_fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    found = []
    try:
        for parent, names in sorted(by_parent.items()):
            if time.monotonic() > deadline:
                break
            fd, opaque_above = _open_parent(upper_fd, parent)
            if fd is None:
                continue
            try:
                for name in names:
                    if _shadows(fd, name, opaque_above):
                        found.append(f"{parent}/{name}")
            finally:
                os.close(fd)
    finally:
        os.close(upper_fd)
    return found


def _open_parent(upper_fd: int, parent: str) -> tuple[int | None, bool]:
    fd = os.dup(upper_fd)
    opaque = False
    for part in (p for p in parent.split("/") if p):
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None, False
        os.close(fd)
        fd = child
        opaque = opaque or is_opaque_fd(fd)
    return fd, opaque


def _shadows(dir_fd: int, name: str, opaque_above: bool) -> bool:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return opaque_above
    if not stat.S_ISDIR(st.st_mode):
        return True
    if opaque_above or is_whiteout_device(st):
        return True
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        return is_opaque_fd(fd)
    finally:
        os.close(fd)


def _journal(message: str, *, priority: int = 6, **fields: str) -> None:
    """One entry in the journal (native protocol), or on stderr without a journal."""
    lines = [f"MESSAGE={printable(message)}", f"PRIORITY={priority}",
             f"SYSLOG_IDENTIFIER={IDENTIFIER}"]
    lines += [f"OVERLAY_BOOT_{key.upper()}={printable(value)}" for key, value in fields.items()]
    data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(data, JOURNAL_SOCKET)
    except OSError:
        sys.stderr.write(f"{IDENTIFIER}: {message}\n")
