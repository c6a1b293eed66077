"""Statistics of repeated measurements: median and spread (quartiles, range)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """n samples in their own unit (seconds, bytes)."""

    n: int
    median: float
    p25: float
    p75: float
    low: float
    high: float

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25


def summarize(samples: Sequence[float]) -> Summary | None:
    """Median, quartiles (inclusive method: they stay within the samples) and range."""
    values = sorted(float(x) for x in samples)
    if not values:
        return None
    if len(values) == 1:
        v = values[0]
        return Summary(1, v, v, v, v, v)
    p25, _, p75 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(len(values), statistics.median(values), p25, p75, values[0], values[-1])


def ratio(ours: Summary | None, reference: Summary | None) -> float | None:
    """ours / reference of the medians (None when either is missing or the reference is 0)."""
    if ours is None or reference is None or reference.median == 0:
        return None
    return ours.median / reference.median
