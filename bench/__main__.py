"""`make bench`: measure SPEC §7's budgets in a booted systemd box, with systemd-nspawn and
overlay-boot 1.6.4 side by side; print the table; write bench/out/ (results.csv, the plot, the
box's console on errors) and, with --publish, bench/RESULTS.md and bench/results.json (the
raw samples), the only way those two are written. Exit status 1 when a budget fails or a
measurement failed. ``--render`` re-renders RESULTS.md from a results JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import analyse, plot, report, runner

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results.json"

WHAT = """\
What each column measured (medians of N runs, 25th–75th percentile in parentheses; each
start/stop pair follows one unmeasured warm-up run; every stop is followed by a check that
nothing is left — netns, host link, mounts under the base, runtime files, processes — and the
stop time runs until that check passed):

* ours, systemctl: `systemctl start overlay-boot@NAME` until it returned (Type=notify: READY=1
  once PID 1 runs, START=none, one cable `CABLES= =`), `systemctl stop` until it returned
  (once the unit was inactive) and the check passed.
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
* floor: what any service started through `systemctl` costs on this machine, whatever it
  does: `floor-exec.service` (Type=exec, `/bin/sleep infinity`) and `floor-python.service`
  (Type=notify, its main process a `/usr/bin/python3 -I -S` that imports socket and sends
  READY=1), started and stopped like ours (no budget: the yardstick under the start and stop
  budgets).
* overlay-go: `overlay-go NAME -- true` on a running subhost, whole command.
* overlay-diff: `overlay-diff --json CONF` of a stopped subhost whose UPPER holds 100,000
  entries (100 directories of 999 files: half copy a lower file, a tenth are whiteouts) over a
  LOWER made before it, whole command, output read to the end; both layers on a tmpfs of
  the box's (files just made: in the page cache either way).
* generator: the installed generator as systemd runs it (a new process of its
  `#!/usr/bin/python3 -I`) on N configs in a directory (OVERLAY_BOOT_CONFIG_DIR), writing N
  drop-ins into empty output directories on /run (a tmpfs, as systemd's generator
  directories are).
* cold start: pairs of `systemctl start` of one subhost, first warm (the cable service
  overlay-boot-net.service runs, as the previous start left it), then cold (`systemctl stop
  overlay-boot-net.service` just before; its socket starts it again on the subhost's first
  request); each start followed by a stop. The paired ratio is cold/warm within each pair.
* PSS: sum of /proc/PID/smaps_rollup Pss over all processes of a subhost (its unit's cgroup;
  for 1.6.4 its background shell and descendants; for nspawn including the `sleep` payload),
  1 s after the last start, in MiB (2^20 bytes). "incl. shared services": plus the PSS of
  the project's services shared by all subhosts (overlay-boot-net, overlay-boot-bus, when
  they run) divided by the number of running subhosts. The curve starts subhosts in steps
  (one `systemctl start` per step) and measures every running one at each step.
