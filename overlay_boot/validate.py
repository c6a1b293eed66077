"""Checks of a parsed `Config` against the host, before anything is created.

Directories and their filesystems, the bridges named in CABLES, SHARE sources, and the
ownership and modes of the config file (its ``!`` values run as root; see `trust`).
Standard library only.
Interface names already in use are the runtime's business (it removes stale ends of the same
subhost and reports anything else).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from overlay_boot import trust
from overlay_boot.config import Config
from overlay_boot.errors import ConfigError, Problem

SYS_CLASS_NET = Path("/sys/class/net")


def check_host(config: Config, *, sys_class_net: Path = SYS_CLASS_NET) -> list[Problem]:
    """Every problem of ``config`` on this host (empty when it can start)."""
    problems: list[Problem] = []
    where = str(config.path)

    def add(var: str | None, message: str, line: int | None = None) -> None:
        if line is None and var is not None:
            line = config.lines.get(var)
        problems.append(Problem(where, message, var, line))

    problems += trust.config_file_problems(config.path)

    if config.base is not None:
        why = _dir_problem(config.base)
        if why:
            add("BASE", f"BASE {config.base} {why}")

    variant = config.variant
    dirs: list[tuple[str, Path | None]] = [("LIVE", config.live)]
    if variant != "premounted":
        dirs.append(("UPPER", config.upper))
    if variant == "overlay":
        dirs.append(("WORK", config.work))
        dirs += [("LOWER", p) for p in config.lower]
    bad: set[str] = set()
    for var, path in dirs:
        if path is None:
            continue
        why = _dir_problem(path)
        if why:
            add(var, f"{var} {path} {why}")
            bad.add(var)
    if variant == "overlay" and len(config.lower) > 1 and "LOWER" not in bad:
        why = _nested_layers(config.lower)
        if why:
            add("LOWER", why)
    if variant == "overlay" and config.upper and config.work and not bad & {"UPPER", "WORK"}:
        why = _work_problem(config.upper, config.work)
        if why:
            add("WORK", why)

    for bridge in config.bridges:
        dev = sys_class_net / bridge
        if not dev.exists():
            add("CABLES", f"bridge {bridge} does not exist")
        elif not (dev / "bridge").is_dir():
            add("CABLES", f"{bridge} exists but is not a bridge")

    if config.log is not None:
        why = _log_problem(config.log)
        if why:
            add("LOG", f"LOG {config.log} {why}")

    if config.vlans and not vlan_supported():
        first = config.vlans[0]
        add(
            "CABLES",
            f"VLAN {first.host_if} needs the kernel's 802.1Q support (module 8021q), "
            "which this kernel does not have",
            first.line,
        )

    for share in config.shares:
        if not os.path.exists(share.source):
            add("SHARE", f"SHARE source {share.source} does not exist", share.line)

    return problems


def vlan_supported(proc_net: Path = Path("/proc/net")) -> bool:
    """Whether 802.1Q VLANs can be made; loads module 8021q if the kernel has it as a module."""
    if (proc_net / "vlan").is_dir():
        return True
    if Path("/sbin/modprobe").exists():
        import subprocess

        subprocess.run(
            ["/sbin/modprobe", "-q", "8021q"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    return (proc_net / "vlan").is_dir()


def _nested_layers(layers: tuple[Path, ...]) -> str | None:
    """Lower layers one inside the other on one filesystem, which overlayfs refuses (ELOOP)."""
    resolved = [(p, os.path.realpath(p), os.stat(p).st_dev) for p in layers]
    for i, (a, real_a, dev_a) in enumerate(resolved):
        for b, real_b, dev_b in resolved[i + 1:]:
            if dev_a != dev_b:
                continue
            outer, inner = sorted((real_a, real_b), key=len)
            if inner == outer or inner.startswith(outer.rstrip("/") + "/"):
                return (f"layers {a} and {b} are nested on one filesystem, which overlayfs "
                        "refuses: put the upper one on a filesystem of its own")
    return None


def _log_problem(path: Path) -> str | None:
    """Why the LOG= file cannot be appended to, if it can't (its directory may be created)."""
    if path.is_dir():
        return "is a directory"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"cannot be created: {parent} is not a directory"
    return None


def require_valid(config: Config) -> None:
    """Raise `ConfigError` with every problem of ``config`` on this host."""
    problems = check_host(config)
    if problems:
        raise ConfigError(problems)


def _dir_problem(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as e:
        return f"is not accessible: {e.strerror or e}"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    return None


def _work_problem(upper: Path, work: Path) -> str | None:
    """overlayfs wants WORK on UPPER's filesystem, and neither inside the other."""
    try:
        if os.stat(upper).st_dev != os.stat(work).st_dev:
            return (f"WORK {work} is not on the same filesystem as UPPER {upper} "
                    "(overlayfs needs both on one filesystem)")
    except OSError as e:
        return f"cannot compare WORK and UPPER filesystems: {e.strerror or e}"
    u, w = os.path.realpath(upper), os.path.realpath(work)
    if u == w:
        return f"WORK {work} and UPPER {upper} are the same directory"
    if w.startswith(u.rstrip("/") + "/") or u.startswith(w.rstrip("/") + "/"):
        return f"WORK {work} and UPPER {upper} must not be inside one another"
    return None
