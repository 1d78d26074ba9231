"""``distill3d bench run``: every (prompt, method, preset, prior, seed) run of a suite, each one ``generate``
run measured and kept as one result file, merged into ``results.csv`` (one row per run and preset).

A run is named by its settings: ``run_id`` hashes the prompt, method, prior, seed and every ``--set``
override, so the same run asked for by two presets (a tuned preset equal to the defaults) is made once and
listed under both. ``DIR/runs/<method>/<prompt>_s<seed>_<prior>_<run_id>/`` holds the run directory of
``generate`` and ``result.json``, written atomically by the process that collects the result (the driver)
once the run has finished; a run directory without it is a partial run and is redone from scratch.
``results.csv`` is rebuilt from every ``result.json`` under ``DIR/runs`` plus the rows an earlier
``results.csv`` held (e.g. runs of another machine whose files are not here), keyed by (preset, run_id),
so restarts and merged machines never duplicate a row.

Columns (``COLUMNS``): what was run; the judge's share of matching views overall and per attribute;
faces' front-visibility error (share of views where the judge's "eyes visible" differs from the truth),
Janus views and the per-view bits of both; silhouette IoU and colour error against the truth from the same
camera, mean and per view (``evaluation.toy``); for two objects of different colours the share of views whose
layout is right, whether it is right from every side (``consistent``), the colour bleeding and the per-view
bits (``toyworld.layout``); CLIP similarity for priors outside the toy world; the
gradient norm's mean and variance over the logged steps and a short series of it (``grad_norm_series``:
``step:value`` pairs, at most ``SERIES_POINTS``), so every figure comes from the CSV alone; L_rec and the
filter keep-rate when the run's history logs them; seconds, prior calls and evaluations, and the peak
resident memory of the process that ran it (``ru_maxrss``: the process's peak so far, so a worker that ran
a larger run earlier reports that).

A run that fails (a non-finite gradient, an asset too faint to mesh) is a result, not a crash of the
grid: its ``note`` holds the error, and it is judged from the asset file if one was written, else scored
as an empty asset (no view matches, IoU 0, colour error 1), so a method that breaks never looks better for it.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import resource
import shutil
import socket
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from distill3d.core.errors import UserError
from distill3d.core.io import write_json_atomic, write_text_atomic
from distill3d.core.state import load_state
from distill3d.evaluation.toy import AZIMUTHS, judge_representation
from distill3d.pipeline.config import RunConfig, resolve_run_config
from distill3d.pipeline.generate import (
    PRESET_FILE,
    RUN_FILE,
    check_prompt,
    first_difference,
    generate,
    run_preset,
)
from distill3d.pipeline.loop import CHECKPOINT, build_method
from distill3d.pipeline.priors import PriorSpec, knows_toy_world, load_prior, parse_prior
from distill3d.priors.base import Prior
from distill3d.scene.registry import load_representation
from distill3d.toyworld.grammar import parse_caption

RESULTS = "results.csv"
RESULT_FILE = "result.json"
SERIES_POINTS = 32
#: Run settings every bench run gets under its own --set: light exports (the benchmark reads the asset, not
#: the turntable), no previews, one checkpoint at the end.
BENCH_OVERRIDES = {"preview_every": "0", "checkpoint_every": "0", "export_size": "64", "turntable_frames": "8",
                   "mesh_resolution": "32"}
ATTRIBUTES = ("count_ok", "shapes_ok", "colors_ok", "objects_ok", "relation_ok")
_VIEW_TAGS = tuple(f"a{int(a):03d}" for a in AZIMUTHS)
COLUMNS: tuple[str, ...] = (
    "run_id", "prompt", "kind", "method", "preset", "prior", "seed", "steps", "overrides",
    "match", *ATTRIBUTES, "front_error", "janus_views", "front_seen", "front_truth",
    "iou", "color_error", *(f"iou_{t}" for t in _VIEW_TAGS), *(f"color_{t}" for t in _VIEW_TAGS),
    "layout", "consistent", "bleed", "layout_views",
    "clip", "grad_norm_mean", "grad_norm_var", "grad_norm_series", "l_rec", "keep_rate",
    "seconds", "seconds_total", "prior_calls", "prior_evals", "peak_rss_mb", "worker", "note",
)


@dataclass(frozen=True)
class RunSpec:
    """One benchmark run. ``overrides`` are the ``--set`` pairs of the run (sorted), the seed excluded."""

    prompt: str
    method: str
    preset: str  # a label: "default", "tuned", "tune-3", ...
    prior: str  # a prior name of --priors: a kind (PRIOR_KINDS) or a toy pair BASE+MV (pipeline.priors.parse_prior)
    seed: int
    overrides: tuple[tuple[str, str], ...]

    @property
    def prior_spec(self) -> PriorSpec:
        return parse_prior(self.prior)

    @property
    def toy_world(self) -> bool:
        """Is the run on a toy-world prior (judged against the toy world's truth)?"""
        return knows_toy_world(self.prior_spec.kind)

    @property
    def run_id(self) -> str:
        key = json.dumps([self.prompt, self.method, self.prior, self.seed, list(self.overrides)])
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    @property
    def dir_name(self) -> str:
        slug = "_".join(w for w in self.prompt.lower().replace(",", " ").split() if w not in ("a", "an"))
        slug = "".join(c for c in slug if c.isalnum() or c == "_")[:60]
        return f"{self.method}/{slug}_s{self.seed}_{self.prior}_{self.run_id}"

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "method": self.method, "preset": self.preset, "prior": self.prior,
                "seed": self.seed, "overrides": [list(p) for p in self.overrides]}

    @staticmethod
    def from_dict(d: dict) -> RunSpec:
        return RunSpec(d["prompt"], d["method"], d["preset"], d["prior"], int(d["seed"]),
                       tuple((str(k), str(v)) for k, v in d["overrides"]))


