"""`overlay-boot CONF` on a host booted with systemd: start the subhost as a unit.

The instance overlay-boot@NAME.service runs the config. When the generator does not know the
config (it is neither in /etc/overlay-boot nor in /etc/subhosts.conf), a runtime drop-in names
it for this boot (like `systemctl --runtime`), so supervision, `systemctl status` and the
journal are the same either way; `overlay-stop --cleanup` (ExecStopPost=) removes the drop-in.
The `!` values run once, in the unit: here the config is only parsed and checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import log
from ..errors import ConfigError, Problem, SubhostError
from ..state import remove_runtime_dropin, runtime_dropin


def start_through_systemd(path: Path) -> int:
    from .. import systemd
    from ..discovery import discover
    from ..generator import render_dropin
    from ..naming import unit_name
    from ..validate import host_warnings, require_valid

    config = _parse(path)
    require_valid(config)  # a bad config fails here, with its message and status 78
    for warning in host_warnings(config):
        log.warning(warning)
    unit = unit_name(config.name)
    active = systemd.unit_state(unit).active_state
    if active in ("active", "activating", "reloading"):
        raise SubhostError(f"subhost {config.name} is already running ({unit} is {active})")
    known = {_same_config(found.path) for found in discover()}
    dropin = runtime_dropin(config.name)
    if _same_config(path) not in known:
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text(render_dropin(config, origin="overlay-boot (until the subhost stops)",
                                      removed_at_stop=True))
        systemd.reload()
    elif dropin.exists():
        remove_runtime_dropin(config.name)
        systemd.reload()
    systemd.start_unit(unit)
    log.info(f"subhost {config.name} started as {unit}")
    return 0


def _same_config(path: Path) -> tuple[str, str]:
    """What the generator's drop-in must have been made from for PATH: the same file under
    the same name in the same directory (a relative BASE starts there: a link to a template
    from another subhost's directory is another subhost)."""
    return os.path.realpath(path.parent), path.name


def _parse(path: Path):
    """The config, parsed without running its `!` values: the unit runs them (once)."""
    from ..config import NAME_IS_COMMAND, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise ConfigError([_literal_name_needed(p) if p.message == NAME_IS_COMMAND else p
                           for p in exc.problems]) from None


def _literal_name_needed(problem: Problem) -> Problem:
    return Problem(problem.path, "NAME is a '!' command: a subhost started through systemd "
                                 "(unit overlay-boot@NAME) needs a literal NAME; give one, or "
                                 "start it with --no-systemd", problem.variable, problem.line)
