"""``distill3d bench edit``: editing methods on the toy world, where the truth before and after is known.

Each pair changes ONE attribute of ONE object (its colour or its shape), in single- and two-object scenes;
an identity pair (from == to) measures how far a method drifts when nothing should change. For each source
caption the source asset is built from the truth itself: Gaussian surfels on the SDF surface with the
colour the ground-truth renderer shades there (``toyworld.surface``). Every method x pair x seed is one
``distill3d edit`` run (kept, so an interrupted sweep resumes); each is measured on 8 views (20° elevation):

- ``changed``: share of views where the judge sees the edited object with the TARGET attribute;
- ``kept``: share of views where the judge sees the rest as in the source (the other object's shape and
  colour, or in a one-object scene the edited object's other attribute);
- ``outside_mse``: pixel MSE between the edited and the source renders outside the edited object's
  ground-truth mask (its pixels before or after the edit, dilated by 2 px at 64 px);
- ``inside_mse``: pixel MSE between the edited renders and the TARGET truth inside that mask;
- identity pairs: ``drift``, the pixel MSE between the edited and the source renders over whole views.

Per method and seed the metrics are averaged over the pairs; the table gives the mean over seeds with a 95%
Student-t interval (mean ± t_{0.975, n−1} s/√n).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.core.io import write_json_atomic, write_text_atomic
from distill3d.guidance import find_method
from distill3d.pipeline.edit import edit, resolve_edit_config
from distill3d.pipeline.generate import RUN_FILE
from distill3d.pipeline.priors import DEFAULT_PRIOR, PriorSpec, load_prior
from distill3d.priors.base import Prior
from distill3d.scene.gaussians import GaussianModel, rgb_to_sh_dc
from distill3d.scene.knn import knn_distances
from distill3d.scene.registry import load_representation
from distill3d.scene.render import render
from distill3d.scene.representation import Representation
from distill3d.toyworld.grammar import ObjectSpec, SceneSpec, parse_caption
from distill3d.toyworld.judge import Judge, JudgeResult
from distill3d.toyworld.render import render as render_truth
from distill3d.toyworld.surface import surface_points

#: (from, to): a colour and a shape change of one object, alone and beside/on another object.
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("a red cube", "a blue cube"),
    ("a red cube", "a red sphere"),
    ("a red cube next to a blue sphere", "a red cube next to a green sphere"),
    ("a blue cone on top of a yellow cube", "a blue sphere on top of a yellow cube"),
)
AZIMUTHS = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
ELEVATION = 20.0
SIZE = 64
MASK_DILATION = 2  # pixels at SIZE
#: Run settings of every bench edit (under --set): lighter exports than a user's edit.
BENCH_OVERRIDES = {"preview_every": "0", "export_size": "64", "turntable_frames": "12", "mesh_resolution": "48"}
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


@dataclass(frozen=True)
class EditPair:
    source: str
    target: str
    edited: int  # index of the changed object in the scene (0 or 1); identity: 0
    attribute: str  # "color", "shape" or "identity"

    @property
    def slug(self) -> str:
        words = f"{self.source} to {self.target}" if self.attribute != "identity" else f"{self.source} identity"
        return "_".join(w for w in words.split() if w not in ("a", "an"))


def make_pair(source: str, target: str) -> EditPair:
    """Which object and attribute ``source`` -> ``target`` changes; a UserError unless it is exactly one
    attribute of one object (or nothing: the identity)."""
    a, b = parse_caption(source), parse_caption(target)
    if a == b:
        return EditPair(a.caption, b.caption, 0, "identity")
    if a.relation != b.relation or len(a.objects) != len(b.objects):
        raise UserError(f"edit pair {source!r} -> {target!r} changes the layout; change one object's colour or shape")
    diffs = [(k, x, y) for k, (x, y) in enumerate(zip(a.objects, b.objects)) if x != y]
    if len(diffs) != 1 or (diffs[0][1].shape != diffs[0][2].shape and diffs[0][1].color != diffs[0][2].color):
        raise UserError(f"edit pair {source!r} -> {target!r} must change one attribute of one object")
    k, x, y = diffs[0]
    return EditPair(a.caption, b.caption, k, "color" if x.color != y.color else "shape")


def parse_pairs(text: str) -> list[EditPair]:
    """"from -> to; from -> to" (a pair whose two sides are equal is an identity check)."""
    pairs = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        source, sep, target = part.partition("->")
        if not sep:
            raise UserError(f"--pairs expects 'from -> to' items separated by ';', got {part!r}")
        pairs.append(make_pair(source.strip(), target.strip()))
    return pairs


def default_pairs() -> list[EditPair]:
    """The default pairs plus one identity check per source caption."""
    pairs = [make_pair(s, t) for s, t in DEFAULT_PAIRS]
    sources = list(dict.fromkeys(p.source for p in pairs))
    return pairs + [make_pair(s, s) for s in sources]


@torch.no_grad()
def truth_asset(spec: SceneSpec, points: int = 5000, seed: int = 0) -> GaussianModel:
    """Opaque Gaussian surfels on the scene's surface, flat along the normal, coloured as the truth shades them."""
    s = surface_points(spec, points, torch.Generator().manual_seed(seed))
    n = len(s.points)
    spacing = knn_distances(s.points, 4).mean(-1)  # [P]
    spacing = spacing.clamp_min(0.25 * spacing.median())  # coincident samples (a cone's tip): no zero-size surfel
    nz = s.normals
    quats = torch.stack([1 + nz[:, 2], -nz[:, 1], nz[:, 0], torch.zeros(n)], dim=-1)  # rotates +z onto n
    quats[quats.norm(dim=-1) < 1e-4] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    log_scales = torch.stack([0.7 * spacing, 0.7 * spacing, 0.1 * spacing], dim=-1).log()
    return GaussianModel(s.points, log_scales, quats / quats.norm(dim=-1, keepdim=True),
                         torch.full((n,), 4.0), rgb_to_sh_dc(s.colors))


