"""Cost of one batched prediction of the embedded priors, per row: the default (object tokens) against
the first prior (word tokens, ``toy-words``), in interleaved rounds so machine noise hits both alike.

    python benchmarks/bench_prior_call.py --threads 1 --out benchmarks/results/prior_call.json

Rows are what a guidance step sends: 4 views x (text, image + empty text) rows at one t; text tokens
are cached by each prior after the first call, as they are during a run."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/prior_call.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from distill3d.priors.base import Condition
    from distill3d.priors.toy.prior import SHIPPED, ToyPrior

    priors = {name: ToyPrior.load(name) for name in SHIPPED}
    g = torch.Generator().manual_seed(0)
    n = 2 * args.views
    z = torch.randn(n, 3, 32, 32, generator=g)
    t = torch.full((n,), 500)
    images = torch.rand(args.views, 3, 32, 32, generator=g)
    rows = ([Condition("a red cube on top of a blue sphere")] * args.views
            + [Condition("", img, 1.0) for img in images])
    times: dict[str, list[float]] = {k: [] for k in priors}
    with torch.no_grad():
        for p in priors.values():
            p.predict_noise(z, t, rows)  # warm-up, fills the text cache
        for _ in range(args.rounds):
            for name, p in priors.items():
                start = time.perf_counter()
                p.predict_noise(z, t, rows)
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"command": f"python benchmarks/bench_prior_call.py --threads {args.threads} --rounds {args.rounds} "
                         f"--views {args.views}", "rows": n,
              "median_seconds": med, "seconds_per_row": {k: v / n for k, v in med.items()},
              "ratio_toy_over_toy_words": med["toy"] / med["toy-words"],
              "params": {k: sum(q.numel() for q in p.parameters()) for k, p in priors.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
