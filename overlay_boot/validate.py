"""Checks of a parsed `Config` against the host, before anything is created.

Directories and their filesystems, the bridges named in CABLES, SHARE sources, LOG, and the
ownership and modes of the config file (its ``!`` values run as root; see `trust`). Standard
library only.
Interface names already in use are the runtime's business (it removes stale ends of the same
subhost and reports anything else).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from overlay_boot import trust
from overlay_boot.config import Config, IdRange
from overlay_boot.errors import ConfigError, Problem
from overlay_boot.naming import SYS_CLASS_NET


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
        if why and any(c in config.base.name for c in "*?["):
            why += " (a glob in BASE is not expanded, as 1.6.4's unquoted $BASE was: write " \
                   "the directory's name)"
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
        for why in _log_problems(config):
            add("LOG", f"LOG {config.log} {why}")

    if config.vlans and not vlan_supported():
        first = config.vlans[0]
        add(
            "CABLES",
            f"VLAN {first.host_if} needs the kernel's 802.1Q support (module 8021q), "
            "which is not loaded and could not be loaded here (the kernel may lack it, and "
            "overlay-boot@.service may not load modules): load it on the host with "
            "`modprobe 8021q` (at boot: a line in /etc/modules-load.d/)",
            first.line,
        )

    for share in config.shares:
        exists, whys = trust.source_problems(share.source)
        if not exists:
            add("SHARE", f"SHARE source {share.source} does not exist", share.line)
        for why in whys:
            add("SHARE", f"SHARE source {share.source}: {why}", share.line)

    if config.userns is not None:
        for var, why, line in userns_problems(config, bad):
            add(var, why, line)

    return problems


# --- USERNS= -------------------------------------------------------------------------------

OVERLAYFS = "overlay"


def userns_problems(config: Config, bad: frozenset[str] | set[str] = frozenset()
                    ) -> list[tuple[str, str, int | None]]:
    """(variable, why, line) for what stops ``config``'s USERNS= from working: docs/USERNS.md.

    ``bad``: variables whose directories are missing already (not probed again).
    """
    assert config.userns is not None
    ids = config.userns
    found: list[tuple[str, str, int | None]] = []

    def add(var: str, why: str, line: int | None = None) -> None:
        found.append((var, why, line))

    if config.variant != "overlay":
        add("USERNS", f"needs an overlay root (LOWER and UPPER), not the {config.variant} "
            "variant: LIVE given mounted or UPPER as the root cannot be idmapped")
    if config.base is not None and not _dir_problem(config.base):
        why = _private_base_problem(config.base)
        if why:
            add("BASE", why)
    for other, where in _other_ranges(config):
        if ids.overlaps(other):
            add("USERNS", f"host ids {ids.base}..{ids.end - 1} overlap those of {where} "
                f"({other.base}..{other.end - 1}): each subhost needs a range of its own")
    layers: list[tuple[str, Path, int | None]] = []
    if config.variant == "overlay":
        layers += [("LOWER", p, None) for p in config.lower if "LOWER" not in bad]
        if config.upper and config.work and not bad & {"UPPER", "WORK"}:
            from overlay_boot.linux import userns

            layers.append(("UPPER", Path(userns.layer_parent(config.upper, config.work)), None))
    layers += [("SHARE", s.source, s.line) for s in config.shares if os.path.exists(s.source)]
    for var, path, line in layers:
        if var == "LOWER" and _fstype(path) == OVERLAYFS:
            add(var, f"{var} {path} is on an overlay, which cannot be idmapped (USERNS=)", line)
            layers = [x for x in layers if x[1] != path]
    for var, path, why in _idmap_refusals(ids, [(v, p) for v, p, _ in layers]):
        if var == "USERNS":
            add(var, why)
            continue
        line = next((ln for v, p, ln in layers if v == var and p == path), None)
        add(var, f"{var} {path}: its filesystem ({_fstype(path) or '?'}) refuses an idmapped "
            f"mount ({why}), which USERNS= needs", line)
    return found


def _private_base_problem(base: Path) -> str | None:
    """BASE must be root's and 0700: files in UPPER are host-native (a setuid-root program
    made inside is one of host root's on disk), so no host user may reach them."""
    st = os.stat(base)
    if st.st_uid != 0 or stat.S_IMODE(st.st_mode) & 0o077:
        return (f"BASE {base} must be owned by root with mode 0700 for USERNS= (it is "
                f"uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}): setuid programs and "
                f"device nodes made inside are host-native in UPPER; run chown root: {base} "
                f"&& chmod 700 {base}")
    return None


