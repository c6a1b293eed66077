"""Where subhost configurations are: ``/etc/overlay-boot/*.conf`` and ``/etc/subhosts.conf``.

Standard library only (the generator imports this). Discovery only lists files; parsing is
`config`'s job. ``/etc/subhosts.conf`` is 1.6.4's boot list: config paths, one or more per
line, ``#`` starts a comment; the subhosts listed there are also started at boot.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from overlay_boot import naming
from overlay_boot.config import MAX_SIZE, base_dir, read_value, real_dir
from overlay_boot.errors import ConfigError, Problem
from overlay_boot.record import Record

CONFIG_DIR = "/etc/overlay-boot"
SUBHOSTS_CONF = "/etc/subhosts.conf"
CONFIG_DIR_ENV = "OVERLAY_BOOT_CONFIG_DIR"  # overrides, for tests: ':'-separated directories
SUBHOSTS_CONF_ENV = "OVERLAY_BOOT_SUBHOSTS_CONF"


class Found(Record):
    """A configuration file to consider."""

    path: Path  # absolute, as listed (not symlink-resolved)
    origin: str  # "dir" or "subhosts.conf" (no typing.Literal: the import costs 2.5 ms)
    wanted: bool  # listed in subhosts.conf: started at boot


def config_dirs() -> list[Path]:
    value = os.environ.get(CONFIG_DIR_ENV)
    if value:
        return [Path(d) for d in value.split(":") if d]
    return [Path(CONFIG_DIR)]


def subhosts_conf() -> Path:
    return Path(os.environ.get(SUBHOSTS_CONF_ENV) or SUBHOSTS_CONF)


def _dir_entries(directory: Path) -> list[Path]:
    """``DIR/*.conf`` as the shell glob sees it (no hidden files), sorted; files only."""
    absdir = os.path.abspath(directory)
    try:
        with os.scandir(absdir) as it:
            # d_type tells a regular file without a stat; a symlink is followed (stat).
            # A dangling symlink is kept: loading it reports why it is unusable.
            names = [e.name for e in it
                     if not e.name.startswith(".") and e.name.endswith(".conf") and _listed(e)]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfigError(Problem(str(directory), f"cannot list: {e.strerror or e}")) from None
    sep = "" if absdir.endswith("/") else "/"
    return [Path(f"{absdir}{sep}{name}") for name in sorted(names)]


def _listed(entry: os.DirEntry) -> bool:
    """A file, or a symlink that leads nowhere (a loop, a dangling link)."""
    try:
        if entry.is_file():
            return True
    except OSError:
        pass
    return entry.is_symlink() and not os.path.exists(entry.path)


def read_subhosts_conf(path: Path, problems: list[Problem] | None = None) -> list[Path]:
    """Config paths listed in ``path`` (none when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return []
    except OSError as e:
        _report(problems, Problem(str(path), f"cannot read: {e.strerror or e}"))
        return []
    listed = []
    for number, line in enumerate(text.splitlines(), start=1):
        for word in line.split("#", 1)[0].split():
            if not word.startswith("/"):
                _report(problems, Problem(str(path), f"{word!r} is not an absolute path; "
                                                     "ignored", line=number))
                continue
            listed.append(Path(word))  # as given: ".." is the kernel's, as for 1.6.4
    return listed


def _report(problems: list[Problem] | None, problem: Problem) -> None:
    if problems is None:
        raise ConfigError(problem)
    problems.append(problem)


def _identity(path: Path, real_dirs: dict[str, str] | None = None) -> object:
    """One config is one file read from one directory: two symlinks to one template in two
    subhost directories are two subhosts (a relative BASE starts from each link's directory),
    a link in /etc/overlay-boot and its target are one (the link is followed).

    ``real_dirs`` caches the real path of each config directory across calls (hundreds of
    configs usually share one)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(path)
            return (st.st_dev, st.st_ino, os.path.realpath(base_dir(path)))
    except OSError:
        return os.path.realpath(path)
    parent = os.path.dirname(path)  # base_dir of a config that is no symlink
    return (st.st_dev, st.st_ino,
            os.path.realpath(parent) if real_dirs is None else real_dir(parent, real_dirs))


def discover(*, dirs: Iterable[Path] | None = None, subhosts: Path | None = None,
             problems: list[Problem] | None = None) -> list[Found]:
    """Every configuration file, directories first (each sorted), then subhosts.conf.

    A file reached twice (e.g. a symlink in the directory to a file also listed in
    subhosts.conf) is one entry, wanted if any listing wants it. Problems with subhosts.conf
    are appended to ``problems`` (raised as `ConfigError` when it is None).
    """
    order: list[object] = []
    entries: dict[object, Found] = {}
    listed: list[tuple[Path, str]] = []
    for d in config_dirs() if dirs is None else dirs:
        try:
            listed += [(p, "dir") for p in _dir_entries(Path(d))]
        except ConfigError as e:
            if problems is None:
                raise
            problems.extend(e.problems)
    listed += [(p, "subhosts.conf")
               for p in read_subhosts_conf(subhosts or subhosts_conf(), problems)]
    real_dirs: dict[str, str] = {}
    for path, origin in listed:
        key = _identity(path, real_dirs)
        wanted = origin == "subhosts.conf"
        if key in entries:
            if wanted and not entries[key].wanted:
                first = entries[key]
                entries[key] = Found(first.path, first.origin, True)
            continue
        order.append(key)
        entries[key] = Found(path, origin, wanted)
    return [entries[k] for k in order]


def declared_name(path: Path) -> str:
    """The subhost NAME of a config without parsing all of it: the first ``NAME=`` line, or
    the file name without ``.conf``. A ``!`` command is returned as it is (never run).
    Lines end at ``\n`` only, as the config reader splits them (a lone ``\r`` ends nothing)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIZE + 1)
    except OSError:
        data = b""
    for raw in data.decode("utf-8", "surrogateescape").split("\n"):
        if raw.startswith("NAME="):
            value = raw[5:].strip(" \t\r\f\v")
            if value:
                return value if value.startswith("!") else read_value(value)
            break
    return naming.name_from_file(path.name)


def find_instance(name: str, *, dirs: Iterable[Path] | None = None,
                  subhosts: Path | None = None) -> Path:
    """The config file of instance ``name`` (``overlay-boot@NAME``), as the generator picks it.

    Raises `ConfigError` for an unsafe instance name or when no config declares ``name``.
    """
    if not naming.is_valid_name(name):
        raise ConfigError(Problem(
            name, f"not a valid subhost name ({naming.name_problem(name) or 'unsafe'})"))
    dirs = list(config_dirs() if dirs is None else dirs)
    subhosts = subhosts or subhosts_conf()
    problems: list[Problem] = []
    found = discover(dirs=dirs, subhosts=subhosts, problems=problems)
    for f in found:
        if declared_name(f.path) == name:
            return f.path
    where = ", ".join(str(d) for d in dirs) + f", {subhosts}"
    hint = ""
    for d in dirs:
        same_file = Path(d) / f"{name}.conf"
        if same_file.is_file():
            hint = f"; {same_file} declares NAME={declared_name(same_file)}"
            break
    raise ConfigError(Problem(name, f"no configuration for subhost {name} "
                                    f"(looked in {where}){hint}"))
