"""`python -m bench.cpu`: where the CPU time of N subhosts started at once goes.

Boots a systemd box, installs the project (``make install``) from each source tree given
(default: this one), makes N subhosts (START=none, one cable, as `make bench`), and for each
round, alternating the trees (A, B, A, B …: paired figures on a shared machine):

* ``systemctl start`` of all N units at once: the wall time until it returned;
* the CPU time (cgroup ``cpu.stat`` usage) every cgroup of the box used meanwhile: systemd
  (init.scope), journald, dbus-daemon, machined, the shared services, and the N units
  (the supervisor, PID 1, busctl);
* the journal lines written meanwhile, by unit and identifier;

then stops them all. Prints one table per tree (medians over its rounds). Not a budget
measure: `make bench` is; this says where the time of one goes.

    python -m bench.cpu [-n 100] [--rounds 3] [TREE ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.system.box import SystemdBox

from .runner import REPO, make_subhost

SNAPSHOT = r"""
import json, os
out = {}
for d, subdirs, files in os.walk("/sys/fs/cgroup"):
    if "cpu.stat" in files:
        try:
            with open(d + "/cpu.stat") as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key in ("usage_usec", "system_usec"):
                        out.setdefault(d[len("/sys/fs/cgroup"):] or "/", {})[key] = int(value)
        except OSError:
            pass
print(json.dumps(out))
"""

JOURNAL = r"""
import collections, json, subprocess, sys
subprocess.run(["journalctl", "--sync"])
out = subprocess.run(["journalctl", "--no-pager", "-o", "json", "--after-cursor", sys.argv[1],
                      "--output-fields=_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,_COMM"],
                     capture_output=True, text=True).stdout
counts = collections.Counter()
for line in out.splitlines():
    e = json.loads(line)
    unit = e.get("_SYSTEMD_UNIT", "-")
    if unit.startswith("overlay-boot@"):
        unit = "overlay-boot@*"
    counts[f"{unit} {e.get('SYSLOG_IDENTIFIER', e.get('_COMM', '-'))}".split("[")[0]] += 1
print(json.dumps(counts))
"""


def group(path: str) -> str:
    """A cgroup path, with the N subhost units folded into one row."""
    if "/overlay-boot@" in path:
        return "overlay-boot@* (sum)"
    return path


def cursor(box: SystemdBox) -> str:
    return box.run("journalctl", "-n", "0", "--show-cursor", "--no-pager").stdout.split(
        "cursor: ")[-1].strip()


def round_once(box: SystemdBox, units: list[str]) -> dict:
    mark = cursor(box)
    before = json.loads(box.run("/usr/bin/python3", "-c", SNAPSHOT).stdout)
    t0 = time.monotonic()
    box.run("systemctl", "start", *units, timeout=300)
    wall = time.monotonic() - t0
    after = json.loads(box.run("/usr/bin/python3", "-c", SNAPSHOT).stdout)
    lines = json.loads(box.run("/usr/bin/python3", "-c", JOURNAL, mark).stdout)
    box.run("systemctl", "stop", *units, timeout=300)
    cpu: Counter[str] = Counter()
    for path, usage in after.items():
        if path.count("/") > 3 and "/overlay-boot@" not in path:
            continue  # below a unit: counted in the unit's own cgroup
        if "/overlay-boot@" in path and not path.endswith(".service"):
            continue
        old = before.get(path, {})
        cpu[group(path)] += usage["usage_usec"] - old.get("usage_usec", 0)
        cpu[group(path) + " [kernel]"] += usage["system_usec"] - old.get("system_usec", 0)
    return {"wall": wall, "cpu": dict(cpu), "lines": lines}


UNIT_CPU = r"""
import json, os, sys
unit = sys.argv[1]
d = "/sys/fs/cgroup/system.slice/system-overlay\\x2dboot.slice/" + unit
stat = dict(l.split() for l in open(d + "/cpu.stat"))
leader = json.load(open("/run/overlay-boot/" + unit.split("@")[1][:-8] + ".json"))["leader_pid"]
fields = open(f"/proc/{leader}/stat").read().rsplit(")", 1)[1].split()
tick = os.sysconf("SC_CLK_TCK")
print(json.dumps({"unit": int(stat["usage_usec"]), "unit_kernel": int(stat["system_usec"]),
                  "pid1_user": int(fields[11]) * 1e6 / tick,
                  "pid1_kernel": int(fields[12]) * 1e6 / tick}))
