"""Intervals for benchmark means: the percentile bootstrap over runs, and paired differences.

A benchmark mean is over runs, one per (prompt, seed); its 95% interval resamples those runs with
replacement (``BOOT`` resamples, a fixed seed, so a report is reproducible) and takes the 2.5th and 97.5th
percentiles of the resampled means. A paired difference against a baseline is formed per (prompt, seed)
first, then bootstrapped the same way, so the variation between prompts that both methods share cancels.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

BOOT = 2000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int  # runs (or pairs) the mean is over

    def format(self, pct: bool = False, digits: int = 3) -> str:
        f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.{digits}g}")
        if self.n < 2:
            return f"{f(self.mean)} (n=1)"
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}]"


def bootstrap(values: Sequence[float], boot: int = BOOT, seed: int = 0, level: float = 0.95) -> Interval | None:
    """Mean of ``values`` with its percentile-bootstrap interval; None for no values."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Interval(mean, mean, mean, 1)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(boot))
    lo = means[math.floor((1 - level) / 2 * (boot - 1))]
    hi = means[math.ceil((1 + level) / 2 * (boot - 1))]
    return Interval(mean, lo, hi, n)


def paired(a: dict[tuple, float], b: dict[tuple, float], **kwargs) -> Interval | None:
    """Bootstrap of a − b over the keys (e.g. (prompt, seed)) both hold a value for."""
    keys = sorted(set(a) & set(b))
    return bootstrap([a[k] - b[k] for k in keys], **kwargs)


__all__ = ["BOOT", "Interval", "bootstrap", "paired"]