* N at once: one `systemctl start` of N units until it returned (all active), one `systemctl
  stop` of them until it returned and all N checks passed.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--reps", type=int, default=10, help="repetitions of each measure (≥ 10)")
    p.add_argument("--concurrency-reps", type=int, default=None,
                   help="repetitions of the N-at-once measures (default: --reps)")
    p.add_argument("--concurrency", type=_counts, default=runner.CONCURRENCY,
                   help="subhosts started at once, comma-separated (default: %(default)s)")
    p.add_argument("--memory-counts", type=_counts, default=runner.MEMORY_COUNTS,
                   help="points of the memory curve (default: %(default)s)")
    p.add_argument("--memory-running", type=int, default=runner.MEMORY_RUNNING,
                   help="running subhosts of the memory budget and references "
                        "(default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="3 repetitions, few subhosts: a smoke run, not a measurement")
    p.add_argument("--no-nspawn", action="store_true", help="without the nspawn reference")
    p.add_argument("--no-old", action="store_true", help="without the 1.6.4 reference")
    p.add_argument("--out", type=Path, default=OUT, help="output directory")
    p.add_argument("--publish", action="store_true",
                   help="also write bench/RESULTS.md and bench/results.json (`make bench`)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="only render RESULTS.md (to stdout) from a results JSON")
    return p.parse_args(argv)


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def options(args: argparse.Namespace) -> runner.Options:
    if args.quick:
        return runner.Options(reps=3, concurrency_reps=2, concurrency=(1, 10),
                              generator_counts=(1, 500), memory_counts=(5, 10),
                              memory_running=5, nspawn=not args.no_nspawn, old=not args.no_old)
    return runner.Options(reps=args.reps,
                          concurrency_reps=args.concurrency_reps or args.reps,
                          concurrency=args.concurrency, memory_counts=args.memory_counts,
                          memory_running=args.memory_running,
                          nspawn=not args.no_nspawn, old=not args.no_old)


def _git(*args: str) -> str:
    r = subprocess.run(["git", "-C", str(runner.REPO), *args], capture_output=True, text=True,
                       check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def source_state() -> dict:
    """What is measured: the commit and whether the tree differs from it (taken before)."""
    changed = _git("status", "--porcelain")
    return {"commit": _git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(changed), "changed": changed.splitlines()[:20]}


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    uname = platform.uname()
    return {"node": uname.node, "cpus": os.cpu_count(), "cpu_model": model,
            "memory_gib": round(mem_kib / 2**20, 1), "kernel": uname.release}


def counts_of(options: dict) -> analyse.Counts:
    return analyse.Counts(concurrency=options["concurrency"],
                          generator=options["generator_counts"],
                          memory=options["memory_counts"],
                          memory_running=options["memory_running"])


def render(results: dict) -> str:
    """RESULTS.md from a results JSON (all of it: nothing in it is written by hand)."""
    o, src, m = results["options"], results["source"], results["machine"]
    rows = analyse.rows(results["data"], counts_of(o))
    failed = [r.measure.strip() for r in rows if r.passed is False]
    title = "# Benchmark results"
    if src["dirty"]:
        title += " — DIRTY TREE (uncommitted changes: not a measurement of a commit)"
    if o["reps"] < 10:
        title += " — QUICK RUN (a smoke test, not a measurement)"
    load_before = " ".join(f"{x:.2f}" for x in results["load_before"])
    load_after = " ".join(f"{x:.2f}" for x in results["load_after"])
    extra = "".join(f"\n* {p}" for p in results["notes"] + results["errors"])
    lines = [
        title, "",
        "Written by `make bench` (`python -m bench --publish`); do not edit. The raw samples "
        "are in `results.json` beside it; `python -m bench --render bench/results.json` "
        "renders this file again.", "",
        f"* commit measured: `{src['commit']}`" + (" plus uncommitted changes:" if src["dirty"]
                                                   else " (clean tree)"),
        *(f"  * `{c}`" for c in src.get("changed", [])),
        f"* started {results['started']}, {results['seconds']:.0f} s in all",
        f"* machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}",
        f"* load average (1, 5, 15 min) before: {load_before}; after: {load_after}"
        + (f" — the machine was busy (more than {m['cpus'] / 2:g} runnable on average): the "
           "times include waiting for a CPU"
           if max(results["load_before"][0], results["load_after"][0]) > m["cpus"] / 2
           else ""),
        f"* {o['reps']} repetitions of each measure, {o['concurrency_reps']} of N at once; "
        f"medians, 25th–75th percentile in parentheses",
        f"* budgets: {'all met' if not failed else 'FAILED: ' + '; '.join(failed)}",
        "", report.markdown_table(rows), WHAT,
    ]
    lines += from_tests_section(results.get("from_tests") or {})
    if extra:
        lines.append(f"Notes and errors:{extra}\n")
    return "\n".join(lines)


def from_tests_section(figures: dict) -> list[str]:
    """The timings tests used to assert (bench/from_tests.py: PID 1 and the `!` runner on the
    host, no systemd): medians with their quartiles, in seconds; no budget of their own."""
    if not figures:
        return []
    lines = ["## Timings the tests no longer assert", "",
             "Measured on the host by `bench/from_tests.py` (its docstring says what each was "
             "asserted as); seconds, median (25th–75th percentile) of n runs.", "",
             "| measure | median | quartiles | n |", "|---|--:|--:|--:|"]
    for name, s in figures.items():
        if s is None:
            lines.append(f"| {name} | not measured | | |")
        else:
            lines.append(f"| {name} | {s['median']:.3f} | {s['p25']:.3f}–{s['p75']:.3f} "
                         f"| {s['n']} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        sys.stdout.write(render(json.loads(args.render.read_text())))
        return 0
    if os.geteuid() != 0:
        print("bench: needs root (it boots a systemd box)", file=sys.stderr)
        return 1
    opts = options(args)
    plot.ensure_matplotlib()
    source = source_state()  # before the run: what the run measures
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_before = loadavg()
    raw = runner.measure(opts)
    from . import from_tests  # PID 1 and the runner on the host: imports the tests' helpers

    lower_level = from_tests.measure(min(opts.reps, 5))
    results = {"source": source, "started": started, "machine": machine(),
               "load_before": load_before, "load_after": loadavg(),
               "options": asdict(opts), "seconds": raw.seconds, "errors": raw.errors,
               "notes": raw.notes, "data": raw.data, "from_tests": lower_level}
    rows = analyse.rows(raw.data, counts_of(results["options"]))
    problems = raw.errors + [f"budget failed: {r.measure.strip()}"
                             for r in rows if r.passed is False]
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1)
    (args.out / "results.json").write_text(text)
    (args.out / "results.csv").write_text(report.csv_table(rows))
    (args.out / "results.md").write_text(render(results))
    if args.publish:
        RESULTS_JSON.write_text(text + "\n")
        RESULTS_MD.write_text(render(results))
    series = analyse.concurrency_series(raw.data, opts.concurrency)
    if series:
        plot.plot_concurrency(args.out / "concurrency.png", series,
                              budget=(analyse.BUDGET_CONCURRENT_N,
                                      analyse.BUDGET_CONCURRENT_START_S)
                              if analyse.BUDGET_CONCURRENT_N in opts.concurrency else None)
    print(f"overlay-boot benchmark of {source['commit'][:12]}"
          f"{' (dirty tree)' if source['dirty'] else ''}, {raw.seconds:.0f} s")
    print(report.text_table(rows), end="")
    for p in raw.notes + raw.errors:
        print(f"bench: {p}", file=sys.stderr)
    wrote = f"{RESULTS_MD}, {RESULTS_JSON} and " if args.publish else ""
    print(f"bench: wrote {wrote}{args.out}/", file=sys.stderr)
    if problems:
        print("bench: FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