"""


def single_once(box: SystemdBox, unit: str) -> dict:
    """One start alone: the unit's CPU (supervisor, busctl, PID 1 so far) and PID 1's own."""
    t0 = time.monotonic()
    box.run("systemctl", "start", unit)
    wall = time.monotonic() - t0
    cpu = json.loads(box.run("/usr/bin/python3", "-c", UNIT_CPU, unit).stdout)
    box.run("systemctl", "stop", unit)
    return {"wall": wall, **cpu}


def install(box: SystemdBox, tree: Path) -> None:
    box.run("make", "-s", "-C", str(tree), "install", timeout=300)
    # `make install` changes /etc/overlay-boot's ctime (install -d -m): the generator's list
    # of known configs is fresh again only from a generator run a while after (RECENT_NS)
    time.sleep(0.2)
    box.run("systemctl", "daemon-reload")
    # the shared services run the code they started with: the next start starts them anew
    box.run("systemctl", "stop", "overlay-boot-bus.service", "overlay-boot-net.service")


def report(tree: str, rounds: list[dict], n: int) -> None:
    print(f"\n== {tree}: {len(rounds)} rounds of {n} at once ==")
    walls = [r["wall"] for r in rounds]
    each = ", ".join(f"{w:.2f}" for w in walls)
    print(f"wall: median {statistics.median(walls):.2f} s  ({each})")
    keys = {k for r in rounds for k in r["cpu"]}
    rows = sorted(((statistics.median(r["cpu"].get(k, 0) for r in rounds), k) for k in keys),
                  reverse=True)
    print("CPU (median ms over rounds; per start = / N):")
    for usec, k in rows[:18]:
        if usec < 5000:
            break
        print(f"{usec / 1000:9.0f} ms {usec / 1000 / n:7.2f} ms/start  {k}")
    if rounds[0]["single"]:
        print("one start alone (median of the rounds' medians; ms):",
              ", ".join(f"{k} {statistics.median(r['single'][k] for r in rounds) / 1000:.1f}"
                        if k != "wall" else
                        f"wall {statistics.median(r['single'][k] for r in rounds) * 1000:.1f}"
                        for k in rounds[0]["single"]))
    lines = {k for r in rounds for k in r["lines"]}
    print("journal lines (median per round):")
    for count, k in sorted(((statistics.median(r["lines"].get(k, 0) for r in rounds), k)
                            for k in lines), reverse=True)[:12]:
        print(f"{count:7.0f}  {k}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="subhosts started at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per tree")
    parser.add_argument("--single", type=int, default=10, help="single starts per round")
    parser.add_argument("trees", nargs="*", type=Path, help="source trees (default: this one)")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees] or [REPO]
    tmp = Path(tempfile.mkdtemp(prefix="obcpu-", dir="/tmp"))
    box = SystemdBox(tmp / "state")
    results: dict[str, list[dict]] = {str(t): [] for t in trees}
    try:
        box.boot()
        install(box, trees[0])
        box.run("mkdir", "-p", "/etc/overlay-boot")
        names = [f"cpu{i}" for i in range(args.n)]
        for name in names:
            make_subhost(box, name)
        time.sleep(0.2)  # configs older than the generator's list (knownlist.RECENT_NS)
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "start", "overlay-boot-net.socket")
        units = [f"overlay-boot@{n}.service" for n in names]
        for i in range(args.rounds):
            for tree in trees:
                if len(trees) > 1 or i == 0:
                    install(box, tree)
                known = box.run("/usr/bin/python3", "-I", "-c", "from overlay_boot import "
                                "knownlist; print(len(knownlist.read() or []))").stdout.strip()
                print(f"{tree}: the generator's list holds {known} configs (0: stale, each "
                      "start parses them all)", file=sys.stderr, flush=True)
                round_once(box, units[:1])  # warm: the bus service runs, caches are hot
                result = round_once(box, units)
                singles = [single_once(box, units[0]) for _ in range(args.single)]
                result["single"] = {k: statistics.median(s[k] for s in singles)
                                    for k in singles[0]} if singles else {}
                results[str(tree)].append(result)
                print(f"round {i} {tree}: {results[str(tree)][-1]['wall']:.2f} s",
                      file=sys.stderr, flush=True)
    finally:
        box.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    for tree, rounds in results.items():
        if rounds:
            report(tree, rounds, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
