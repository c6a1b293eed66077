"""Where the other subhosts keep their files: their directories are masked inside each subhost.

Every subhost's BASE, UPPER, WORK and LIVE usually lie on the host's root filesystem, which is
every subhost's LOWER: without a mask, root inside one subhost reads (and through its own
UPPER, shadows) another's private files. The configs systemd knows (``discovery``) and the
running subhosts' records say where those directories are; configs are only parsed, never
evaluated (a ``!`` path stays unknown and so unmasked: README, "Security model").
"""

from __future__ import annotations

import os
from pathlib import Path

from overlay_boot import discovery, state
from overlay_boot.config import Config, load_config
from overlay_boot.errors import ConfigError


def other_subhost_dirs(config: Config) -> tuple[Path, ...]:
    """BASE, UPPER, WORK and LIVE of every other known subhost, sorted, without duplicates."""
    dirs: set[Path] = set()
    paths: list[Path] = []
    try:
        paths += [found.path for found in discovery.discover(problems=[])]
    except OSError:
        pass
    for record in state.running():
        if record.name != config.name:
            dirs.add(Path(record.root))
            paths.append(Path(record.config))
    own = _identity(config.path)
    for path in paths:
        if _identity(path) == own:
            continue
        try:
            other = load_config(path, evaluate=False)
        except (ConfigError, OSError):
            continue
        if other.name != config.name:
            dirs.update(p for p in (other.base, other.upper, other.work, other.live) if p)
    return tuple(sorted(dirs))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
