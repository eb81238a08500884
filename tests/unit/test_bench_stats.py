"""The benchmark's pure arithmetic: percentiles, medians, spread, speedups, turn
order, targets, and reading sockperf's summary."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bench.report import Target
from tests.bench.stats import median, percentile, rotate, speedup, summarize
from tests.bench.traffic import TrafficFailed, parse_sockperf


@pytest.mark.parametrize(
    ("pct", "expected"),
    [(0, 1.0), (10, 1.0), (50, 5.0), (90, 9.0), (99, 10.0), (100, 10.0)],
    ids=["p0-is-min", "p10", "p50", "p90", "p99-of-10-is-max", "p100"],
)
def test_percentile_is_nearest_rank(pct: float, expected: float) -> None:
    samples = [float(v) for v in (7, 3, 10, 1, 5, 9, 2, 8, 4, 6)]
    assert percentile(samples, pct) == expected


def test_p99_of_a_burst_of_16_is_its_slowest() -> None:
    assert percentile([float(i) for i in range(16)], 99) == 15.0


@given(st.lists(st.floats(-1e6, 1e6), min_size=1), st.floats(0, 100))
def test_percentile_is_one_of_the_samples_and_monotonic(
    samples: list[float], pct: float
) -> None:
    assert percentile(samples, pct) in samples
    assert percentile(samples, pct) <= percentile(samples, min(100.0, pct + 10))


def test_percentile_and_median_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        median([])


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_summary_spread_is_range_over_median() -> None:
    summary = summarize([9.0, 10.0, 12.0])
    assert (summary.n, summary.median, summary.low, summary.high) == (3, 10, 9, 12)
    assert summary.spread == pytest.approx(0.3)
    assert summary.to_dict()["spread"] == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("ours", "theirs", "higher_is_better", "expected"),
    [
        (15.0, 10.0, True, 1.5),  # throughput: more is better
        (20.0, 30.0, False, 1.5),  # latency: less is better
        (30.0, 20.0, False, 2 / 3),
    ],
    ids=["throughput-ours-faster", "latency-ours-faster", "latency-ours-slower"],
)
def test_speedup_above_one_means_ours_wins(
    ours: float, theirs: float, higher_is_better: bool, expected: float
) -> None:
    assert speedup(ours, theirs, higher_is_better=higher_is_better) == pytest.approx(
        expected
    )


def test_speedup_against_zero() -> None:
    assert speedup(1.0, 0.0, higher_is_better=True) == math.inf
    assert math.isnan(speedup(0.0, 0.0, higher_is_better=True))


def test_rotate_gives_each_configuration_a_turn_first() -> None:
    items = ["a", "b", "c"]
    assert [rotate(items, i)[0] for i in range(4)] == ["a", "b", "c", "a"]
    assert sorted(rotate(items, 2)) == items
    assert rotate([], 3) == []


def test_target_met_not_met_and_not_measured() -> None:
    assert Target("ratio", 1.4, 1.3, False, "x").met is True
    assert Target("ratio", 1.2, 1.3, False, "x").met is False
    assert Target("latency", 120.0, 100.0, True, "ms").met is False
    assert Target("latency", math.nan, 100.0, True, "ms").met is None


SOCKPERF = """\
sockperf: \x1b[2;35m====> avg-rtt=74.519 (std-dev=41.878)\x1b[0m
sockperf: ---> percentile 99.000 =  138.074
sockperf: ---> percentile 90.000 =   91.796
sockperf: ---> percentile 50.000 =   70.113
"""


def test_sockperf_summary_is_read_without_colours() -> None:
    assert parse_sockperf(SOCKPERF) == {"mean": 74.519, "p50": 70.113, "p99": 138.074}


def test_sockperf_output_without_a_summary_fails() -> None:
    with pytest.raises(TrafficFailed):
        parse_sockperf("sockperf: ERROR: connect failed")
