"""From the harness' raw samples to the table's rows and the plot's series (SPEC §7 budgets)."""

from __future__ import annotations

from collections.abc import Mapping

from .report import Row
from .stats import Summary, summarize

REF_KINDS = {"nspawn": "nspawn", "1.6.4": "old"}
CLI_REF_KINDS = {"nspawn": "nspawn-cli", "1.6.4": "old"}

# SPEC §7, in the unit each row is shown in
BUDGET_START_MS = 200
BUDGET_STOP_MS = 150
BUDGET_GO_MS = 150
BUDGET_CONFINEMENT_MS = 5  # SPEC §7: what the security model may add to a start
BUDGET_GENERATOR_500_MS = 300
BUDGET_PSS_MB = 12
BUDGET_CONCURRENT_50_S = 10
BUDGET_DIFF_S = 2  # overlay-diff of 100,000 upper entries (issue "What a subhost changed")


Data = Mapping[str, Mapping[str, Mapping]]


def _samples(data: Data, suite: str, kind: str, key: str) -> list[float]:
    return list(data.get(suite, {}).get(kind, {}).get(key, []))


def _sum(data: Data, suite: str, kind: str, key: str) -> Summary | None:
    return summarize(_samples(data, suite, kind, key))


def _leaks(data: Data, suite: str, kind: str = "ours") -> list[str]:
    return list(data.get(suite, {}).get(kind, {}).get("leaks", []))


def _refs(data: Data, suite: str, key: str, kinds: Mapping[str, str]) -> dict:
    return {ref: _sum(data, suite, kind, key) for ref, kind in kinds.items()}


def _pss_part(data: Data, kind: str, inner: bool) -> Summary | None:
    """PSS of the subhost processes on the host side (supervisor) or inside (PID 1 …)."""
    per_subhost = [sum(p["pss"] for p in procs if p["subhost_pidns"] == inner)
                   for procs in data.get("memory", {}).get(kind, {}).get("procs", [])]
    return summarize(per_subhost)


def rows(data: Data, concurrency: tuple[int, ...], generator_counts: tuple[int, ...],
         running: int) -> list[Row]:
    out = [
        Row("start → ready, systemctl start", "ms", _sum(data, "startstop", "ours", "start"),
            _refs(data, "startstop", "start", REF_KINDS), BUDGET_START_MS),
        Row("confinement added to the start (paired with CAPABILITIES=all)", "ms",
            _sum(data, "confinement", "ours", "added"), budget=BUDGET_CONFINEMENT_MS,
            ok=not _leaks(data, "confinement")),
        Row("stop → cleaned, systemctl stop", "ms", _sum(data, "startstop", "ours", "stop"),
            _refs(data, "startstop", "stop", REF_KINDS), BUDGET_STOP_MS,
            ok=not _leaks(data, "startstop")),
        Row("start → ready, command line", "ms", _sum(data, "startstop-cli", "ours-cli", "start"),
            _refs(data, "startstop-cli", "start", {"nspawn": "nspawn-cli"})
            | {"1.6.4": _sum(data, "startstop", "old", "start")}),
        Row("stop → cleaned, command line", "ms", _sum(data, "startstop-cli", "ours-cli", "stop"),
            _refs(data, "startstop-cli", "stop", {"nspawn": "nspawn-cli"})
            | {"1.6.4": _sum(data, "startstop", "old", "stop")},
            ok=not _leaks(data, "startstop-cli", "ours-cli")),
        Row("overlay-go NAME -- true", "ms", _sum(data, "go", "ours", "go"),
            {"1.6.4": _sum(data, "go", "old", "go")}, BUDGET_GO_MS),
    ]
    out.append(Row("overlay-diff --json, 100,000 upper entries", "s",
                   _sum(data, "diff", "ours", "diff"), budget=BUDGET_DIFF_S))
    for n in generator_counts:
        out.append(Row(f"generator, {n} config{'s' if n > 1 else ''}", "ms",
                       summarize(data.get("generator", {}).get("ours", {}).get(str(n), [])),
                       budget=BUDGET_GENERATOR_500_MS if n == 500 else None))
    out.append(Row(f"PSS per subhost, {running} running", "MB",
                   _sum(data, "memory", "ours", "pss"), _refs(data, "memory", "pss", REF_KINDS),
                   BUDGET_PSS_MB, ok=not _leaks(data, "memory")))
    out.append(Row("  of which the supervisor (host side)", "MB", _pss_part(data, "ours", False),
                   {ref: _pss_part(data, kind, False) for ref, kind in REF_KINDS.items()}))
    out.append(Row("  of which PID 1 (inside)", "MB", _pss_part(data, "ours", True),
                   {ref: _pss_part(data, kind, True) for ref, kind in REF_KINDS.items()}))
    bus = _sum(data, "memory", "ours", "bus_pss")
    if bus is not None and bus.median > 0:
        out.append(Row("PSS of the shared D-Bus service (once)", "MB", bus))
    for n in concurrency:
        suite = f"concurrent-{n}"
        not_active = data.get(suite, {}).get("ours", {}).get("not_active", [])
        out.append(Row(f"{n} started at once → all active", "s",
                       _sum(data, suite, "ours", "start"),
                       {"nspawn": _sum(data, suite, "nspawn", "start")},
                       BUDGET_CONCURRENT_50_S if n == 50 else None, ok=not not_active,
                       note=f"{len(not_active)} not active" if not_active else ""))
        left = _leaks(data, suite)
        out.append(Row(f"{n} stopped at once → cleaned", "s", _sum(data, suite, "ours", "stop"),
                       {"nspawn": _sum(data, suite, "nspawn", "stop")}, ok=not left,
                       note=f"{len(left)} leftovers" if left else ""))
    leaks = sum(len(v.get("leaks", [])) for kinds in data.values() for k, v in kinds.items()
                if k.startswith("ours"))
    out.append(Row("leftovers after every stop (ours)", "count", summarize([leaks]), budget=0))
    return out


def concurrency_series(data: Data, concurrency: tuple[int, ...]) -> dict[str, dict[int, Summary]]:
    series: dict[str, dict[int, Summary]] = {}
    for label, kind in (("overlay-boot (ours)", "ours"), ("systemd-nspawn", "nspawn")):
        points = {n: s for n in concurrency
                  if (s := _sum(data, f"concurrent-{n}", kind, "start")) is not None}
        if points:
            series[label] = points
    return series
