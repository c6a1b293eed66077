"""`make bench`: measure SPEC §7's budgets in a booted systemd box, with systemd-nspawn and
overlay-boot 1.6.4 side by side; print the table, write bench/out/results.{md,csv,json} and
bench/out/concurrency.png. Exit status 1 when a budget fails or a measurement failed."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import analyse, plot, report, runner

OUT = Path(__file__).resolve().parent / "out"

WHAT = """\
What each column measured (medians of N runs, 25th–75th percentile in parentheses; each
start/stop pair follows one unmeasured warm-up run; every stop is followed by a check that
nothing is left — netns, host link, mounts under the base, runtime files, processes — and the
stop time runs until that check passed):

* ours, systemctl: `systemctl start overlay-boot@NAME` until it returned (Type=notify: READY=1
  once PID 1 runs, START=none, one cable `CABLES= =`), `systemctl stop` until it returned
  (after ExecStopPost=) and the check passed.
* ours, command line: `overlay-boot --no-systemd CONF` until it returned (the supervisor
  reported ready through its pipe); `overlay-stop CONF` until it returned (the supervisor
  released its lock after teardown) and the check passed. OVERLAY_BOOT_NO_SYSTEMD=1.
* nspawn: systemd-nspawn 252 on an overlay of `/` (`--overlay=/:BASE/upper:/` on an empty
  directory), `--network-veth`, `--as-pid2 /bin/sleep infinity`, `--register=no
  --link-journal=no`; under systemd a template unit `nsbench@.service` (Type=notify,
  `--keep-unit`; nspawn sends READY=1 once its container's init runs) started and stopped
  like ours; on the command line nspawn run directly, ready at READY=1 on a notify socket of
  ours, stopped with SIGTERM until it exited and the check passed.
* 1.6.4: Debian's overlay-boot 1.6.4 scripts (`dpkg -i` in the box), same config. Start:
  `/usr/sbin/overlay-boot CONF` (it returns at once and works in the background) until its
  `/.reaper NAME` runs. Stop: `/usr/sbin/overlay-stop CONF` until its background shell, netns
  and host link were gone (its stop returns before that). It has only a command line: the same
  numbers stand in both the systemctl and the command-line rows. It leaves a cgroup per subhost
  behind (not counted). overlay-go: `echo true | /usr/sbin/overlay-go NAME` (nsenter + bash).
* overlay-go: `overlay-go NAME -- true` on a running subhost, whole command.
* overlay-diff: `overlay-diff --json CONF` of a stopped subhost whose UPPER holds 100,000
  entries (100 directories of 999 files: half copy a lower file, a tenth are whiteouts) over a
  LOWER made before it, whole command, output read to the end.
* generator: the installed generator as systemd runs it (a new process) on N configs in a
  directory (OVERLAY_BOOT_CONFIG_DIR), writing N drop-ins.
* PSS: sum of /proc/PID/smaps_rollup Pss over all processes of a subhost (its unit's cgroup;
  for 1.6.4 its background shell and descendants; for nspawn including the `sleep` payload),
  with N subhosts of the kind running at once, 1 s after they were started.
* N at once: one `systemctl start` of N units until it returned (all active), one `systemctl
  stop` of them until it returned and all N checks passed.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--reps", type=int, default=10, help="repetitions of each measure (≥ 10)")
    p.add_argument("--concurrency-reps", type=int, default=None,
                   help="repetitions of the N-at-once measures (default: --reps)")
    p.add_argument("--quick", action="store_true",
                   help="3 repetitions, fewer at once: a smoke run, not a measurement")
    p.add_argument("--no-nspawn", action="store_true", help="without the nspawn reference")
    p.add_argument("--no-old", action="store_true", help="without the 1.6.4 reference")
    p.add_argument("--out", type=Path, default=OUT, help="output directory")
    return p.parse_args(argv)


def options(args: argparse.Namespace) -> runner.Options:
    if args.quick:
        return runner.Options(reps=3, concurrency_reps=2, concurrency=(1, 10),
                              generator_counts=(1, 500), memory_running=5,
                              nspawn=not args.no_nspawn, old=not args.no_old)
    return runner.Options(reps=args.reps,
                          concurrency_reps=args.concurrency_reps or args.reps,
                          nspawn=not args.no_nspawn, old=not args.no_old)


def header(opts: runner.Options, raw: runner.Raw) -> str:
    uname = platform.uname()
    return (f"overlay-boot benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
            f"{uname.node}: {os.cpu_count()} CPUs, Linux {uname.release}; "
            f"{opts.reps} repetitions ({opts.concurrency_reps} for N at once); "
            f"{raw.seconds:.0f} s in all.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (it boots a systemd box)", file=sys.stderr)
        return 1
    opts = options(args)
    plot.ensure_matplotlib()
    raw = runner.measure(opts)
    rows = analyse.rows(raw.data, opts.concurrency, opts.generator_counts, opts.memory_running)
    args.out.mkdir(parents=True, exist_ok=True)
    head = header(opts, raw)
    problems = raw.errors + [f"budget failed: {r.measure}" for r in rows if r.passed is False]
    extra = "".join(f"\n* {p}" for p in raw.notes + raw.errors)

    (args.out / "results.json").write_text(json.dumps(
        {"options": asdict(opts), "seconds": raw.seconds, "errors": raw.errors,
         "notes": raw.notes, "data": raw.data}, indent=1))
    (args.out / "results.csv").write_text(report.csv_table(rows))
    (args.out / "results.md").write_text(
        f"# Benchmark results\n\n{head}\n\n{report.markdown_table(rows)}\n{WHAT}"
        + (f"\nNotes and errors:{extra}\n" if extra else ""))
    series = analyse.concurrency_series(raw.data, opts.concurrency)
    if series:
        plot.plot_concurrency(args.out / "concurrency.png", series,
                              budget=(50, analyse.BUDGET_CONCURRENT_50_S)
                              if 50 in opts.concurrency else None)
    print(head)
    print(report.text_table(rows), end="")
    for p in raw.notes + raw.errors:
        print(f"bench: {p}", file=sys.stderr)
    print(f"bench: wrote {args.out}/results.md, results.csv, results.json, concurrency.png",
          file=sys.stderr)
    if problems:
        print("bench: FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