def _assign(seen: tuple[ObjectSpec, ...], truth: tuple[ObjectSpec, ...], relation: str | None) -> list | None:
    """The judged objects in the truth's order (either order for "next to", the one agreeing more)."""
    if len(seen) != len(truth):
        return None
    orders = [list(seen)] + ([list(seen[::-1])] if relation == "next to" and len(seen) == 2 else [])
    return max(orders, key=lambda o: sum((a.shape == b.shape) + (a.color == b.color) for a, b in zip(o, truth)))


def judge_edit(result: JudgeResult, pair: EditPair) -> tuple[bool, bool]:
    """(changed, kept) for one judged view of the edited asset."""
    src, tgt = parse_caption(pair.source), parse_caption(pair.target)
    seen = _assign(result.objects, tgt.objects, tgt.relation) if result.recognisable else None
    if seen is None:
        return False, False
    k, attr = pair.edited, pair.attribute
    changed = getattr(seen[k], attr) == getattr(tgt.objects[k], attr)
    if len(tgt.objects) == 2:
        kept = seen[1 - k] == src.objects[1 - k]
    else:
        other = "shape" if attr == "color" else "color"
        kept = getattr(seen[0], other) == getattr(src.objects[0], other)
    return changed, kept


@torch.no_grad()
def measure(edited: Representation, source: Representation, pair: EditPair, judge: Judge) -> dict[str, float]:
    """The metrics of one edit (module docstring); identity pairs give ``drift``."""
    cams = Cameras.from_angles(list(AZIMUTHS), ELEVATION)
    after = render(edited.eval(), cams, SIZE).image.clamp(0, 1)
    before = render(source.eval(), cams, SIZE).image.clamp(0, 1)
    if pair.attribute == "identity":
        return {"drift": float(((after - before) ** 2).mean())}
    src_truth = render_truth(parse_caption(pair.source), cams, SIZE)
    tgt_truth = render_truth(parse_caption(pair.target), cams, SIZE)
    mask = ((src_truth.material == pair.edited + 1) | (tgt_truth.material == pair.edited + 1)).float()[:, None]
    mask = F.max_pool2d(mask, 2 * MASK_DILATION + 1, stride=1, padding=MASK_DILATION)  # [B, 1, S, S]
    outside, inside = (1 - mask).expand_as(after), mask.expand_as(after)
    judged = [judge_edit(r, pair) for r in judge(after)]
    return {"changed": sum(c for c, _ in judged) / len(judged), "kept": sum(k for _, k in judged) / len(judged),
            "outside_mse": float((((after - before) ** 2) * outside).sum() / outside.sum().clamp_min(1)),
            "inside_mse": float((((after - tgt_truth.image) ** 2) * inside).sum() / inside.sum().clamp_min(1))}


def interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% Student-t interval (None for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    t = _T975.get(len(values) - 1, 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


METRICS = ("changed", "kept", "outside_mse", "inside_mse", "drift")


def edit_sources(pairs: list[EditPair], out_dir: Path, source_points: int = 5000) -> dict[str, Path]:
    """Each pair's source asset, the truth of its source caption as Gaussians, written once under
    ``out_dir/sources``: source caption -> its ``gaussians.ply``."""
    sources: dict[str, Path] = {}
    for caption in dict.fromkeys(p.source for p in pairs):
        path = out_dir / "sources" / "_".join(w for w in caption.split() if w not in ("a", "an")) / "gaussians.ply"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            truth_asset(parse_caption(caption), source_points).save(path)
        sources[caption] = path
    return sources


def bench_edit(methods: list[str], pairs: list[EditPair], seeds: list[int], out_dir: Path, overrides: dict[str, str],
               prior_spec: PriorSpec = DEFAULT_PRIOR, source_points: int = 5000, progress: bool = False,
               judge: Judge | None = None, prior: Prior | None = None) -> dict:
    """Run (or finish) every method x pair x seed; write results.json and results.md in ``out_dir``."""
    for m in methods:
        find_method(m, "edit")  # fail before any work
    judge = judge or Judge.load()
    sources = edit_sources(pairs, out_dir, source_points)
    rows = []
    for method in methods:
        for pair in pairs:
            for seed in seeds:
                run_dir = out_dir / "runs" / method / f"{pair.slug}_s{seed}"
                metrics_file = run_dir / "metrics.json"
                if not metrics_file.is_file():
                    raw = {**BENCH_OVERRIDES, **overrides, "seed": str(seed)}
                    cfg, rest = resolve_edit_config(method, raw, sources[pair.source])
                    if not (run_dir / RUN_FILE).is_file():
                        prior = prior or load_prior(prior_spec)
                        start = time.perf_counter()
                        edit(sources[pair.source], pair.source, pair.target, cfg, rest, run_dir, prior_spec, prior,
                             resume=(run_dir / "checkpoint.safetensors").is_file(), progress=progress)
                        print(f"{method} | {pair.source} -> {pair.target} | seed {seed}: "
                              f"{time.perf_counter() - start:.0f} s", flush=True)
                    metrics = measure(load_representation(run_dir), load_representation(sources[pair.source]),
                                      pair, judge)
                    seconds = json.loads((run_dir / RUN_FILE).read_text())["seconds"]["optimisation"]
                    write_json_atomic(metrics_file, {**metrics, "seconds": seconds})
                rows.append({"method": method, **asdict(pair), "seed": seed,
                             **json.loads(metrics_file.read_text())})
    summary = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {}
        for metric in METRICS:
            per_seed = [statistics.fmean(r[metric] for r in mine if r["seed"] == s and metric in r)
                        for s in seeds if any(metric in r for r in mine if r["seed"] == s)]
            if per_seed:
                mean, half = interval(per_seed)
                summary[method][metric] = {"mean": mean, "ci95": half, "per_seed": per_seed}
        summary[method]["mean_seconds"] = statistics.fmean(r["seconds"] for r in mine)
    result = {"pairs": [asdict(p) for p in pairs], "seeds": seeds, "overrides": overrides, "summary": summary,
              "runs": rows}
    write_json_atomic(out_dir / "results.json", result)
    return result


def write_table(result: dict, out_dir: Path, command: str) -> str:
    """results.md: the table per method (mean ± 95% interval over seeds), then the runs."""
    def cell(s: dict | None, pct: bool) -> str:
        if s is None:
            return "-"
        fmt = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.4f}")
        return fmt(s["mean"]) + ("" if s["ci95"] is None else f" ± {fmt(s['ci95'])}")

    lines = [f"`{command}`", "", f"seeds {result['seeds']}; pairs: "
             + "; ".join(f"{p['source']} -> {p['target']}" for p in result["pairs"]), "",
             "| method | changed ↑ | kept ↑ | outside MSE ↓ | inside MSE to target truth ↓ | identity drift ↓ | s/edit |",
             "|---|---|---|---|---|---|---|"]
    for m, s in result["summary"].items():
        lines.append(f"| {m} | {cell(s.get('changed'), True)} | {cell(s.get('kept'), True)} | "
                     f"{cell(s.get('outside_mse'), False)} | {cell(s.get('inside_mse'), False)} | "
                     f"{cell(s.get('drift'), False)} | {s['mean_seconds']:.0f} |")
    lines += ["", "| method | pair | seed | changed | kept | outside MSE | inside MSE | drift |", "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        vals = [f"{r[k]:.2f}" if k in ("changed", "kept") and k in r else (f"{r[k]:.4f}" if k in r else "-")
                for k in METRICS]
        lines.append(f"| {r['method']} | {r['source']} -> {r['target']} | {r['seed']} | " + " | ".join(vals) + " |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(out_dir / "results.md", text)
    return text


__all__ = ["DEFAULT_PAIRS", "EditPair", "bench_edit", "default_pairs", "edit_sources", "interval", "judge_edit", "make_pair",
           "measure", "parse_pairs", "truth_asset", "write_table"]
