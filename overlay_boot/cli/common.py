"""What every command-line entry point shares: the error boundary and config lookup."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from .. import log
from ..errors import EX_FAILURE, EX_USAGE, ConfigError, SubhostError


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


class UsageError(Exception):
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise SubhostError("must be run as root")


def resolve_target(arg: str) -> tuple[str, Path | None]:
    """Turn a NAME-or-CONF argument into (name, config path or None).

    An argument naming an existing file (or containing '/' or ending in '.conf') is a config
    file; anything else is a subhost name.
    """
    from ..config import load_config
    from ..naming import is_safe_instance

    looks_like_path = "/" in arg or arg.endswith(".conf")
    if looks_like_path or os.path.isfile(arg):
        path = Path(os.path.abspath(arg))
        try:
            config = load_config(path, evaluate=False)
        except ConfigError as exc:
            if not any(p.variable == "NAME" for p in exc.problems):
                raise
            config = load_config(path)
        return config.name, path
    if not is_safe_instance(arg):
        raise UsageError(f"{arg!r} is neither a config file nor a valid subhost name")
    return arg, None


def write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
