"""The benchmark's pure parts: statistics, the table's rows and their Markdown/CSV/text forms."""

from __future__ import annotations

import csv
import io

import pytest

from bench import analyse
from bench.report import CSV_HEADER, HEADER, Row, cell, csv_table, markdown_table, text_table
from bench.stats import Summary, ratio, summarize


def test_summarize_median_quartiles_range() -> None:
    s = summarize([0.5, 0.1, 0.3, 0.2, 0.4])
    assert s == Summary(n=5, median=0.3, p25=0.2, p75=0.4, low=0.1, high=0.5)
    assert s.iqr == pytest.approx(0.2)


def test_summarize_even_count_and_single_and_empty() -> None:
    assert summarize([1, 2, 3, 4]).median == 2.5
    assert summarize([7]) == Summary(1, 7, 7, 7, 7, 7)
    assert summarize([]) is None


def test_quartiles_stay_within_samples() -> None:
    s = summarize([1.0, 100.0])
    assert 1.0 <= s.p25 <= s.median <= s.p75 <= 100.0


def test_ratio_of_medians() -> None:
    assert ratio(summarize([2, 2, 2]), summarize([1, 1, 1])) == 2
    assert ratio(None, summarize([1])) is None
    assert ratio(summarize([1]), summarize([0])) is None


def row(ours: list[float], budget: float | None = 200, **kw) -> Row:
    return Row("start", "ms", summarize(ours), {"nspawn": summarize([0.05] * 3),
                                                "1.6.4": summarize([0.4] * 3)}, budget, **kw)


def test_pass_fail_against_the_budget_in_shown_units() -> None:
    assert row([0.15, 0.16, 0.17]).passed is True
    assert row([0.25, 0.26, 0.27]).passed is False
    assert row([0.15], ok=False).passed is False  # e.g. leftovers
    assert row([0.15], budget=None).passed is None
    assert Row("x", "ms", None, budget=10).passed is False  # not measured is not a pass


def test_cell_shows_median_and_quartiles() -> None:
    assert cell(summarize([0.1, 0.2, 0.3]), "ms") == "200 (150–250)"
    assert cell(summarize([2**20 * 12.5]), "MiB") == "12.5"
    assert cell(None, "ms") == "—"


def test_markdown_table() -> None:
    md = markdown_table([row([0.15, 0.16, 0.17]), row([0.3], note="a|b")])
    lines = md.splitlines()
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    assert lines[1].count("|") == len(HEADER) + 1
    assert ("| start | ms | 160 (155–165) | 50.0 (50.0–50.0) | 3.20× | 400 (400–400) | 0.40× "
            "| ≤ 200 ms | PASS |") in md
    assert "start [a\\|b]" in md and md.rstrip().endswith("FAIL |")


def test_csv_table_numbers() -> None:
    text = csv_table([row([0.15, 0.16, 0.17]), Row("gen", "ms", None)])
    records = list(csv.DictReader(io.StringIO(text)))
    assert list(records[0]) == list(CSV_HEADER)
    first = records[0]
    assert first["ours_median"] == "160" and first["ours_n"] == "3"
    assert first["nspawn_ratio"] == "3.2" and first["1.6.4_median"] == "400"
    assert first["budget"] == "200" and first["pass"] == "pass"
    assert records[1]["ours_median"] == "" and records[1]["pass"] == ""


def test_text_table_aligned() -> None:
    lines = text_table([row([0.15]), row([0.3])]).splitlines()
    assert lines[0].startswith("measure") and set(lines[1]) <= {"-", " "}
    assert len({line.index("ms") for line in lines[2:]}) == 1


COUNTS = analyse.Counts(concurrency=(100,), generator=(500,), memory=(50, 100),
                        memory_running=100)


def _memory_point(n: int, host: float, inside: float, shared: float) -> dict:
    return {"host": [host * 2**20] * n, "inside": [inside * 2**20] * n,
            "shared": {"overlay-boot-net.service": shared * 2**20,
                       "overlay-boot-bus.service": 0}}


