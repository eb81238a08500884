"""Summaries of repeated samples: medians, nearest-rank percentiles, spread, the
ratios between configurations measured in the same run, and the order in which
interleaved configurations take turns."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100): always one of the samples, so a p99
    of 16 samples is honestly their maximum rather than an interpolation."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0..100")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    if not samples:
        raise ValueError("median of no samples")
    return float(statistics.median(samples))


@dataclass(frozen=True)
class Summary:
    """What the report shows of a list of samples."""

    n: int
    median: float
    low: float
    high: float
    p50: float
    p90: float
    p99: float

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the repetitions were."""
        return (self.high - self.low) / self.median if self.median else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": self.spread}


def summarize(samples: Sequence[float]) -> Summary:
    return Summary(
        n=len(samples),
        median=median(samples),
        low=min(samples),
        high=max(samples),
        p50=percentile(samples, 50),
        p90=percentile(samples, 90),
        p99=percentile(samples, 99),
    )


def speedup(ours: float, theirs: float, *, higher_is_better: bool) -> float:
    """How many times better `ours` is than `theirs`: > 1 means ours wins.

    Throughput and rates: ours / theirs. Latencies and durations: theirs / ours.
    """
    num, den = (ours, theirs) if higher_is_better else (theirs, ours)
    if den == 0:
        return math.inf if num > 0 else math.nan
    return num / den


def rotate(items: list[T], by: int) -> list[T]:
    """items started at position `by`: each configuration takes its turn first."""
    k = by % len(items) if items else 0
    return items[k:] + items[:k]
