"""Throughput of the toy world's ground-truth renderer (images/s), written to a JSON file.

    python benchmarks/bench_toyworld.py --out benchmarks/results/toyworld_render.json

Each size renders the same random batch of scenes and cameras several times in one process with one
torch thread (the dataset builder runs one such process per core) and reports the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from distill3d.core.cameras import Cameras
from distill3d.core.io import write_json_atomic
from distill3d.toyworld.dataset import DatasetConfig, sample_scenes, sample_views
from distill3d.toyworld.render import render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/toyworld_render.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    specs = sample_scenes(args.batch, rng, "all")
    views = sample_views(args.batch, rng, DatasetConfig())
    cams = Cameras.from_angles(torch.from_numpy(views[:, 0, 0]), torch.from_numpy(views[:, 0, 1]))
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        render(specs[:8], cams[:8], size)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            render(specs, cams, size)
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        results[str(size)] = {"images_per_second": args.batch / med, "seconds_per_batch": med, "batch": args.batch}
        print(f"{size} px: {args.batch / med:.1f} images/s (median of {args.repeats}, {args.threads} thread)")
    write_json_atomic(args.out, {"command": "python " + " ".join(sys.argv), "threads": args.threads,
                                 "supersample": 2, "load_average": os.getloadavg(), "results": results})


if __name__ == "__main__":
    main()
