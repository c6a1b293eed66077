"""The benchmark's one table: rows of (measure, ours, references, ratios, budget, pass/fail),
rendered as plain text, Markdown and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from .stats import Summary, ratio

REFERENCES = ("nspawn", "1.6.4")  # the reference columns, in order
SCALES = {"ms": 1e3, "MiB": 1 / 2**20, "s": 1.0, "count": 1.0, "×": 1.0}  # raw -> shown


@dataclass(frozen=True)
class Row:
    """One measure. Summaries are raw (seconds or bytes); ``unit`` says how they are shown and
    ``budget`` is in that unit (ours' median must be at most it)."""

    measure: str
    unit: str
    ours: Summary | None
    refs: dict[str, Summary | None] = field(default_factory=dict)
    budget: float | None = None
    ok: bool = True  # further conditions of the budget (no leftovers, all active)
    note: str = ""

    def shown(self, s: Summary | None) -> float | None:
        return None if s is None else s.median * SCALES[self.unit]

    @property
    def passed(self) -> bool | None:
        if self.budget is None:
            return None if self.ok else False
        value = self.shown(self.ours)
        return value is not None and value <= self.budget and self.ok

    def ratio(self, ref: str) -> float | None:
        return ratio(self.ours, self.refs.get(ref))


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "count":
        return f"{value:g}"
    if unit in ("s", "×"):
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def cell(s: Summary | None, unit: str) -> str:
    """``median (p25–p75)`` in UNIT."""
    if s is None:
        return "—"
    k = SCALES[unit]
    if s.n == 1 or unit == "count":
        return _num(s.median * k, unit)
    return f"{_num(s.median * k, unit)} ({_num(s.p25 * k, unit)}–{_num(s.p75 * k, unit)})"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _verdict(row: Row) -> str:
    return {True: "PASS", False: "FAIL", None: "—"}[row.passed]


def _budget(row: Row) -> str:
    if row.budget is None:
        return "—"
    return f"≤ {row.budget:g}" + (f" {row.unit}" if row.unit != "count" else "")


HEADER = ("measure", "unit", "ours", *(c for r in REFERENCES for c in (r, f"ours/{r}")),
          "budget", "pass/fail")


def cells(row: Row) -> list[str]:
    refs = [c for r in REFERENCES
            for c in (cell(row.refs.get(r), row.unit), _ratio(row.ratio(r)))]
    measure = row.measure + (f" [{row.note}]" if row.note else "")
    return [measure, row.unit, cell(row.ours, row.unit), *refs, _budget(row), _verdict(row)]


def text_table(rows: Sequence[Row]) -> str:
    table = [list(HEADER), *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(table):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def markdown_table(rows: Sequence[Row]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(HEADER) + " |",
           "|" + "|".join("---" if i == 0 else "--:" for i in range(len(HEADER))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in cells(r)) + " |" for r in rows]
    return "\n".join(out) + "\n"


CSV_HEADER = ("measure", "unit", "note", "ours_n", "ours_median", "ours_p25", "ours_p75",
              "ours_min", "ours_max",
              *(f"{r}_{c}" for r in REFERENCES for c in ("n", "median", "p25", "p75", "ratio")),
              "budget", "pass")


def _fields(s: Summary | None, unit: str, *, full: bool) -> list[str]:
    if s is None:
        return [""] * (6 if full else 4)
    k = SCALES[unit]
    values = [s.median, s.p25, s.p75] + ([s.low, s.high] if full else [])
    return [str(s.n), *(f"{v * k:.6g}" for v in values)]


def csv_table(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for row in rows:
        refs: list[str] = []
        for r in REFERENCES:
            value = row.ratio(r)
            refs += _fields(row.refs.get(r), row.unit, full=False)
            refs.append("" if value is None else f"{value:.4g}")
        passed = row.passed
        w.writerow([row.measure, row.unit, row.note,
                    *_fields(row.ours, row.unit, full=True), *refs,
                    "" if row.budget is None else f"{row.budget:g}",
                    "" if passed is None else ("pass" if passed else "fail")])
    return buf.getvalue()