def test_rows_from_raw_data() -> None:
    data = {
        "startstop": {"ours": {"start": [0.05] * 10, "stop": [0.03] * 10, "leaks": []},
                      "nspawn": {"start": [0.025] * 10, "stop": [0.02] * 10},
                      "old": {"start": [0.15] * 10, "stop": [0.1] * 10}},
        "coldstart": {"ours": {"warm": [0.05] * 10, "cold": [0.09] * 10,
                               "cold_over_warm": [1.8] * 10, "leaks": []}},
        "memory": {"ours": {"leaks": [], "counts": {"50": _memory_point(50, 1, 3, 20),
                                                    "100": _memory_point(100, 1, 3, 20)}}},
        "concurrent-100": {"ours": {"start": [4.0] * 10, "stop": [3.0] * 10, "leaks": ["x"],
                                    "not_active": []}},
    }
    rows = {r.measure.strip(): r for r in analyse.rows(data, COUNTS)}
    start = rows["start → ready, systemctl start (cable service running)"]
    assert start.passed and start.ratio("nspawn") == 2
    assert start.ratio("1.6.4") == pytest.approx(1 / 3)
    cold = rows["start → ready, cold (cable service stopped before)"]
    assert cold.passed is False and "paired cold/warm 1.80×" in cold.note  # 90 > 80 ms
    # 1 + 3 MiB of its own + 20 MiB shared among 100 running: 4.2 MiB
    memory = rows["PSS per subhost incl. shared services, 100 running"]
    assert memory.ours.median == pytest.approx(4.2 * 2**20) and memory.passed
    assert rows["of which its processes inside (PID 1 …)"].ours.median == 3 * 2**20
    assert rows["shared service overlay-boot-net (PSS once)"].ours.median == 20 * 2**20
    # 4.4 MiB at 50 running, 4.2 at 100: flat (it even falls)
    assert rows["curve flat: PSS per subhost at 100 / at 50 running"].passed
    assert rows["100 started at once → all active"].passed
    assert rows["100 stopped at once → cleaned"].passed is False  # a leftover, and 3 s > 1 s
    assert rows["leftovers after every stop (ours)"].passed is False
    assert rows["generator, 500 configs"].passed is False  # not measured
    assert rows["overlay-diff --json, 100,000 upper entries"].passed is False  # not measured
    data["diff"] = {"ours": {"diff": [1.2] * 10}}
    data["memory"]["ours"]["counts"]["100"] = _memory_point(100, 2, 3, 20)
    rows = {r.measure.strip(): r for r in analyse.rows(data, COUNTS)}
    assert rows["overlay-diff --json, 100,000 upper entries"].passed
    assert rows["curve flat: PSS per subhost at 100 / at 50 running"].passed is False
    assert rows["PSS per subhost incl. shared services, 100 running"].passed is False
    series = analyse.concurrency_series(data, (1, 100))
    assert list(series) == ["overlay-boot (ours)"] and list(series["overlay-boot (ours)"]) == [100]


def test_results_md_is_rendered_from_the_json_alone() -> None:
    from bench.__main__ import render

    results = {
        "source": {"commit": "0123abc", "dirty": True, "changed": [" M bench/harness.py"]},
        "started": "2026-11-30 09:00:00 UTC", "seconds": 600.0,
        "machine": {"node": "vm", "cpus": 2, "cpu_model": "x", "memory_gib": 23.5,
                    "kernel": "6.1"},
        "load_before": [0.5, 0.4, 0.3], "load_after": [1.5, 1.0, 0.5],
        "options": {"reps": 10, "concurrency_reps": 10, "concurrency": [100],
                    "generator_counts": [500], "memory_counts": [50, 100],
                    "memory_running": 100},
        "errors": [], "notes": ["a note"],
        "data": {"startstop": {"ours": {"start": [0.05] * 10, "stop": [0.03] * 10}}},
    }
    md = render(results)
    assert md.startswith("# Benchmark results — DIRTY TREE")
    assert "`0123abc` plus uncommitted changes" in md and "bench/harness.py" in md
    assert "before: 0.50 0.40 0.30; after: 1.50 1.00 0.50" in md
    assert "| ≤ 60 ms | PASS |" in md and "FAIL" in md  # unmeasured rows fail
    assert "a note" in md and "the machine was busy" in md  # load 1.5 on 2 CPUs
    results["source"]["dirty"] = False
    assert render(results).startswith("# Benchmark results\n")
