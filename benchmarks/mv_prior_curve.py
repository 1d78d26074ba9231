"""The multi-view prior's training curve against wall time: training's own judged figures (``runs/toy-mv/log.jsonl``,
written at each checkpoint by ``distill3d toy train``), plus the same figures measured here, with the same function
and settings (``judged_accuracy`` 4 held-out captions x 4 samples per kind, ``judged_group_accuracy`` 4 captions x 2
groups of 4 views per kind, DDIM 25 steps, CFG 5), for checkpoints the log has no line for: the shipped single-view
prior inflated across groups of 4 views (step 0: the fine-tune's start) and any saved copy of a checkpoint.

    python3 benchmarks/mv_prior_curve.py --log runs/toy-mv/log.jsonl --extra runs/toy-mv-step646 \\
        --out benchmarks/results/toy_mv_curve.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from distill3d.priors.toy.evaluate import judged_accuracy, judged_group_accuracy
from distill3d.priors.toy.model import with_views
from distill3d.priors.toy.prior import ToyPrior
from distill3d.priors.toy.train import TrainConfig, load_checkpoint
from distill3d.toyworld.judge import Judge


def measure(model, judge) -> dict[str, float]:
    return judged_accuracy(model, judge, 4, 4) | judged_group_accuracy(model, judge, 4, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="Checkpoint folders to measure here.")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    judge = Judge.load()
    points = [{"step": 0, "minutes": 0.0, "source": "measured here: the shipped prior inflated to 4 views",
               "judged": measure(with_views(ToyPrior.load("toy").model, 4), judge)}]
    print(points[-1], flush=True)
    for folder in a.extra:
        state = load_checkpoint(folder, TrainConfig(), torch.device("cpu"))
        points.append({"step": state.step, "minutes": round(state.minutes, 2), "source": f"measured here: {folder}",
                       "judged": measure(state.ema, judge)})
        print(points[-1], flush=True)
    for line in a.log.read_text().splitlines():
        rec = json.loads(line)
        if "judged" in rec:
            points.append({"step": rec["step"], "minutes": rec["minutes"], "source": "training's log",
                           "judged": rec["judged"], "eval": rec.get("eval")})
    points.sort(key=lambda p: p["step"])
    a.out.write_text(json.dumps({"command": "python3 benchmarks/mv_prior_curve.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(a).items()),
        "points": points}, indent=1) + "\n")
    keys = sorted({k for p in points for k in p["judged"]})
    print("| step | minutes | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 2))
    for p in points:
        print(f"| {p['step']} | {p['minutes']:.0f} | " + " | ".join(
            f"{p['judged'][k]:.0%}" if k in p["judged"] else "–" for k in keys) + " |")


if __name__ == "__main__":
    main()
