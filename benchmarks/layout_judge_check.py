"""How the per-view layout verdict (toyworld.layout) and the judge together score ground-truth renders.

Two-object captions with two different colours, drawn at random (seeded), one view each at a random azimuth
and an elevation drawn in --elevations (default [5°, 40°]; 20,20 is the evaluation's ring), at the evaluation's 64 px, lightly blurred and noised. The mirrored scene (the
two objects' places swapped, a two-object Janus) is scored against the original truth to show the verdict
can fail. Writes benchmarks/results/layout_judge_check.json.

    python benchmarks/layout_judge_check.py --scenes 1200
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict
from pathlib import Path

import torch

from distill3d.evaluation.toy import SIZE
from distill3d.toyworld.grammar import COLOR_NAMES, RELATIONS, SHAPES, ObjectSpec, SceneSpec
from distill3d.toyworld.judge import Judge
from distill3d.toyworld.layout import check_on_truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--elevations", default="5,40", help="lo,hi of the uniform elevation draw (20,20: the evaluation's ring)")
    ap.add_argument("--clean", action="store_true", help="No blur and no noise: the truth renders as they are.")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "layout_judge_check.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(a.seed)
    lo, hi = (float(v) for v in a.elevations.split(","))
    report = {"command": f"python benchmarks/layout_judge_check.py --scenes {a.scenes} --seed {a.seed} "
                         f"--elevations {a.elevations}{' --clean' if a.clean else ''} --out {a.out}"}
    judge = Judge.load()
    for rel in RELATIONS:
        specs = []
        while len(specs) < a.scenes // 2:
            c1, c2 = rng.sample(COLOR_NAMES, 2)
            specs.append(SceneSpec((ObjectSpec(rng.choice(SHAPES), c1), ObjectSpec(rng.choice(SHAPES), c2)), rel))
        az = torch.tensor([rng.uniform(0, 360) for _ in specs])
        el = torch.tensor([rng.uniform(lo, hi) for _ in specs])
        soft = {"noise": 0.0, "blur_sigma": 0.0} if a.clean else {}
        report[rel] = asdict(check_on_truth(specs, az, el, SIZE, judge, seed=a.seed, **soft))
        print(rel, report[rel], flush=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
