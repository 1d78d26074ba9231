"""``distill3d bench tune``: an equal-budget sweep of each method's key settings on a suite's dev prompts,
written as presets that ``bench run --presets`` reads.

The knobs (``KNOBS``) are the settings the papers tune: the guidance scale (x0.5, x1, x2 of the method's
preset), the image-adapter scale λ of the methods that anchor on the render (AnchorDS's paper form has no
guidance scale: λ sets the strength of its source branch; ISD), the learning rates (every ``lr_*`` field of the run's representation, scaled together, x0.5, x1,
x2) and the upper end of the timestep range (0.98, 0.75, 0.5). A knob applies to a method when ``--set``
accepts its key for it (a method without a guidance scale has no such knob); the presets file lists the
knobs each method was not tuned on (``not_tuned``). Every method gets the same
budget: ``budget`` candidate settings (its defaults first, then distinct points of the knobs' grid drawn
with a fixed seed), each run on every dev prompt and seed at the same step count. The chosen candidate has
the best mean score (judged match with a toy-world prior, CLIP similarity otherwise); a tie keeps the
earlier candidate, so the defaults win a tie.

The presets file (JSON): ``{"suite", "split": "dev", "budget", "score", "methods": {name: {"overrides":
{key: value}, "score", "default_score", "generate", "candidates": [{"label", "overrides", "score"}]}},
"not_tuned"}``; ``overrides`` are ``--set`` pairs, so ``generate`` (the command line it records) makes a
run with a method's tuned settings.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distill3d.bench.grid import Engine, make_specs, read_results, run_grid
from distill3d.bench.suite import Suite
from distill3d.core.errors import UserError, shorten
from distill3d.core.io import write_json_atomic
from distill3d.pipeline.config import representation_config, resolve_run_config
from distill3d.pipeline.loop import build_method

TUNE_SEED = 0


@dataclass(frozen=True)
class Knob:
    """One tuned setting: ``levels(method, base)`` -> the candidate ``--set`` overrides, the default first."""

    name: str
    levels: Callable[[str, dict[str, str]], list[dict[str, str]]]


def _accepts(method: str, raw: dict[str, str]) -> bool:
    try:
        cfg, rest = resolve_run_config(method, raw)
        build_method(cfg, rest)
    except UserError:
        return False
    return True


def _scaled(field: str) -> Callable[[str, dict[str, str]], list[dict[str, str]]]:
    """Levels x0.5, x1, x2 of a top-level number of the method's config (its preset with ``base`` applied)."""

    def levels(method: str, base: dict[str, str]) -> list[dict[str, str]]:
        cfg, rest = resolve_run_config(method, base)
        mcfg = getattr(build_method(cfg, rest), "config", None)
        if mcfg is None or not any(f.name == field for f in dataclasses.fields(mcfg)):
            return []
        value = float(getattr(mcfg, field))
        return [{}] + [{field: f"{value * k:g}"} for k in (0.5, 2.0)]

    return levels


def _lr_levels(method: str, base: dict[str, str]) -> list[dict[str, str]]:
    cfg, _ = resolve_run_config(method, base)
    rep = representation_config(cfg)
    lrs = {f.name: getattr(rep, f.name) for f in dataclasses.fields(rep) if f.name.startswith("lr_")}
    if not lrs:
        return []
    return [{}] + [{k: f"{v * s:g}" for k, v in lrs.items()} for s in (0.5, 2.0)]


#: Keys tried, in order, for the upper end of the timestep range.
T_MAX_KEYS = ("t_max", "timesteps.t_max")


def _t_levels(method: str, base: dict[str, str]) -> list[dict[str, str]]:
    for key in T_MAX_KEYS:
        if _accepts(method, {**base, key: "0.75"}):
            return [{}] + [{key: v} for v in ("0.75", "0.5")]
    return []


KNOBS: tuple[Knob, ...] = (Knob("guidance scale", _scaled("guidance_scale")),
                           Knob("image scale", _scaled("image_scale")), Knob("learning rate", _lr_levels),
                           Knob("t range", _t_levels))


