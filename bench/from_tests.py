"""Timings that used to be asserted in tests (tests assert behaviour, `make bench` measures).

    .venv/bin/python -m bench.from_tests [--runs N]     # as root; prints JSON

`make bench` runs it too (up to 5 runs each) and puts its figures in RESULTS.md.

Each figure is the median and the 25th/75th percentile of N runs (bench/stats.py), seconds:

* ``init_ready_with_pipe_holder``: PID 1 (overlay_boot.linux.init under unshare) with a
  service whose daemon keeps the output pipe open: until READY (was `< 1 s` in test_init).
* ``init_stop_grace_kill``: SIGTERM to exit with a daemon that ignores SIGTERM, grace 1 s
  (was `1 <= t < 3`).
* ``init_stop_no_stragglers``: SIGTERM to exit with a well-behaved daemon, grace 60 s
  (was `< 2 s`).
* ``init_stop_timeout``: a service whose stop hangs, stop timeout 1 s, grace 1 s
  (was `1 <= t < 4`).
* ``init_stop_nothing``: SIGTERM to exit with nothing started (was `< 1 s`).
* ``config_command_timeout``: load_config of a `!` command that outlives a 0.5 s command
  timeout, until the error (was `< 10 s` in test_config).

The tests' other removed upper bounds — overlay-go's Ctrl-C and the SIGHUP at stop
(test_go), the cable client's fallback from a stale socket (test_netd), the D-Bus call
answered while long Runs are in flight (test_bus) — are not measured here yet.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.stats import summarize

Measure = Callable[[Path], float]


def _init(tmp: Path, start: str = "", **kwargs):
    from tests.root.test_init import Subhost

    return Subhost(tmp, start, **kwargs)


def _service(tmp: Path, name: str, **kwargs) -> str:
    from tests.root.test_init import service

    return str(service(tmp, name, **kwargs))


def _stop(s) -> float:
    began = time.monotonic()
    s.kill(signal.SIGTERM)
    s.wait(timeout=120)
    return time.monotonic() - began


def _stop_once_ready(s, settle: Callable[[], None] | None = None) -> float:
    """The time from SIGTERM to PID 1's exit, once S is ready (and SETTLE has returned)."""
    try:
        s.until_ready()
        if settle is not None:
            settle()
        return _stop(s)
    finally:
        s.close()


def init_ready_with_pipe_holder(tmp: Path) -> float:
    chatty = _service(tmp, "chatty", start="(sleep 1; echo late; sleep 1000) &")
    began = time.monotonic()
    s = _init(tmp, f"{chatty} {_service(tmp, 'after')}")
    try:
        s.until_ready()
        return time.monotonic() - began
    finally:
        s.close()


def init_stop_grace_kill(tmp: Path) -> float:
    stubborn = _service(tmp, "stubborn", start=(
        f"setsid sh -c 'trap \"\" TERM; touch {tmp}/trapped; while :; do sleep 0.1; done' "
        "</dev/null >/dev/null 2>&1 &"))

    def trapped() -> None:
        while not (tmp / "trapped").exists():
            time.sleep(0.01)

    return _stop_once_ready(_init(tmp, stubborn, grace=1.0), trapped)


def init_stop_no_stragglers(tmp: Path) -> float:
    return _stop_once_ready(_init(tmp, _service(tmp, "a"), grace=60.0))


def init_stop_timeout(tmp: Path) -> float:
    return _stop_once_ready(_init(
        tmp, f"{_service(tmp, 'a')} {_service(tmp, 'hang', stop='sleep 100')}",
        stop_timeout=1.0, grace=1.0))


def init_stop_nothing(tmp: Path) -> float:
    return _stop_once_ready(_init(tmp, "", grace=60.0))


def config_command_timeout(tmp: Path) -> float:
    from overlay_boot.config import load_config
    from overlay_boot.errors import ConfigError
    from overlay_boot.proc import run_command

    conf = tmp / "t.conf"
    conf.write_text("BASE=.\nLIVE=!sh -c 'exec sleep 60' & sleep 60\n")
    began = time.monotonic()
    try:
        load_config(conf, run=run_command, command_timeout=0.5)
    except ConfigError as e:
        if "did not finish" not in str(e):  # a timing of the timeout, nothing else
            raise RuntimeError(f"config_command_timeout: not the timeout: {e}") from None
    else:
        raise RuntimeError("config_command_timeout: the command did not time out")
    return time.monotonic() - began


MEASURES: dict[str, Measure] = {f.__name__: f for f in (
    init_ready_with_pipe_holder, init_stop_grace_kill, init_stop_no_stragglers,
    init_stop_timeout, init_stop_nothing, config_command_timeout)}


def measure(runs: int) -> dict[str, dict[str, float] | None]:
    results = {}
    for name, fn in MEASURES.items():
        samples = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="ob-bench-") as tmp:
                Path(tmp).chmod(0o755)
                samples.append(fn(Path(tmp)))
        summary = summarize(samples)
        results[name] = asdict(summary) if summary else None
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    json.dump(measure(args.runs), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
