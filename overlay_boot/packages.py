"""Which Debian packages a subhost's changes touch, and how its installed versions differ.

The host's package file lists (``/var/lib/dpkg/info/*.list``, read from the top lower layer that
has them) say which package owns each changed path; the subhost's ``/var/lib/dpkg/status``, when
it is copied up into UPPER (read by descriptor, never following a symlink), is compared with the
lower one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from .drift import Entry, Layers, open_in_upper

INFO_DIR = "var/lib/dpkg/info"
STATUS = "var/lib/dpkg/status"
MAX_STATUS = 256 << 20


@dataclass
class PackageChange:
    """One package: its files the subhost changes, and its versions when they differ."""

    package: str
    files: list[Entry] = field(default_factory=list)
    host_version: str | None = None
    subhost_version: str | None = None
    version_differs: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"package": self.package,
                "files": [{"path": e.path, "kind": e.kind, "shadowed": e.shadowed}
                          for e in self.files],
                "host_version": self.host_version, "subhost_version": self.subhost_version,
                "version_differs": self.version_differs}


def lower_path(layers: Layers, rel: str) -> str | None:
    """REL in the topmost lower layer that has it."""
    for layer in layers.lower:
        path = os.path.join(layer, rel)
        if os.path.lexists(path):
            return path
    return None


def list_files(info_dir: str, only: Iterable[str] | None = None) -> dict[str, str]:
    """Package name → its ``.list`` file in INFO_DIR (all, or those of ONLY)."""
    wanted = None if only is None else set(only)
    found = {}
    try:
        names = os.listdir(info_dir)
    except OSError:
        return {}
    for name in names:
        if name.endswith(".list"):
            package = name[:-5]
            if wanted is None or package in wanted or package.split(":")[0] in wanted:
                found[package] = os.path.join(info_dir, name)
    return found


def read_list(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return [line.rstrip("\n") for line in f if line.startswith("/")]
    except OSError:
        return []


def owners(layers: Layers, entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Package → the entries that change its files (an opaque directory changes every file of
    the package under it)."""
    info = lower_path(layers, INFO_DIR)
    if info is None:
        return {}
    changed = {e.path: e for e in entries if e.kind != "added"}
    opaque = {e.path: e for e in changed.values() if e.kind == "opaque"}
    result: dict[str, list[Entry]] = {}
    for package, list_path in sorted(list_files(info).items()):
        hit: dict[str, Entry] = {}
        for path in read_list(list_path):
            entry = changed.get(path)
            if entry is None and opaque:
                entry = _under_opaque(path, opaque)
            if entry is not None:
                hit[entry.path] = entry
        if hit:
            result[package] = sorted(hit.values(), key=lambda e: e.path)
    return result


def _under_opaque(path: str, opaque: dict[str, Entry]) -> Entry | None:
    parent = os.path.dirname(path)
    while parent != "/":
        if parent in opaque:
            return opaque[parent]
        parent = os.path.dirname(parent)
    return None


def parse_status(text: str) -> dict[str, str]:
    """Installed packages of a dpkg status file: name (``name:arch`` for Multi-Arch: same,
    as dpkg names their lists) → version."""
    installed = {}
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        package = fields.get("package")
        status = fields.get("status", "").split()
        if not package or len(status) != 3 or status[2] != "installed":
            continue
        if fields.get("multi-arch") == "same" and fields.get("architecture"):
            package = f"{package}:{fields['architecture']}"
        installed[package] = fields.get("version", "")
    return installed


def read_upper_status(upper: str) -> str | None:
    """The subhost's own dpkg status when it is copied up into UPPER (a regular file)."""
    import stat

    try:
        upper_fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = open_in_upper(upper_fd, STATUS, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    finally:
        os.close(upper_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_STATUS).decode("utf-8", "replace")
    finally:
        os.close(fd)


def read_lower_status(layers: Layers) -> str | None:
    path = lower_path(layers, STATUS)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(MAX_STATUS)
    except OSError:
        return None


def version_changes(host: dict[str, str], subhost: dict[str, str]) -> dict[str, tuple]:
    """Package → (host version or None, subhost version or None), where they differ."""
    return {p: (host.get(p), subhost.get(p)) for p in sorted(host.keys() | subhost.keys())
            if host.get(p) != subhost.get(p)}


def package_changes(layers: Layers, entries: Iterable[Entry]) -> list[PackageChange]:
    """Per package: the files the subhost changes and, when the subhost's dpkg status is copied
    up, a version that differs from the host's."""
    changes: dict[str, PackageChange] = {}
    for package, files in owners(layers, entries).items():
        changes[package] = PackageChange(package, files)
    upper_text = read_upper_status(layers.upper)
    lower_text = read_lower_status(layers)
    if upper_text is not None and lower_text is not None:
        host = parse_status(lower_text)
        for package, (hv, sv) in version_changes(host, parse_status(upper_text)).items():
            change = changes.setdefault(package, PackageChange(package))
            change.host_version, change.subhost_version = hv, sv
            change.version_differs = True
    return [changes[p] for p in sorted(changes)]