def candidates(method: str, budget: int, base: dict[str, str]) -> tuple[list[dict[str, str]], list[str]]:
    """``budget`` candidate override sets for ``method`` (the defaults, {}, first) and the knobs it lacks."""
    levels, missing = [], []
    for knob in KNOBS:
        lv = knob.levels(method, base)
        if lv:
            levels.append(lv)
        else:
            missing.append(knob.name)
    grid = [dict(kv for part in combo for kv in part.items()) for combo in itertools.product(*levels)]
    rest = grid[1:]  # grid[0] is every knob at its default: {}
    random.Random(f"{TUNE_SEED}:{method}").shuffle(rest)
    return [{}, *rest][:budget], missing


def score_of(rows: list[dict], metric: str) -> float | None:
    values = [float(r[metric]) for r in rows if r.get(metric) not in (None, "")]
    return statistics.fmean(values) if values else None


def tune(suite: Suite, methods: list[str], budget: int, seeds: list[int], prior: str, overrides: dict[str, str],
         out_dir: Path, engine: Engine, presets_file: Path, log: Callable[[str], None] = print) -> dict:
    """Run the sweep in ``out_dir`` (resumable like ``bench run``), choose, and write ``presets_file``."""
    if budget < 1:
        raise UserError("--budget must be at least 1")
    if not suite.split:
        log(f"note: suite {suite.name} has no [dev]/[test] sections, so tuning uses the prompts it reports on")
    per_method: dict[str, list[dict[str, str]]] = {}
    not_tuned: dict[str, list[str]] = {}  # per method: the knobs it has no setting for
    for m in methods:
        per_method[m], missing = candidates(m, budget, overrides)
        if missing:
            not_tuned[m] = missing
    labels = {f"tune-{k}": {m: c[k] for m, c in per_method.items() if k < len(c)} for k in range(budget)}
    specs = make_specs(suite.prompts("dev"), methods, labels, [prior], seeds, overrides)
    specs = [s for s in specs if s.method in labels[s.preset]]
    run_grid(specs, out_dir, engine, log)
    rows = read_results(out_dir)
    metric = "match" if any(r.get("match") for r in rows) else "clip"
    chosen = {}
    for m in methods:
        scored = []
        for k, cand in enumerate(per_method[m]):
            mine = [r for r in rows if r["method"] == m and r["preset"] == f"tune-{k}"]
            scored.append({"label": f"tune-{k}", "overrides": cand, "score": score_of(mine, metric)})
        valid = [c for c in scored if c["score"] is not None]
        if not valid:
            raise UserError(f"no scored dev runs for {shorten(m)}; is {out_dir} from another sweep?")
        best = max(valid, key=lambda c: (c["score"], -int(c["label"].split("-")[1])))
        sets = " ".join(f"--set {k}={v}" for k, v in best["overrides"].items())
        chosen[m] = {"overrides": best["overrides"], "score": best["score"], "default_score": scored[0]["score"],
                     "generate": f"distill3d generate PROMPT --method {m} {sets}".rstrip(), "candidates": scored}
        log(f"{m}: {metric} {best['score']:.3f} with {best['overrides'] or 'its defaults'} "
            f"(defaults {scored[0]['score']:.3f})")
    result = {"suite": suite.name, "split": "dev", "prompts": list(suite.prompts("dev")), "seeds": seeds,
              "budget": budget, "prior": prior, "score": metric, "overrides": overrides, "methods": chosen,
              "not_tuned": not_tuned}
    write_json_atomic(presets_file, result)
    return result


def read_presets(path: Path) -> dict[str, dict[str, str]]:
    """The chosen ``--set`` overrides per method of a presets file written by ``tune``."""
    try:
        data = json.loads(Path(path).read_text())
        return {m: {str(k): str(v) for k, v in e["overrides"].items()} for m, e in data["methods"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{shorten(str(path))} is not a presets file written by `distill3d bench tune`") from None


__all__ = ["KNOBS", "Knob", "candidates", "read_presets", "tune"]
