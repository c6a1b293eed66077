"""Run the reliability and security suite and write docs/RELIABILITY.md from what it did.

    .venv/bin/python -m tests.reliability_report            # run everything (as root), write
    .venv/bin/python -m tests.reliability_report --soak     # with the long load run (50 x 10)
    .venv/bin/python -m tests.reliability_report --results FILE.json   # only write, from FILE

The suite's tests write JSON lines (tests/reliability.py) to DIR/records.jsonl and pytest writes
DIR/junit.xml; the run's facts (the commit and whether the tree was clean, both taken BEFORE the
run and checked again after it; the corpus and the property tests' sizes at run time) go to
DIR/meta.json. From those three the raw results are written as small JSON beside the document
(docs/reliability.json), and the document is rendered from that JSON only: a tree that was not
clean says so in the title, and the counts are the run's. Run it from a clean checkout of a
commit, and commit the two generated files on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = [
    "tests/unit/test_config_cases.py",
    "tests/root/test_config_cases_root.py",
    "tests/root/test_bad_configs_runtime.py",
    "tests/unit/test_config.py",
    "tests/unit/test_generator_fuzz.py",
    "tests/root/test_faults.py",
    "tests/root/test_isolation.py",
    "tests/system/test_faults.py",
    "tests/system/test_bus.py",  # D-Bus: non-root may read, not call
    "tests/soak",
]
SOAK_LONG = "50x10"


def tree_state(repo: Path) -> dict[str, object]:
    """The commit checked out and what differs from it (tracked changes and untracked files,
    not ignored ones): empty ``changed`` is a clean tree."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=all")
               .splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short=12", "HEAD").strip(), "changed": changed}


def run(results: Path, soak: str, suite: list[str] | None = None) -> int:
    results.mkdir(parents=True, exist_ok=True)
    for name in ("records.jsonl", "junit.xml", "meta.json"):
        (results / name).unlink(missing_ok=True)
    before = tree_state(REPO)  # before: commits may land while the suite runs
    corpus, examples = _corpus(), _hypothesis_examples()
    env = dict(os.environ, OVERLAY_BOOT_RELIABILITY_LOG=str(results / "records.jsonl"),
               OVERLAY_BOOT_SOAK=soak, OVERLAY_BOOT_NO_SKIP="1")
    began = time.monotonic()
    status = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--junitxml={results / 'junit.xml'}", *(suite or SUITE)], cwd=REPO, env=env)
    after = tree_state(REPO)
    (results / "meta.json").write_text(json.dumps({
        "soak": soak, "seconds": round(time.monotonic() - began), "status": status,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kernel": platform.release(), "commit": before["commit"], "changed": before["changed"],
        "changed_during_run": before != after, "suite": suite or SUITE,
        "corpus": dict(corpus), "examples": examples}))
    return status


def load(results: Path) -> dict:
    """The raw results of a run directory, as the JSON committed beside the document."""
    tests = []
    for case in ET.parse(results / "junit.xml").getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                lines = (child.get("message") or "").splitlines()
                message = lines[0][:200] if lines else ""
                break
            if child.tag == "skipped":
                outcome = "skipped"
        tests.append({"file": case.get("classname", ""), "name": case.get("name"),
                      "outcome": outcome, "message": message})
    records = []
    path = results / "records.jsonl"
    if path.exists():
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {"meta": json.loads((results / "meta.json").read_text()), "tests": tests,
            "records": records}


def _hypothesis_examples() -> dict[str, int]:
    sys.path.insert(0, str(REPO))
    from tests.unit import test_config, test_generator_fuzz

    found = {}
    for module in (test_config, test_generator_fuzz):
        for name in dir(module):
            func = getattr(module, name)
            settings = getattr(func, "_hypothesis_internal_use_settings", None)
            if name.startswith("test_") and settings is not None:
                found[f"{module.__name__.rsplit('.', 1)[-1]}::{name}"] = settings.max_examples
    return found


def _corpus() -> Counter:
    sys.path.insert(0, str(REPO / "tests" / "cases"))
    from casefile import load_cases

    kinds: Counter = Counter()
    for case in load_cases():
        kinds[case.name.split("-")[0]] += 1
    return kinds


