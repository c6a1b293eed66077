"""From the harness' raw samples to the table's rows and the plot's series (SPEC §7 budgets,
second round: issue 13)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .report import Row
from .stats import Summary, summarize

REF_KINDS = {"nspawn": "nspawn", "1.6.4": "old"}
CLI_REF_KINDS = {"nspawn": "nspawn-cli", "1.6.4": "old"}

# SPEC §7, in the unit each row is shown in
BUDGET_START_MS = 60  # warm: the cable service already runs
BUDGET_COLD_START_MS = 80  # the cable service stopped before the start
BUDGET_STOP_MS = 40
BUDGET_GO_MS = 40
BUDGET_CONFINEMENT_MS = 5  # what the security model may add to a start
BUDGET_GENERATOR_500_MS = 150
BUDGET_PSS_MIB = 5  # per subhost, the shared services' PSS divided among the running ones
BUDGET_CONCURRENT_N = 100
BUDGET_CONCURRENT_START_S = 5
BUDGET_CONCURRENT_STOP_S = 1
BUDGET_DIFF_S = 2  # overlay-diff of 100,000 upper entries
BUDGET_CURVE_GROWTH = 1.10  # PSS per subhost at the most running / at the fewest: "flat"


Data = Mapping[str, Mapping[str, Mapping]]


@dataclass(frozen=True)
class Counts:
    """What the run was asked to measure (runner.Options' counts)."""

    concurrency: Sequence[int]
    generator: Sequence[int]
    memory: Sequence[int]  # the memory curve's points
    memory_running: int  # the budget's point, where the references are measured too


def _samples(data: Data, suite: str, kind: str, key: str) -> list[float]:
    return list(data.get(suite, {}).get(kind, {}).get(key, []))


def _sum(data: Data, suite: str, kind: str, key: str) -> Summary | None:
    return summarize(_samples(data, suite, kind, key))


def _leaks(data: Data, suite: str, kind: str = "ours") -> list[str]:
    return list(data.get(suite, {}).get(kind, {}).get("leaks", []))


def _refs(data: Data, suite: str, key: str, kinds: Mapping[str, str]) -> dict:
    return {ref: _sum(data, suite, kind, key) for ref, kind in kinds.items()}


def _memory(data: Data, kind: str, count: int) -> Mapping | None:
    return data.get("memory", {}).get(kind, {}).get("counts", {}).get(str(count))


def shared_pss(data: Data, count: int) -> dict[str, float]:
    """The shared services' PSS (bytes, each once) with COUNT of ours running."""
    point = _memory(data, "ours", count)
    return dict(point.get("shared", {})) if point else {}


def per_subhost(data: Data, kind: str, count: int, part: str = "all") -> list[float]:
    """PSS per running subhost (bytes): PART "host" side, "inside" its PID namespace, "own"
    (both), or "all": own plus the shared services' PSS divided by the running subhosts."""
    point = _memory(data, kind, count)
    if not point:
        return []
    host, inside = point.get("host", []), point.get("inside", [])
    if part in ("host", "inside"):
        return list(point.get(part, []))
    own = [h + i for h, i in zip(host, inside, strict=True)]
    if part == "own" or not own:
        return own
    share = sum(point.get("shared", {}).values()) / len(own)
    return [x + share for x in own]


def _paired_note(data: Data) -> str:
    ratios = summarize(_samples(data, "coldstart", "ours", "cold_over_warm"))
    if ratios is None:
        return ""
    return (f"paired cold/warm {ratios.median:.2f}× "
            f"({ratios.p25:.2f}–{ratios.p75:.2f}); warm in the same pairs "
            f"{_ms(_sum(data, 'coldstart', 'ours', 'warm'))} ms")


def _ms(s: Summary | None) -> str:
    return "—" if s is None else f"{s.median * 1e3:.0f}"


def _curve_rows(data: Data, points: Sequence[int]) -> list[Row]:
    out = []
    medians = {}
    for n in points:
        s = summarize(per_subhost(data, "ours", n))
        if s is not None:
            medians[n] = s.median
        out.append(Row(f"  curve: PSS per subhost incl. shared, {n} running", "MiB", s))
    if len(medians) >= 2:
        first, last = min(medians), max(medians)
        growth = summarize([medians[last] / medians[first]])
        out.append(Row(f"  curve flat: PSS per subhost at {last} / at {first} running", "×",
                       growth, budget=BUDGET_CURVE_GROWTH))
    return out


def rows(data: Data, counts: Counts) -> list[Row]:
    n_mem = counts.memory_running
    out = [
        Row("start → ready, systemctl start (cable service running)", "ms",
            _sum(data, "startstop", "ours", "start"),
            _refs(data, "startstop", "start", REF_KINDS), BUDGET_START_MS),
        Row("start → ready, cold (cable service stopped before)", "ms",
            _sum(data, "coldstart", "ours", "cold"), budget=BUDGET_COLD_START_MS,
            ok=not _leaks(data, "coldstart"), note=_paired_note(data)),
        Row("confinement added to the start (paired with CAPABILITIES=all)", "ms",
            _sum(data, "confinement", "ours", "added"), budget=BUDGET_CONFINEMENT_MS,
            ok=not _leaks(data, "confinement")),
        Row("stop → cleaned, systemctl stop", "ms", _sum(data, "startstop", "ours", "stop"),
            _refs(data, "startstop", "stop", REF_KINDS), BUDGET_STOP_MS,
            ok=not _leaks(data, "startstop")),
        Row("  floor: systemctl start of a Type=exec /bin/sleep unit", "ms",
            _sum(data, "floor", "floor-exec", "start")),
        Row("  floor: systemctl start of a Type=notify `python3 -I -S` saying READY=1", "ms",
            _sum(data, "floor", "floor-python", "start")),
        Row("  floor: systemctl stop of that Python unit", "ms",
            _sum(data, "floor", "floor-python", "stop")),
        Row("start → ready, command line", "ms", _sum(data, "startstop-cli", "ours-cli", "start"),
            _refs(data, "startstop-cli", "start", {"nspawn": "nspawn-cli"})
            | {"1.6.4": _sum(data, "startstop", "old", "start")}),
        Row("stop → cleaned, command line", "ms", _sum(data, "startstop-cli", "ours-cli", "stop"),
            _refs(data, "startstop-cli", "stop", {"nspawn": "nspawn-cli"})
            | {"1.6.4": _sum(data, "startstop", "old", "stop")},
            ok=not _leaks(data, "startstop-cli", "ours-cli")),
        Row("overlay-go NAME -- true", "ms", _sum(data, "go", "ours", "go"),
            {"1.6.4": _sum(data, "go", "old", "go")}, BUDGET_GO_MS),
        Row("overlay-diff --json, 100,000 upper entries", "s",
            _sum(data, "diff", "ours", "diff"), budget=BUDGET_DIFF_S),
    ]
    for n in counts.generator:
        out.append(Row(f"generator, {n} config{'s' if n > 1 else ''}", "ms",
                       summarize(data.get("generator", {}).get("ours", {}).get(str(n), [])),
                       budget=BUDGET_GENERATOR_500_MS if n == 500 else None))
    out.append(Row(f"PSS per subhost incl. shared services, {n_mem} running", "MiB",
                   summarize(per_subhost(data, "ours", n_mem)),
                   {ref: summarize(per_subhost(data, kind, n_mem))
                    for ref, kind in REF_KINDS.items()},
                   BUDGET_PSS_MIB, ok=not _leaks(data, "memory")))
    for part, label in (("host", "its processes on the host side"),
                        ("inside", "its processes inside (PID 1 …)")):
        out.append(Row(f"  of which {label}", "MiB",
                       summarize(per_subhost(data, "ours", n_mem, part)),
                       {ref: summarize(per_subhost(data, kind, n_mem, part))
                        for ref, kind in REF_KINDS.items()}))
    for unit, value in sorted(shared_pss(data, n_mem).items()):
        out.append(Row(f"  shared service {unit.removesuffix('.service')} (PSS once)", "MiB",
                       summarize([value]),
                       note="" if value else "not running"))
    out += _curve_rows(data, sorted(counts.memory))
    for n in counts.concurrency:
        suite = f"concurrent-{n}"
        not_active = data.get(suite, {}).get("ours", {}).get("not_active", [])
        budgeted = n == BUDGET_CONCURRENT_N
        out.append(Row(f"{n} started at once → all active", "s",
                       _sum(data, suite, "ours", "start"),
                       {"nspawn": _sum(data, suite, "nspawn", "start")},
                       BUDGET_CONCURRENT_START_S if budgeted else None, ok=not not_active,
                       note=f"{len(not_active)} not active" if not_active else ""))
        left = _leaks(data, suite)
        out.append(Row(f"{n} stopped at once → cleaned", "s", _sum(data, suite, "ours", "stop"),
                       {"nspawn": _sum(data, suite, "nspawn", "stop")},
                       BUDGET_CONCURRENT_STOP_S if budgeted else None, ok=not left,
                       note=f"{len(left)} leftovers" if left else ""))
    leaks = sum(len(v.get("leaks", [])) for kinds in data.values() for k, v in kinds.items()
                if k.startswith("ours"))
    out.append(Row("leftovers after every stop (ours)", "count", summarize([leaks]), budget=0))
    return out


def concurrency_series(data: Data, concurrency: Sequence[int]) -> dict[str, dict[int, Summary]]:
    series: dict[str, dict[int, Summary]] = {}
    for label, kind in (("overlay-boot (ours)", "ours"), ("systemd-nspawn", "nspawn")):
        points = {n: s for n in concurrency
                  if (s := _sum(data, f"concurrent-{n}", kind, "start")) is not None}
        if points:
            series[label] = points
    return series