def make_specs(prompts: Iterable[str], methods: Iterable[str], presets: dict[str, dict[str, dict[str, str]]],
               priors: Iterable[str], seeds: Iterable[int], overrides: dict[str, str]) -> list[RunSpec]:
    """The grid: every prompt x method x preset x prior x seed. ``presets`` maps a label to per-method
    ``--set`` overrides (a method missing from a preset runs with its defaults); ``overrides`` apply to
    every run after the preset's."""
    specs = []
    for label, per_method in presets.items():
        for method in methods:
            raw = {**BENCH_OVERRIDES, **per_method.get(method, {}), **overrides}
            pairs = tuple(sorted(raw.items()))
            specs += [RunSpec(p, method, label, prior, seed, pairs)
                      for prior in priors for p in prompts for seed in seeds]
    return specs


def check_specs(specs: list[RunSpec]) -> None:
    """Every prompt, prior, method and setting checked before anything runs (a UserError names the first)."""
    for prior in dict.fromkeys(s.prior for s in specs):
        parse_prior(prior)
    for prompt, prior in dict.fromkeys((s.prompt, s.prior_spec.kind) for s in specs):
        check_prompt(prompt, prior)
    for s in dict.fromkeys((s.method, s.overrides) for s in specs):
        cfg, rest = resolve_run_config(s[0], dict(s[1]))
        build_method(cfg, rest)


# ---------------------------------------------------------------------------------------------- one run

#: Priors loaded in this process, by spec: a worker loads each once.
_PRIORS: dict[PriorSpec, Prior] = {}


def cached_prior(spec: PriorSpec) -> Prior:
    if spec not in _PRIORS:
        _PRIORS[spec] = load_prior(spec)
    return _PRIORS[spec]


_CLIPS: dict[tuple[str, str], object] = {}


def cached_clip(source: str, device: str):
    """The CLIP scorer at ``source``, loaded once per process."""
    from distill3d.bench.clip_eval import ClipScorer

    if (source, device) not in _CLIPS:
        _CLIPS[(source, device)] = ClipScorer.load(source, device)
    return _CLIPS[(source, device)]


def _series(history: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(h["step"]), float(h[key])) for h in history if isinstance(h.get(key), (int, float))]


