"""``distill3d bench step-cost``: per-step wall time of each guidance method relative to SDS with the same
number of views, measured in one process with the methods interleaved round by round (the machine is shared
and noisy: only ratios taken in one run mean anything). Judged quality is ``bench run`` (``grid.py``).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from distill3d.core.io import write_json_atomic, write_text_atomic
from distill3d.pipeline.config import resolve_run_config
from distill3d.pipeline.loop import build_method, optimise
from distill3d.pipeline.priors import DEFAULT_PRIOR, PriorSpec, load_prior


@dataclass(frozen=True)
class StepCost:
    method: str
    seconds_per_step: float  # median over rounds
    ratio_to_sds: float
    prior_evals_per_step: float
    render: float  # seconds per step, median over rounds
    prior: float
    backward: float
    other: float


def step_cost(methods: list[str], prompt: str = "a red cube on top of a blue sphere", steps: int = 10,
              rounds: int = 3, views: int = 4, threads: int = 1, prior_spec: PriorSpec = DEFAULT_PRIOR) -> list[StepCost]:
    """Median seconds per step of each method (after one warm-up round), interleaved round by round."""
    torch.set_num_threads(threads)
    if "sds" not in methods:
        methods = ["sds", *methods]
    per: dict[str, list[tuple[float, float, float, float, float, int]]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds + 1):
            for m in methods:
                prior = load_prior(prior_spec)  # fresh: the fine-tune variant trains the prior's adapter
                cfg, rest = resolve_run_config(m, {"steps": str(steps), "views_per_step": str(views),
                                                   "checkpoint_every": "0", "preview_every": "0", "seed": str(r)})
                _, state = optimise(prompt, cfg, build_method(cfg, rest), prior, Path(tmp) / f"{m}_{r}")
                t = state.timings
                if r > 0:  # round 0 warms caches and allocators
                    per[m].append((t.total() / steps, t.render / steps, t.prior / steps, t.backward / steps,
                                   t.other / steps, state.prior_evals))
    med = {m: [statistics.median(x[i] for x in rows) for i in range(5)] for m, rows in per.items()}
    base = med["sds"][0]
    return [StepCost(m, med[m][0], med[m][0] / base, per[m][0][5] / steps, *med[m][1:]) for m in methods]


def write_step_cost(costs: list[StepCost], out: Path, command: str) -> None:
    write_json_atomic(out, {"command": command, "threads": torch.get_num_threads(),
                            "results": [asdict(c) for c in costs]})
    lines = ["| method | s/step | x SDS | prior evals/step | render | prior | backward | other |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {c.method} | {c.seconds_per_step:.3f} | {c.ratio_to_sds:.2f} | {c.prior_evals_per_step:.0f} | "
              f"{c.render:.3f} | {c.prior:.3f} | {c.backward:.3f} | {c.other:.3f} |" for c in costs]
    write_text_atomic(out.with_suffix(".md"), f"`{command}`\n\n" + "\n".join(lines) + "\n")
