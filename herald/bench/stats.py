"""Pure arithmetic for the bench: percentiles (also over censored samples), rates and slopes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

INF = math.inf


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's
    default); None for no values. `inf` values sort last, so a percentile that reaches into
    them is `inf`: "later than we watched", not a number we invent."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower, upper = math.floor(position), math.ceil(position)
    if ordered[upper] == INF:
        return INF if position > lower or ordered[lower] == INF else ordered[lower]
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True)
class Summary:
    """Latency summary in seconds; `censored` samples were not seen completing (counted as inf)."""

    count: int
    censored: int
    p50: float | None
    p95: float | None
    p99: float | None
    max_seen: float | None
    mean_seen: float | None

    def to_json(self) -> dict:
        def show(value: float | None) -> float | str | None:
            if value is None:
                return None
            return "inf" if value == INF else round(value, 6)
        return {"count": self.count, "censored": self.censored, "p50_s": show(self.p50),
                "p95_s": show(self.p95), "p99_s": show(self.p99),
                "max_seen_s": show(self.max_seen), "mean_seen_s": show(self.mean_seen)}


def summarize(values: Iterable[float]) -> Summary:
    """p50/p95/p99 over every sample, censored ones included as inf; max/mean over the seen ones."""
    samples = list(values)
    seen = [value for value in samples if value != INF]
    return Summary(
        count=len(samples), censored=len(samples) - len(seen),
        p50=percentile(samples, 50), p95=percentile(samples, 95), p99=percentile(samples, 99),
        max_seen=max(seen) if seen else None,
        mean_seen=sum(seen) / len(seen) if seen else None)


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope dy/dx; 0 for fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def cumulative_counts(times: Iterable[float], edges: Sequence[float]) -> list[int]:
    """How many of `times` are <= each edge (edges ascending)."""
    ordered = sorted(times)
    counts, index = [], 0
    for edge in edges:
        while index < len(ordered) and ordered[index] <= edge:
            index += 1
        counts.append(index)
    return counts


def rate_in_window(times: Iterable[float], start: float, end: float) -> float:
    """Events per second whose time falls in [start, end)."""
    if end <= start:
        return 0.0
    return sum(1 for t in times if start <= t < end) / (end - start)