def render(data: dict) -> str:
    tests, records, meta = data["tests"], data["records"], data["meta"]
    outcomes = Counter(t["outcome"] for t in tests)
    by_file: dict[str, Counter] = {}
    for t in tests:
        # classname: the module for test functions, module.Class for methods
        parts = [x for x in t["file"].split(".") if not x[:1].isupper()]
        by_file.setdefault("/".join(parts) + ".py", Counter())[t["outcome"]] += 1
    corpus = Counter(meta.get("corpus", {}))
    examples = meta.get("examples", {})
    faults = [r for r in records if r["kind"] == "fault"]
    load_rows = [r for r in records if r["kind"] == "load"]
    isolation = [r for r in records if r["kind"] == "isolation"]
    not_verified = [r for r in records if r["kind"] == "not_verified"]
    leaks = sum(len(r.get("leaks") or []) for r in faults + load_rows)
    failed = [t for t in tests if t["outcome"] != "passed"]
    title = "# Reliability and security"
    if meta.get("changed"):
        title += (f" — DIRTY TREE: {len(meta['changed'])} files differ from commit "
                  f"{meta['commit']}, so this does not describe that commit")
    elif meta.get("changed_during_run"):
        title += f" — THE TREE CHANGED DURING THE RUN (started at commit {meta['commit']})"
    out = [title,
           "",
           "Generated by `tests/reliability_report.py` from the suite's own output (pytest's "
           "JUnit XML and the JSON records the tests write), kept as `docs/reliability.json`; "
           "do not edit by hand.",
           "",
           f"Run: {meta.get('date', '?')}, commit {meta.get('commit', '?')} (taken before the "
           f"run; tree {'clean' if not meta.get('changed') else 'NOT clean'}), kernel "
           f"{meta.get('kernel', '?')}, load {meta.get('soak', '?')} (subhosts x cycles), "
           f"{meta.get('seconds', '?')} s, pytest exit status {meta.get('status', '?')}.",
           "",
           "## Summary",
           "",
           f"- tests: {len(tests)} — {outcomes['passed']} passed, {outcomes['failed']} failed, "
           f"{outcomes['skipped']} skipped; {len(not_verified)} not verified here (not run, "
           "not counted)",
           f"- hostile inputs: {sum(corpus.values())} bad configs in `tests/cases/` (each "
           "given to the parser and to `overlay-boot`, background and `--foreground`), plus "
           f"{sum(examples.values())} generated examples per run of the property tests",
           f"- faults injected: {len(faults)}",
           f"- load: {len(load_rows)} start/stop cycles"
           + (f" of {load_rows[0]['what'].split(',')[0]}" if load_rows else ""),
           f"- isolation/security checks: {len(isolation)}",
           f"- **leaks found: {leaks}**",
           "",
           "## Tests by file",
           "",
           "| file | passed | failed |",
           "|---|---|---|"]
    for name, counts in sorted(by_file.items()):
        out.append(f"| `{name}` | {counts['passed']} | {counts['failed'] + counts['skipped']} |")
    if failed:
        out += ["", "### Not passing", ""]
        out += [f"- `{t['file']}::{t['name']}` — {t['message']}" for t in failed]
    out += ["", "## Not verified here", ""]
    if not_verified:
        out += ["Not run on this machine, for what it lacks; not counted as passed:", ""]
        out += [f"- `{r['what']}`: needs {r.get('needs', '?')}" for r in not_verified]
    else:
        out += ["Nothing: every test of the suite ran."]
    out += ["", "## Inputs tried", "",
            "Bad configuration corpus (`tests/cases/*.conf`, by kind): "
            + ", ".join(f"{k} {v}" for k, v in sorted(corpus.items())) + ".",
            "Every case must be refused with one clear message naming the file and variable, "
            "exit status 78, no traceback, at most a few lines (no echo of huge or escape-laden "
            "values), within a memory limit where the case says so, and nothing left behind.",
            "", "Property-based tests (hypothesis), examples per run:", ""]
    out += [f"- `{k}`: {v}" for k, v in sorted(examples.items())]
    out += ["", "## Faults injected", "", "| fault | state after | leaks |", "|---|---|---|"]
    for r in faults:
        state = r.get("state") or ("; ".join(r["outcomes"]) if r.get("outcomes") else "")
        if r.get("seconds") is not None:
            state = f"{state} ({r['seconds']} s)".strip()
        out.append(f"| {r['what']} | {state} | {len(r.get('leaks') or [])} |")
    out += ["", "## Load", ""]
    if load_rows:
        out += ["Each cycle: all subhosts started through systemctl (each with a sysv service), "
                "overlay-go, overlay-share and D-Bus calls (properties, Run, OpenShell) on all "
                "at once, then stopped. After each stop, leaks by identity (tests/leaks.py: "
                "anything named after a subhost, and anything new in the box against the warm "
                "baseline); systemd's and journald's descriptors against the baseline; the "
                "shared services' descriptors and memory while running; the units' main "
                "processes' memory:", "",
                "| cycle | start s | active | work errors | leaks | systemd fds | "
                "journald fds | main RSS max kB | shared services (fds, RSS kB) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in load_rows:
            services = ", ".join(f"{k} {v['fds']}, {v['rss_kb']}"
                                 for k, v in sorted(r.get("services", {}).items())) or "idle"
            out.append(f"| {r['what']} | {r['start_seconds']} | {r['active']} | "
                       f"{len(r.get('work_errors', []))} | {len(r['leaks'])} | "
                       f"{r['systemd_fds']} | {r['journald_fds']} | {r['main_rss_kb_max']} | "
                       f"{services} |")
    out += ["", "## Isolation and security checks", ""]
    out += [f"- {_short(r['what'])}" for r in isolation]
    out += ["", "## Reproduce", "", "As root, in a checkout with `make setup` done:", "",
            "```sh",
            ".venv/bin/python -m tests.reliability_report          # the suite as in make check",
            ".venv/bin/python -m tests.reliability_report --soak   # with the 50 x 10 load run",
            "make soak                                            # the load run alone",
            ".venv/bin/python -m pytest -q " + " ".join(SUITE),
            "```", ""]
    return "\n".join(out)


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="only write, from this raw results JSON")
    parser.add_argument("--soak", action="store_true", help=f"long load run ({SOAK_LONG})")
    parser.add_argument("--suite", nargs="+", help="test paths instead of the suite's")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "RELIABILITY.md")
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "reliability.json",
                        help="where the raw results go")
    args = parser.parse_args(argv)
    status = 0
    if args.results is not None:
        data = json.loads(args.results.read_text())
    else:
        results = Path(tempfile.mkdtemp(prefix="ob-reliability-"))
        status = run(results, SOAK_LONG if args.soak else "10x3", args.suite)
        data = load(results)
        args.json.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    args.out.write_text(render(data))
    print(f"wrote {args.out} from {args.results or args.json}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
