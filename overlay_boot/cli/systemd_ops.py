"""`overlay-boot CONF` on a host booted with systemd: start the subhost as a unit.

The instance overlay-boot@NAME.service when the generator knows the config (it is in
/etc/overlay-boot or /etc/subhosts.conf), else a transient unit of the same name running the
same supervisor, so supervision and the journal are the same either way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import log
from ..errors import SubhostError


def start_through_systemd(path: Path) -> int:
    from .. import systemd
    from ..config import load_config
    from ..discovery import discover
    from ..naming import unit_name
    from ..validate import require_valid

    config = load_config(path)
    require_valid(config)  # a bad config fails here, with its message and status 78
    unit = unit_name(config.name)
    active = systemd.unit_state(unit)[0]
    if active in ("active", "activating", "reloading"):
        raise SubhostError(f"subhost {config.name} is already running ({unit} is {active})")
    known = {os.path.realpath(found.path) for found in discover()}
    if os.path.realpath(path) in known:
        systemd.start_unit(unit)
    else:
        argv = [_supervisor_command(), "--instance", config.name]
        systemd.start_transient(
            unit,
            argv,
            {
                "Description": f"overlay-boot subhost {config.name}",
                "Environment": [f"OVERLAY_BOOT_CONFIG={path}"],
            },
        )
    log.info(f"subhost {config.name} started as {unit}")
    return 0


def _supervisor_command() -> str:
    """This very command, so a transient unit runs the same installation."""
    argv0 = os.path.abspath(sys.argv[0])
    if os.path.basename(argv0) == "overlay-boot" and os.access(argv0, os.X_OK):
        return argv0
    for directory in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"):
        candidate = os.path.join(directory, "overlay-boot")
        if os.access(candidate, os.X_OK):
            return candidate
    raise SubhostError("cannot find the overlay-boot command to run as a transient unit")
