"""Where the other subhosts keep their files: their directories are masked inside each subhost.

Every subhost's BASE, UPPER, WORK and LIVE usually lie on the host's root filesystem, which is
every subhost's LOWER: without a mask, root inside one subhost reads (and through its own
UPPER, shadows) another's private files. The configs systemd knows (``discovery``) and the
running subhosts' records say where those directories are; configs are only parsed, never
evaluated (a ``!`` path stays unknown and so unmasked: README, "Security model").

Parsing every known config at each start costs ~0.3 ms per config, so a start reads the list
the generator made of them (`knownlist`) while it is fresh, and parses them itself otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from overlay_boot import discovery, knownlist, state
from overlay_boot.config import Config, load_config
from overlay_boot.errors import ConfigError
from overlay_boot.record import Record


class Others(Record):
    """The other subhosts this host knows: configs (parsed, never evaluated: a `!` value stays
    unknown) and the records of the running ones."""

    configs: tuple[tuple[knownlist.Neighbour, Path], ...]  # (config, its path as listed)
    records: tuple[state.Runtime, ...]


def others(config: Config) -> Others:
    """Every known subhost but ``config``'s: the configs systemd knows and the running ones."""
    records = tuple(r for r in state.running() if r.name != config.name)
    seen = {_identity(config.path)}
    configs: list[tuple[knownlist.Neighbour, Path]] = []
    listed = knownlist.read()
    if listed is None:
        try:
            paths = [found.path for found in discovery.discover(problems=[])]
        except OSError:
            paths = []
    else:
        paths = []
        for identity, neighbour, path in listed:
            if identity not in seen:
                seen.add(identity)
                if neighbour.name != config.name:
                    configs.append((neighbour, path))
    paths += [Path(r.config) for r in records]
    for path in paths:
        key = _identity(path)
        if key in seen:
            continue
        seen.add(key)
        try:
            other = load_config(path)
        except (ConfigError, OSError):
            continue
        if other.name != config.name:
            configs.append((knownlist.Neighbour.of(other), path))
    return Others(tuple(configs), records)


# ---------------------------------------------------------------------------------------------
# masks


def other_subhost_dirs(config: Config) -> tuple[Path, ...]:
    """Where BASE, UPPER, WORK and LIVE of every other known subhost show inside ``config``'s
    subhost (paths inside its tree), sorted, without duplicates.

    A directory shows inside only through a LOWER layer on its own file system (an overlay
    layer does not include the mounts below it): ``/srv/b/root`` shows at ``/srv/b/root`` with
    ``LOWER=/`` when /srv is no mount of its own, and not at all otherwise. Those that do not
    show need no mask (and cost PID 1 nothing)."""
    known = others(config)
    # Plain strings of normalised paths (str of a Path) from here on: pathlib's comparisons
    # and parents cost ~25 ms per start with 100 known subhosts (issue #13).
    dirs = {str(Path(r.root)) for r in known.records}
    for other, _ in known.configs:
        dirs.update(p for p in (other.base, other.upper, other.work, other.live) if p)
    for own in (config.base, config.upper, config.work, config.live):
        if own:  # a mask on our own directory or one that holds it would hide our own tree
            dirs.difference_update(str(p) for p in (own, *own.parents))
    layers = [(str(layer), _device(layer)) for layer in config.lower]
    shown: set[str] = set()
    for path in dirs:
        device = _device(path)
        for layer, layer_device in layers:
            if device is not None and device == layer_device and _within(path, layer):
                shown.add(path if layer == "/" else path[len(layer):] or "/")
                break
    # A mask on BASE hides the UPPER, WORK and LIVE inside it: one mount instead of four.
    # In the order of Paths (component by component), what a directory holds follows it.
    masks: list[str] = []
    for path in sorted(shown, key=_components):
        if not masks or not _within(path, masks[-1]):
            masks.append(path)
    return tuple(Path(p) for p in masks)


def _within(path: str, directory: str) -> bool:
    """PATH is DIRECTORY or below it (both normalised: str of a Path)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _components(path: str) -> list[str]:
    """The sort key that orders absolute normalised paths as Path objects are ordered."""
    return path.split("/")


def _device(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
