"""`python -m bench.profile`: where the start time and the memory of a subhost go.

Boots a systemd box, installs the project, and for one subhost (START=none, one cable):

1. ``-X importtime`` of the unit's main process (a runtime drop-in overriding ExecStart=):
   the slowest imports and their total, from the journal;
2. the modules the long-lived processes hold: the same interpreter started the way the unit
   starts it, importing what the supervisor and PID 1 have imported, measured with tracemalloc
   and /proc/self/smaps_rollup;
3. the PSS of the supervisor and PID 1 by mapping (smaps): interpreter, heap, libraries;
4. ``py-spy record`` of one ``overlay-boot --instance`` start when py-spy is installed in the
   venv (``pip install py-spy``), written to bench/out/start.speedscope.json.

Prints a report (bench/RESULTS.md holds only what `make bench` measured).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from tests.system.box import SystemdBox

from .runner import REPO, make_subhost

OUT = Path(__file__).resolve().parent / "out"
NAME = "prof1"

MODULES_OF = r"""
import json, sys, tracemalloc, time
t0 = time.perf_counter()
tracemalloc.start()
import overlay_boot.cli.boot, overlay_boot.config, overlay_boot.validate, overlay_boot.naming
import overlay_boot.supervisor, overlay_boot.discovery
t1 = time.perf_counter()
cur, peak = tracemalloc.get_traced_memory()
snap = tracemalloc.take_snapshot().statistics("filename")[:12]
rollup = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/smaps_rollup")
          if l.split(":")[0] in ("Rss", "Pss", "Private_Dirty", "Shared_Clean")}
print(json.dumps({"seconds": t1 - t0, "traced": cur, "peak": peak, "modules": len(sys.modules),
                  "top": [(str(s.traceback[0].filename), s.size) for s in snap],
                  "smaps_kb": rollup, "names": sorted(sys.modules)}))
"""

SMAPS_BY_MAPPING = r"""
import sys, collections
totals = collections.Counter()
name = "?"
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    first = line.split()[0]
    if not first.endswith(":") or "-" in first:
        parts = line.split()
        name = parts[5] if len(parts) > 5 else "[anon]"
    elif first == "Pss:":
        totals[name] += int(line.split()[1])
for n, kb in totals.most_common(10):
    print(f"{kb:8d} kB  {n}")
print(f"{sum(totals.values()):8d} kB  total")
"""


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="obprof-", dir="/tmp"))
    box = SystemdBox(tmp / "state")
    try:
        box.boot()
        box.run("make", "-s", "-C", str(REPO), "install", timeout=300)
        box.run("mkdir", "-p", "/etc/overlay-boot")
        make_subhost(box, NAME)
        unit = f"overlay-boot@{NAME}.service"

        print("== -X importtime of the unit's main process (slowest 15, cumulative us) ==")
        box.write_file(f"/run/systemd/system/{unit}.d/90-importtime.conf",
                       "[Service]\nExecStart=\nExecStart=/usr/bin/python3 -X importtime -I "
                       "/usr/local/sbin/overlay-boot --instance %i\n")
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "start", unit)
        journal = box.journal(unit, "import time:")
        rows = []
        for line in journal.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                rows.append((int(m.group(2)), int(m.group(1)), len(m.group(3)), m.group(4)))
        top_level = sum(r[0] for r in rows if r[2] == 1)
        for cum, own, depth, mod in sorted(rows, reverse=True)[:15]:
            print(f"{cum:8d} {own:8d}  {'  ' * (depth - 1)}{mod}")
        print(f"{len(rows)} modules, {top_level / 1000:.1f} ms of imports in all")

        print("\n== PSS by mapping: supervisor, PID 1 (kB) ==")
        main_pid = box.run("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
        leader = box.run("python3", "-c", "import json; print(json.load(open("
                         f"'/run/overlay-boot/{NAME}.json'))['leader_pid'])").stdout.strip()
        for label, pid in (("supervisor", main_pid), ("PID 1", leader)):
            print(f"-- {label} ({pid})")
            print(box.run("python3", "-c", SMAPS_BY_MAPPING, pid).stdout, end="")
        box.run("systemctl", "stop", unit)
        box.run("rm", "-r", f"/run/systemd/system/{unit}.d")
        box.run("systemctl", "daemon-reload")

        print("\n== the supervisor's imports in a fresh interpreter (tracemalloc) ==")
        r = box.run("/usr/bin/python3", "-I", "-c", MODULES_OF)
        import json

        info = json.loads(r.stdout)
        print(f"{info['modules']} modules in {info['seconds'] * 1000:.1f} ms; "
              f"tracemalloc {info['traced'] / 2**20:.2f} MB (peak {info['peak'] / 2**20:.2f})"
              f"; smaps {info['smaps_kb']} kB")
        for fname, size in info["top"]:
            print(f"{size / 1024:8.0f} kB  {fname}")
        heavy = [n for n in info["names"] if n.split(".")[0] in
                 ("pyroute2", "dbus_next", "pystemd", "lxml", "asyncio", "json", "argparse",
                  "subprocess", "typing", "dataclasses", "shutil", "ctypes")]
        print("of note:", " ".join(sorted({n.split(".")[0] for n in heavy})))

        spy = Path(sys.executable).with_name("py-spy")
        if spy.exists():
            print("\n== py-spy record of one start ==")
            box.run("cp", str(spy), "/usr/local/bin/py-spy")
            box.write_file(f"/run/systemd/system/{unit}.d/90-pyspy.conf",
                           "[Service]\nExecStart=\nExecStart=/usr/local/bin/py-spy record -r 1000 "
                           f"-f speedscope -o {box.scratch}/start.speedscope.json -s -- "
                           "/usr/bin/python3 -I /usr/local/sbin/overlay-boot --instance %i\n"
                           "NotifyAccess=all\n")
            box.run("systemctl", "daemon-reload")
            box.run("systemctl", "start", unit, timeout=60)
            box.run("systemctl", "stop", unit, timeout=60)
            src = box.scratch / "start.speedscope.json"
            if src.exists():
                shutil.copy(src, OUT / "start.speedscope.json")
                print(f"written {OUT / 'start.speedscope.json'}")
    finally:
        box.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
