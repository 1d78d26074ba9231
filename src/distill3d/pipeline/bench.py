"""Benchmarks of the guidance methods on the embedded prior, written to result files.

``step_cost``: per-step wall time of each method relative to SDS with the same number of views, measured
in one process with the methods interleaved round by round (the machine is shared and noisy: only ratios
taken in one run mean anything). ``quality``: full ``generate`` runs over prompts x seeds x methods, each
judged on its turntable; finished runs are kept, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from distill3d.core.io import write_json_atomic, write_text_atomic
from distill3d.pipeline.config import resolve_run_config
from distill3d.pipeline.generate import RUN_FILE, generate
from distill3d.pipeline.loop import build_method, optimise
from distill3d.pipeline.priors import DEFAULT_PRIOR, PriorSpec, load_prior

#: Twelve toy prompts: four single objects, three "on top of", three "next to", two faces.
DEFAULT_PROMPTS = (
    "a red cube", "a yellow sphere", "a green cylinder", "a blue cone",
    "a blue cone on top of a yellow cube", "a red sphere on top of a green cylinder",
    "a pink torus on top of a gray cube",
    "a purple torus next to a gray cube", "a red cube next to a blue sphere", "an orange cone next to a green sphere",
    "a yellow face", "a blue face",
)


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


def _slug(prompt: str) -> str:
    return "_".join(w for w in prompt.replace(",", "").split() if w not in ("a", "an"))


def quality(methods: list[str], prompts: list[str], seeds: list[int], out_dir: Path, overrides: dict[str, str],
            prior_spec: PriorSpec = DEFAULT_PRIOR, progress: bool = False) -> dict:
    """Run (or finish) every method x prompt x seed; aggregate judged accuracy per method and kind."""
    rows = []
    for method in methods:
        for prompt in prompts:
            for seed in seeds:
                run_dir = out_dir / method / f"{_slug(prompt)}_s{seed}"
                if not (run_dir / RUN_FILE).exists():
                    cfg, rest = resolve_run_config(method, {**overrides, "seed": str(seed)})
                    start = time.perf_counter()
                    generate(prompt, cfg, rest, run_dir, prior_spec, resume=(run_dir / "checkpoint.safetensors").exists(),
                             progress=progress)
                    print(f"{method} | {prompt} | seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
                run = json.loads((run_dir / RUN_FILE).read_text())
                j = run["judge"]
                rows.append({"method": method, "prompt": prompt, "seed": seed, "kind": j["kind"],
                             "match_rate": j["match_rate"], "janus_views": j["janus_views"],
                             "front_seen_azimuths": j["front_seen_azimuths"], "image_mse": j["image_mse"],
                             "seconds": run["seconds"]["optimisation"]})
    summary = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        by_kind = {}
        for kind in ("single", "on top of", "next to", "face"):
            k = [r["match_rate"] for r in mine if r["kind"] == kind]
            if k:
                by_kind[kind] = sum(k) / len(k)
        summary[method] = {"match_rate": sum(r["match_rate"] for r in mine) / len(mine), "by_kind": by_kind,
                           "janus_views": sum(r["janus_views"] for r in mine if r["kind"] == "face"),
                           "mean_seconds": sum(r["seconds"] for r in mine) / len(mine)}
    result = {"overrides": overrides, "seeds": seeds, "prompts": prompts, "summary": summary, "runs": rows}
    write_json_atomic(out_dir / "results.json", result)
    kinds = ("single", "on top of", "next to", "face")
    lines = ["| method | all | " + " | ".join(kinds) + " | Janus views (faces) | s/run |",
             "|---|---|" + "---|" * len(kinds) + "---|---|"]
    for m, s in summary.items():
        cells = " | ".join(f"{s['by_kind'][k]:.0%}" if k in s["by_kind"] else "-" for k in kinds)
        lines.append(f"| {m} | {s['match_rate']:.0%} | {cells} | {s['janus_views']} | {s['mean_seconds']:.0f} |")
    write_text_atomic(out_dir / "results.md", "\n".join(lines) + "\n")
    return result