def downsample(points: list[tuple[int, float]], n: int = SERIES_POINTS) -> str:
    """At most ``n`` evenly chosen ``step:value`` pairs (first and last kept), ';'-joined."""
    if len(points) > n:
        idx = sorted({round(i * (len(points) - 1) / (n - 1)) for i in range(n)})
        points = [points[i] for i in idx]
    return ";".join(f"{s}:{v:.4g}" for s, v in points)


def parse_series(text: str) -> list[tuple[int, float]]:
    if not text:
        return []
    return [(int(s), float(v)) for s, v in (p.split(":") for p in text.split(";"))]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def overrides_column(overrides: Iterable[tuple[str, str]]) -> str:
    """results.csv's ``overrides`` cell: the ``--set`` pairs in their order, without the bench's own
    (``BENCH_OVERRIDES``), as ``k=v;k=v``."""
    return ";".join(f"{k}={v}" for k, v in overrides if k not in BENCH_OVERRIDES)


def measure_run(spec: RunSpec, run: dict, clip: float | None = None) -> dict:
    """The CSV row of a finished run from its ``run.json`` (without the preset label)."""
    row: dict = {"run_id": spec.run_id, "prompt": spec.prompt, "method": spec.method, "prior": spec.prior,
                 "seed": spec.seed, "steps": run["steps"],
                 "overrides": overrides_column(spec.overrides)}
    judge = run.get("judge")
    if judge is None and spec.toy_world:  # a failed run without an asset: an empty one
        scene = parse_caption(spec.prompt)
        row |= {"kind": scene.kind, "match": 0.0, "iou": 0.0, "color_error": 1.0}
        if len({o.color for o in scene.objects}) == 2:  # a layout that toyworld.layout would have measured
            row |= {"layout": 0.0, "consistent": 0.0}
        row |= {a: 0.0 for a in ATTRIBUTES}
    if judge:
        views = judge["views"]
        row |= {"kind": judge["kind"], "match": judge["match_rate"], "iou": judge["iou"],
                "color_error": judge["color_error"]}
        row |= {a: _mean([float(v[a]) for v in views]) for a in ATTRIBUTES}
        row |= {f"iou_{t}": v["iou"] for t, v in zip(_VIEW_TAGS, views)}
        row |= {f"color_{t}": v["color_error"] for t, v in zip(_VIEW_TAGS, views)}
        if judge.get("consistent") is not None:  # two objects of different colours (toyworld.layout)
            row |= {"layout": judge["layout_rate"], "consistent": float(judge["consistent"]), "bleed": judge["bleed"],
                    "layout_views": "".join("1" if v["layout_ok"] else "0" for v in views)}
        if judge["kind"] == "face" or any(v["front_truth"] for v in views):
            row |= {"front_error": _mean([float(v["front_seen"] != v["front_truth"]) for v in views]),
                    "janus_views": judge["janus_views"],
                    "front_seen": "".join("1" if v["front_seen"] else "0" for v in views),
                    "front_truth": "".join("1" if v["front_truth"] else "0" for v in views)}
    grads = _series(run["history"], "grad_norm")
    values = [v for _, v in grads]
    row |= {"clip": clip, "grad_norm_mean": _mean(values),
            "grad_norm_var": statistics.pvariance(values) if values else None,
            "grad_norm_series": downsample(grads),
            "l_rec": _mean([v for _, v in _series(run["history"], "l_rec")]),
            "keep_rate": _mean([v for _, v in _series(run["history"], "keep_rate")]),
            "seconds": run["seconds"]["optimisation"], "seconds_total": run["seconds"]["total_this_session"],
            "prior_calls": run["prior_calls"], "prior_evals": run["prior_evaluations"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "worker": f"{socket.gethostname()}:{os.getpid()}", "note": run.get("error", "")}
    return row


def _failed_run(spec: RunSpec, cfg: RunConfig, run_dir: Path, error: str, seconds: float) -> dict:
    """What a failed run leaves, shaped like its run.json: the asset's judgement if it was saved (exports
    write it first), the history and counts of its last checkpoint if any, and the error."""
    judge = None
    if spec.toy_world:
        try:
            judge = judge_representation(load_representation(run_dir), spec.prompt)
        except (UserError, OSError):
            judge = None
    ck = load_state(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).is_file() else None
    return {"steps": cfg.steps, "judge": judge, "error": error[:300],
            "history": list(ck["history"]) if ck else [],
            "prior_calls": int(ck["prior_calls"]) if ck else 0, "prior_evaluations": int(ck["prior_evals"]) if ck else 0,
            "seconds": {"optimisation": sum(ck["timings"].values()) if ck else seconds, "total_this_session": seconds}}


def execute(spec: RunSpec, out_dir: str, clip_source: str | None = None) -> dict:
    """Make one run in ``out_dir/runs/<spec.dir_name>`` (a partial one there is removed first) and return
    its row. Runs in whichever process calls it: the driver, a local worker or a Ray worker."""
    run_dir = Path(out_dir) / "runs" / spec.dir_name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a partial run: redone from scratch
    cfg, rest = resolve_run_config(spec.method, {**dict(spec.overrides), "seed": str(spec.seed)})
    prior_spec = spec.prior_spec
    prior = cached_prior(prior_spec)
    if build_method(cfg, rest).trainable_parameters(prior):
        prior = copy.deepcopy(prior)  # the method trains part of the prior: the cached one stays as loaded
    start = time.perf_counter()
    try:
        generate(spec.prompt, cfg, rest, run_dir, prior_spec, prior=prior, progress=False)
        run = json.loads((run_dir / RUN_FILE).read_text())
    except UserError as err:
        run = _failed_run(spec, cfg, run_dir, str(err), time.perf_counter() - start)
    clip = None
    if clip_source is not None and not spec.toy_world:
        from distill3d.bench.clip_eval import clip_score_run

        device = str(prior.device)
        clip = clip_score_run(run_dir, cached_clip(clip_source, device), device=device).mean
    return measure_run(spec, run, clip)


# ---------------------------------------------------------------------------------------------- results


def result_path(out_dir: Path, spec: RunSpec) -> Path:
    return out_dir / "runs" / spec.dir_name / RESULT_FILE


def reuse_problem(out_dir: Path, spec: RunSpec) -> str | None:
    """Why the finished run of ``spec`` in ``out_dir`` may not stand for ``spec`` now, or None. A run id holds
    the ``--set`` overrides, not the registry's defaults, so a default changed since the run (a method's CFG, a
    camera range) would otherwise pass old runs off as new: the run's ``preset.json`` is compared with what
    ``spec`` resolves to now, and the first setting that differs is named. Runs without their ``preset.json`` (a
    failed start, or only ``results.csv`` from another machine) are not checked."""
    path = result_path(out_dir, spec).parent / PRESET_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    cfg, rest = resolve_run_config(spec.method, {**dict(spec.overrides), "seed": str(spec.seed)})
    diff = first_difference(saved, run_preset(spec.prompt, cfg, rest, spec.prior_spec)[2])
    if diff is None:
        return None
    label, old, now = diff
    return f"{path.parent} was made with {label} {old}, and the same run would now use {now} (a default changed since)"


def check_reusable(out_dir: Path, spec: RunSpec) -> None:
    """A finished run is reused only when it was made with what ``spec`` resolves to now (``reuse_problem``);
    otherwise a ``UserError`` names the run and the first setting that differs."""
    problem = reuse_problem(out_dir, spec)
    if problem is not None:
        raise UserError(f"{problem}; give another --out, or --set the old value (a run of its own)")


def read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def record(out_dir: Path, spec: RunSpec, row: dict, presets: Iterable[str]) -> None:
    """Write (or extend with new preset labels) a run's ``result.json``, atomically."""
    path = result_path(out_dir, spec)
    old = read_result(path)
    labels = list(dict.fromkeys([*(old["presets"] if old else []), *presets]))
    write_json_atomic(path, {"spec": spec.to_dict(), "presets": labels, "row": row})


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def merge(out_dir: Path) -> list[dict]:
    """Rebuild ``results.csv`` from every result file and the earlier CSV's rows; return the rows (strings)."""
    rows: dict[tuple[str, str], dict] = {}
    csv_path = out_dir / RESULTS
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                rows[(r["preset"], r["run_id"])] = {c: r.get(c, "") for c in COLUMNS}
    for path in sorted((out_dir / "runs").glob(f"*/*/{RESULT_FILE}")):
        result = read_result(path)
        if result is None:
            continue
        for label in result["presets"]:
            row = {c: _csv_value(result["row"].get(c)) for c in COLUMNS} | {"preset": label}
            rows[(label, row["run_id"])] = row
    ordered = sorted(rows.values(), key=lambda r: (r["preset"], r["method"], r["prior"], r["prompt"], int(r["seed"])))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(ordered)
    write_text_atomic(csv_path, buf.getvalue())
    return ordered


def read_results(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / RESULTS
    if not path.is_file():
        raise UserError(f"{out_dir} holds no {RESULTS}; make it with `distill3d bench run --out {out_dir}`")
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def remeasure(out_dir: Path, log: Callable[[str], None] = print) -> list[dict]:
    """Judge every finished toy-world run's saved asset again with today's evaluation (no optimisation), so a
    change of the measurement reaches runs made before it: each run's ``run.json`` gets the new judgement,
    its ``result.json`` the new row (same preset labels), then ``results.csv`` is rebuilt. Runs whose run
    directory is gone (e.g. rows merged from another machine) keep their rows."""
    paths = sorted((out_dir / "runs").glob(f"*/*/{RESULT_FILE}"))
    for i, path in enumerate(paths, 1):
        result = read_result(path)
        spec = RunSpec.from_dict(result["spec"]) if result else None
        run_file = path.parent / RUN_FILE
        if spec is None or not spec.toy_world or not run_file.is_file():
            continue
        run = json.loads(run_file.read_text())
        run["judge"] = judge_representation(load_representation(path.parent), spec.prompt)
        write_json_atomic(run_file, run)
        row = measure_run(spec, run, result["row"].get("clip"))
        row |= {k: result["row"][k] for k in ("seconds", "seconds_total", "peak_rss_mb", "worker") if k in result["row"]}
        write_json_atomic(path, {**result, "row": row})
        if i % 50 == 0:
            log(f"remeasured {i} of {len(paths)} runs")
    return merge(out_dir)


# ---------------------------------------------------------------------------------------------- the grid

Engine = Callable[[list[RunSpec], str, Callable[[RunSpec, dict], None]], None]


def run_grid(specs: list[RunSpec], out_dir: Path, engine: Engine, log: Callable[[str], None] = print) -> list[dict]:
    """Run every spec not finished yet with ``engine`` (serial, local processes or Ray, see engines.py);
    record each result as it arrives and rebuild ``results.csv`` after each. Returns the merged rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_id: dict[str, list[RunSpec]] = {}
    for s in specs:
        by_id.setdefault(s.run_id, []).append(s)
    todo = []
    for group in by_id.values():
        labels = [s.preset for s in group]
        old = read_result(result_path(out_dir, group[0]))
        if old is not None:  # finished: only new preset labels to add
            check_reusable(out_dir, group[0])
            if not set(labels) <= set(old["presets"]):
                record(out_dir, group[0], old["row"], labels)
        else:
            todo.append(group[0])
    log(f"{len(by_id)} runs ({len(specs)} rows), {len(by_id) - len(todo)} already finished, {len(todo)} to run")
    merge(out_dir)
    start = time.perf_counter()
    done = 0

    def collect(spec: RunSpec, row: dict) -> None:
        nonlocal done
        record(out_dir, spec, row, [s.preset for s in by_id[spec.run_id]])
        merge(out_dir)
        done += 1
        log(f"[{done}/{len(todo)}] {spec.method} | {spec.prompt} | {spec.prior} | seed {spec.seed}: "
            f"{row['seconds_total']:.0f} s (elapsed {time.perf_counter() - start:.0f} s)")

    if todo:
        engine(todo, str(out_dir), collect)
    return merge(out_dir)


__all__ = ["BENCH_OVERRIDES", "COLUMNS", "RESULTS", "RunSpec", "check_specs", "downsample", "execute",
           "make_specs", "measure_run", "merge", "overrides_column", "parse_series", "read_results", "record", "remeasure", "reuse_problem",
           "run_grid"]
