"""``python -m tests.init_main``: PID 1 (overlay_boot.linux.init) run on its own, as PID 1 of
the current PID namespace, for tests/root/test_init.py (under ``unshare --pid --fork``)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from overlay_boot.linux.init import STOP_TIMEOUT, InitSettings, run


def main(argv: list[str] | None = None) -> NoReturn:
    """Parse the test's arguments, then be PID 1 until stopped."""
    parser = argparse.ArgumentParser(prog="python -m tests.init_main")
    parser.add_argument("--name", required=True)
    parser.add_argument("--start", default="", help="START words, space-separated")
    parser.add_argument("--script", help="file holding an INIT override script")
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--stop-timeout", type=float, default=STOP_TIMEOUT)
    parser.add_argument("--status-fd", type=int, default=1)
    args = parser.parse_args(argv)
    words = tuple(w for w in args.start.split() if w != "none")
    script = None
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = f.read()
    settings = InitSettings(
        name=args.name,
        start=words,
        script=script,
        grace=args.grace,
        stop_timeout=args.stop_timeout,
    )
    run(settings, args.status_fd)


if __name__ == "__main__":
    main()
