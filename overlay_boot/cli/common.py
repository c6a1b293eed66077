"""What every command-line entry point shares: the error boundary and config lookup."""

from __future__ import annotations

import os
import sys

from .. import log
from ..errors import EX_FAILURE, EX_USAGE, ConfigError, Problem, SubhostError

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time: overlay-go starts faster without pathlib
    from collections.abc import Callable
    from pathlib import Path
    from typing import NoReturn


def run_main(body: Callable[[], int], tag: str) -> int:
    """Run a command's body; map exceptions to one message and an exit status."""
    log.configure(tag=tag)
    try:
        return body()
    except ConfigError as exc:
        for problem in exc.problems:
            log.error(str(problem))
        return exc.exit_status
    except SubhostError as exc:
        log.error(str(exc))
        return exc.exit_status
    except UsageError as exc:
        log.error(str(exc))
        return EX_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one place an unexpected error becomes a message
        if log.debug_enabled():
            raise
        log.error(
            f"internal error: {type(exc).__name__}: {exc} (OVERLAY_BOOT_DEBUG=1 shows details)"
        )
        return EX_FAILURE
    finally:
        log.flush()


def exit_now(status: int) -> NoReturn:
    """End the command with STATUS once its output is flushed, skipping the interpreter's
    teardown of every module: that was ~15 % of `overlay-go NAME -- true` (issue #13's budget).

    Only for a command's last step, when nothing is left to close or clean up: no atexit
    handler, no thread, no buffered file but standard output and error.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 120  # as the interpreter ends when it cannot flush them
    os._exit(status)


class UsageError(Exception):
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise SubhostError("must be run as root")


def resolve_target(arg: str, prog: str) -> tuple[str, Path | None]:
    """Turn a NAME-or-CONF argument into (name, config path or None).

    An argument naming an existing file (or containing '/' or ending in '.conf') is a config
    file; anything else is a subhost name, as it is or escaped as in its unit's name. The
    config is only parsed: its `!` values never run here (they run as root and may mount
    things). A `!` NAME is taken from the running subhost started from that file, if any;
    else it is refused.
    """
    from ..config import NAME_IS_COMMAND, absolute, load_config
    from ..naming import name_from_argument

    looks_like_path = "/" in arg or arg.endswith(".conf")
    if looks_like_path or os.path.isfile(arg):
        path = absolute(arg)
        try:
            config = load_config(path)
        except ConfigError as exc:
            if not any(p.message == NAME_IS_COMMAND for p in exc.problems):
                raise
            return _running_from(path, prog), path
        return config.name, path
    name = name_from_argument(arg)  # NAME, or its escaped form (a unit's %i)
    if name is None:
        raise UsageError(f"{arg!r} is neither a config file nor a valid subhost name")
    return name, None


def _running_from(path: Path, prog: str) -> str:
    """The name of the one running subhost started from the config at PATH."""
    from .. import state

    real = os.path.realpath(path)
    names = {r.name for r in state.running() if os.path.realpath(r.config) == real}
    if len(names) == 1:
        return names.pop()
    raise ConfigError(Problem(
        str(path), f"NAME is a '!' command, which {prog} never runs, and no running subhost "
                   "was started from this file: give the subhost's NAME instead", "NAME"))
