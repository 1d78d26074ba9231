"""Compare two ``distill3d bench quality`` result files run by run.

    python benchmarks/compare_quality.py OLD/results.json NEW/results.json [--out FILE.md]

For every method: the mean judged match and image MSE of the runs both files hold (same method, prompt and
seed) with 95% bootstrap intervals over those runs, the paired difference new − old with its interval, the
mean over every run of the new file, and the median seconds per run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path


def bootstrap(xs: list[float], resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``xs`` and the 2.5% / 97.5% quantiles of its bootstrap distribution."""
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    return statistics.fmean(xs), means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def compare(old: list[dict], new: list[dict]) -> str:
    def key(r: dict) -> tuple:
        return r["method"], r["prompt"], r["seed"]

    by_old, by_new = {key(r): r for r in old}, {key(r): r for r in new}
    lines = ["| method | metric | old | new | new − old (paired) | new, all its runs | s/run old → new |",
             "|---|---|---|---|---|---|---|"]
    for method in sorted({k[0] for k in by_old}):
        keys = [k for k in by_old if k[0] == method and k in by_new]
        if not keys:
            continue
        for metric in ("match_rate", "image_mse"):
            o = [by_old[k][metric] for k in keys]
            n = [by_new[k][metric] for k in keys]
            every = [r[metric] for r in new if r["method"] == method]

            def fmt(t: tuple[float, float, float]) -> str:
                return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"

            secs = (statistics.median(by_old[k]["seconds"] for k in keys),
                    statistics.median(by_new[k]["seconds"] for k in keys))
            lines.append(f"| {method} | {metric} | {fmt(bootstrap(o))} | {fmt(bootstrap(n))} | "
                         f"{fmt(bootstrap([b - a for a, b in zip(o, n)]))} | {fmt(bootstrap(every))} (n={len(every)}) | "
                         f"{secs[0]:.0f} → {secs[1]:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    table = compare(json.loads(Path(args.old).read_text())["runs"], json.loads(Path(args.new).read_text())["runs"])
    if args.out:
        Path(args.out).write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