def _other_ranges(config: Config) -> list[tuple[IdRange, str]]:
    """USERNS ranges of the other known configs (parsed, never evaluated) and running
    subhosts, with where each comes from."""
    from overlay_boot.config import parse_userns
    from overlay_boot.neighbours import others

    known = others(config)
    ranges = [(other.userns, f"subhost {other.name} ({path})")
              for other, path in known.configs if other.userns is not None]
    for record in known.records:
        ids, _ = parse_userns(record.userns) if record.userns else (None, None)
        if ids is not None:
            ranges.append((ids, f"running subhost {record.name}"))
    return ranges


def _fstype(path: Path) -> str | None:
    """The filesystem type of the mount ``path`` is on (by device number in mountinfo)."""
    try:
        dev = os.stat(path).st_dev
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[2] == wanted and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return None


def _idmap_refusals(ids: IdRange, layers: list[tuple[str, Path]]
                    ) -> list[tuple[str, Path, str]]:
    """Each layer whose filesystem refuses ``MOUNT_ATTR_IDMAP``, and why: probed on a clone
    that is closed again (as root only; others cannot tell)."""
    if os.geteuid() != 0 or not layers:
        return []
    from overlay_boot.linux import userns

    try:
        userns_fd = userns.new_userns(ids)
    except OSError as exc:
        return [("USERNS", Path("/"), f"no user namespace can be made: {exc.strerror}")]
    try:
        return [(var, path, why) for var, path in layers
                if (why := userns.probe_idmap(path, userns_fd))]
    finally:
        os.close(userns_fd)


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


def _log_problems(config: Config) -> list[str]:
    """Why root must not append to the LOG= file (its directory may be created)."""
    assert config.log is not None
    problems = []
    inside = _log_inside(config)
    if inside:
        var, path = inside
        problems.append(f"is inside {var} {path}, where the subhost (or whoever writes there) "
                        "could make it a symlink to any host file: put LOG outside UPPER, "
                        "WORK, LIVE and SHARE sources")
    return problems + trust.log_path_problems(config.log)


def _log_inside(config: Config) -> tuple[str, Path] | None:
    """The directory (UPPER, WORK, LIVE, a SHARE source) that LOG is in, as written or
    resolved, if any."""
    assert config.log is not None
    places: list[tuple[str, Path | None]] = [("UPPER", config.upper), ("LIVE", config.live)]
    if config.variant == "overlay":
        places.append(("WORK", config.work))
    places += [("SHARE source", s.source) for s in config.shares]
    log_real = os.path.join(os.path.realpath(config.log.parent), config.log.name)
    for var, place in places:
        if place is None:
            continue
        for log in (str(config.log), log_real):
            for where in (os.path.normpath(place), os.path.realpath(place)):
                if log == where or log.startswith(where.rstrip("/") + "/"):
                    return var, place
    return None


def host_warnings(config: Config) -> list[str]:
    """What works but should not: an UPPER that unprivileged host users can reach."""
    if config.upper is None or _first_closed_dir(config.upper) is not None:
        return []
    upper = os.path.realpath(config.upper)
    base = os.path.realpath(config.base) if config.base is not None else None
    close = base if base and upper.startswith(base.rstrip("/") + "/") else upper
    return [f"{config.path}: UPPER {config.upper} can be reached by unprivileged host users "
            "(every directory on its way lets others through): setuid programs and device "
            f"nodes made in the subhost are usable by them; run chmod 700 {close}"]


def _first_closed_dir(path: Path) -> str | None:
    """The first directory on the way to PATH (itself included) that only its owner (and
    group root) may pass through; None when there is none, or it cannot be told."""
    real = os.path.realpath(path)
    current = "/"
    for part in [""] + real.strip("/").split("/"):
        current = os.path.join(current, part) if part else current
        try:
            st = os.stat(current)
        except OSError:
            return current
        if not st.st_mode & 0o001 and (st.st_gid == 0 or not st.st_mode & 0o010):
            return current
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
