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
    assert cell(summarize([2**20 * 12.5]), "MB") == "12.5"
    assert cell(None, "ms") == "—"


def test_markdown_table() -> None:
    md = markdown_table([row([0.15, 0.16, 0.17]), row([0.3], note="a|b")])
    lines = md.splitlines()
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    assert lines[1].count("|") == len(HEADER) + 1
    assert ("| start | ms | 160 (155–165) | 50.0 (50.0–50.0) | 3.20× | 400 (400–400) | 0.40× "
            "| ≤ 200 ms | pass |") in md
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


def test_rows_from_raw_data() -> None:
    data = {
        "startstop": {"ours": {"start": [0.1] * 10, "stop": [0.05] * 10, "leaks": []},
                      "nspawn": {"start": [0.05] * 10, "stop": [0.02] * 10},
                      "old": {"start": [0.3] * 10, "stop": [0.1] * 10}},
        "memory": {"ours": {"pss": [10 * 2**20] * 20, "leaks": [],
                            "procs": [[{"pss": 6 * 2**20, "subhost_pidns": False},
                                       {"pss": 4 * 2**20, "subhost_pidns": True}]] * 20}},
        "concurrent-50": {"ours": {"start": [5.0] * 10, "stop": [3.0] * 10, "leaks": ["x"],
                                   "not_active": []}},
    }
    rows = {r.measure: r for r in analyse.rows(data, (50,), (500,), 20)}
    start = rows["start → ready, systemctl start"]
    assert start.passed and start.ratio("nspawn") == 2
    assert start.ratio("1.6.4") == pytest.approx(1 / 3)
    assert rows["PSS per subhost, 20 running"].passed
    assert rows["  of which PID 1 (inside)"].ours.median == 4 * 2**20
    assert rows["50 started at once → all active"].passed
    assert rows["50 stopped at once → cleaned"].passed is False  # a leftover
    assert rows["leftovers after every stop (ours)"].passed is False
    assert rows["generator, 500 configs"].passed is False  # not measured
    assert rows["overlay-diff --json, 100,000 upper entries"].passed is False  # not measured
    data["diff"] = {"ours": {"diff": [1.2] * 10}}
    rows = {r.measure: r for r in analyse.rows(data, (50,), (500,), 20)}
    assert rows["overlay-diff --json, 100,000 upper entries"].passed
    series = analyse.concurrency_series(data, (1, 50))
    assert list(series) == ["overlay-boot (ours)"] and list(series["overlay-boot (ours)"]) == [50]
