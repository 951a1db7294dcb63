import math

import pytest

from herald.bench.stats import INF, cumulative_counts, percentile, rate_in_window, slope, summarize


def test_percentile_interpolates_like_numpy_default() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 50) is None


def test_percentile_is_order_independent() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_censored_samples_push_high_percentiles_to_inf_not_to_a_number() -> None:
    values = [0.1] * 98 + [INF, INF]
    assert percentile(values, 50) == pytest.approx(0.1)
    assert percentile(values, 99) == INF
    assert percentile([0.1] * 99 + [INF], 95) == pytest.approx(0.1)


def test_summarize_counts_censored_and_keeps_seen_stats_finite() -> None:
    summary = summarize([0.2, 0.4, INF])
    assert summary.count == 3 and summary.censored == 1
    assert summary.max_seen == 0.4 and summary.mean_seen == pytest.approx(0.3)
    assert summary.p99 == INF
    assert summary.to_json()["p99_s"] == "inf"
    empty = summarize([])
    assert empty.p50 is None and empty.max_seen is None


def test_slope_of_a_line_and_of_flat_or_degenerate_input() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(0, 7), (1, 7), (2, 7)]) == 0.0
    assert slope([(1, 1)]) == 0.0
    assert slope([(1, 1), (1, 5)]) == 0.0


def test_cumulative_counts_and_rate_in_window() -> None:
    times = [0.5, 1.0, 1.5, 3.0]
    assert cumulative_counts(times, [0, 1, 2, 3]) == [0, 2, 3, 4]
    assert rate_in_window(times, 0, 2) == pytest.approx(1.5)
    assert rate_in_window(times, 2, 2) == 0.0
    assert not math.isnan(rate_in_window([], 0, 1))
