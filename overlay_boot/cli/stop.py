"""overlay-stop: stop a running subhost.

    overlay-stop NAME|CONF          stop it: through systemd when it runs as a unit, else by
                                    SIGTERM to its supervisor (the one its record names)
    overlay-stop --cleanup NAME     remove what a crashed subhost left
                                    (overlay-boot-cleanup@NAME.service, ExecStopPost=)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .. import log, state
from ..errors import SubhostError
from .common import exit_now, require_root, resolve_target, run_main

# Annotations only: `typing` is not loaded for them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

STOP_TIMEOUT = 150.0  # the services' own stop scripts may take a while


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="overlay-stop", description="Stop an overlay-boot subhost."
    )
    parser.add_argument("--cleanup", action="store_true", help="only remove stale state")
    parser.add_argument("--timeout", type=float, default=STOP_TIMEOUT, help="seconds to wait")
    parser.add_argument("target", metavar="NAME|CONF")
    args = parser.parse_args(argv)
    # Nothing is left to tidy up (run_main flushed the log): the interpreter's own teardown
    # of the modules loaded is ~20 ms of every stop from the command line.
    exit_now(run_main(lambda: _main(args), "overlay-stop"))


def _main(args: argparse.Namespace) -> int:
    require_root()
    name, _path = resolve_target(args.target, "overlay-stop")
    if args.cleanup:
        remove_leftovers(name, dropin=True)
        return 0
    unit_running = _systemd_unit_active(name)
    if unit_running:
        from ..systemd import stop_unit

        stop_unit(unit_running)
        return 0
    record = state.read(name)
    if not state.is_locked(name) or record is None:
        remove_leftovers(name)
        raise SubhostError(f"subhost {name} is not running")
    log.debug(f"stopping subhost {name}: SIGTERM to its supervisor {record.supervisor_pid}")
    if not _signal_supervisor(record, signal.SIGTERM):
        raise SubhostError(
            f"subhost {name} looks running, but its supervisor is not the process its record "
            f"names (PID {record.supervisor_pid}, started by an older version, or gone): not "
            "signalled; stop it through systemd, or end that process yourself")
    if not state.wait_unlocked(name, args.timeout):
        log.warning(f"subhost {name} did not stop within {args.timeout:g}s: killing it")
        _signal_supervisor(record, signal.SIGKILL)
        state.wait_unlocked(name, 10)
        remove_leftovers(name)
    return 0


def _signal_supervisor(record: state.Runtime, signum: int) -> bool:
    """Signal the record's supervisor, only if it is still that process; False if not."""
    if state.signal_supervisor(record, signum):
        return True
    log.debug(f"supervisor {record.supervisor_pid} of subhost {record.name} is gone "
              "(or is not the one the record names): not signalled")
    return False


def _systemd_unit_active(name: str) -> str | None:
    """The unit running NAME, when systemd runs it (None too when systemd can't be asked)."""
    from ..systemd import ACTIVE_STATES, booted, unit_state

    if not booted():
        return None
    from ..naming import unit_name

    unit = unit_name(name)
    try:
        active = unit_state(unit).active_state
    except SubhostError as exc:  # no system bus: the subhost may still run, stop it directly
        log.debug(f"cannot ask systemd about {unit}: {exc}")
        return None
    return unit if active in ACTIVE_STATES else None


def remove_leftovers(name: str, *, dropin: bool = False) -> bool:
    """Remove NAME's netns, host cable ends and runtime files (with DROPIN, the runtime
    drop-in too, unless a newer start wrote it) unless a supervisor still runs. The lock is
    held meanwhile, so no start can begin halfway through; False if it could not be taken."""
    # Only this path needs cleanup (netns, ctypes…): ~12 ms of every `overlay-stop` else.
    from .. import cleanup

    lock_fd = state.try_lock(name)
    if lock_fd is None:
        return False
    try:
        record = state.read(name)
        interfaces = record.interfaces if record else _interfaces_from_config(name)
        cleanup.teardown(name, interfaces)
        if dropin:
            state.remove_runtime_dropin(name, record.dropin if record else None)
        state.remove(name, lock_fd)
    finally:
        os.close(lock_fd)
    return True


def _interfaces_from_config(name: str) -> tuple[str, ...]:
    from ..config import load_config
    from ..discovery import find_instance
    from ..errors import ConfigError

    try:
        return load_config(find_instance(name)).interfaces
    except ConfigError:
        return ()


if __name__ == "__main__":
    sys.exit(main())
