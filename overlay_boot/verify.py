"""``overlay-boot --verify [CONF|NAME ...]``: check configs without starting anything.

Each config is parsed (``load_config`` without a runner: no ``!`` command runs), then checked
against this host (`validate`: directories, owners, bridges, ID ranges). Without arguments every
config the generator would find is checked, duplicates of a NAME included. The generator's own
``--verify`` flag calls this too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from overlay_boot import discovery, validate
from overlay_boot.config import Config, absolute, load_config
from overlay_boot.errors import EX_CONFIG, ConfigError, Problem

Say = Callable[[str], None]


def select(args: Sequence[str]) -> tuple[list[Path], list[Problem]]:
    """Config paths for arguments that are paths or instance NAMEs."""
    paths, problems = [], []
    for arg in args:
        if "/" in arg or arg.endswith(".conf") or os.path.exists(arg):
            paths.append(absolute(arg))
            continue
        try:
            paths.append(discovery.find_instance(arg))
        except ConfigError as e:
            problems += e.problems
    return paths, problems


def _parse(args: Sequence[str], err: Say) -> tuple[list[Config], bool]:
    """The configs named by ARGS (all discovered ones without), and whether any failed."""
    if not args:
        from overlay_boot.generator import ERR, generate

        result = generate()
        for m in result.messages:
            err(m.text if m.priority <= ERR else f"warning: {m.text}")
        return list(result.generated), result.failed
    paths, problems = select(args)
    for p in problems:
        err(str(p))
    failed = bool(problems)
    configs: list[Config] = []
    for path in paths:
        try:
            config = load_config(path)
        except ConfigError as e:
            for p in e.problems:
                err(str(p))
            failed = True
            continue
        for w in config.warnings:
            err(f"warning: {w}")
        configs.append(config)
    return configs, failed


def verify(args: Sequence[str], out: Say, err: Say, *, host: bool = True) -> int:
    """Check the given configs (paths or NAMEs), or all discovered ones; with HOST also against
    this host. Prints ``OK NAME path`` per good config and the problems; returns 0, or 78
    (EX_CONFIG) on any error."""
    configs, failed = _parse(args, err)
    for config in configs:
        host_problems = validate.check_host(config) if host else []
        for p in host_problems:
            err(str(p))
        for w in validate.host_warnings(config) if host else []:
            err(f"warning: {w}")
        if host_problems:
            failed = True
        else:
            out(f"OK {config.name} {config.path}")
    return EX_CONFIG if failed else 0
