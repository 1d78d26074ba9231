"""``distill3d bench claims``: the papers' claims that the toy world can express, measured as one ledger.

Each ``Claim`` names its source (paper, table or figure), a treatment and a baseline (a method with its
``--set`` overrides), the metric and the direction the paper claims, and which ``toy-claims`` [test] prompts
test it. Generation claims run on both toy priors (``toy``, whose object tokens bind attributes, and
``toy-words``, whose word tokens mix them; on ``toy-words`` only the two-object prompts), so a claim can be
seen to depend on a prior that mixes attributes.
Editing claims run ``bench edit`` on toy edits whose truth is known (``claims_edit_pairs``).

Every run is an ordinary benchmark run (``bench.grid``: one ``result.json`` each, merged into
``DIR/results.csv``; edits: ``bench.edit`` under ``DIR/edit``), so the ledger resumes where it stopped and
reuses every finished run, and a run shared by two claims is made once. Runs go seed by seed (every claim's
seed 0 first), so a ledger stopped early still has a first estimate for every claim.

The effect is the mean paired difference treatment − baseline over (prompt, seed) pairs (edits: (edit, seed)),
with a 95% percentile-bootstrap interval (``bench.stats.paired``); for cost it is the per-pair ratio − 1.
Verdict rule (``VERDICT_RULE``): a claim that one arm is better is *supported* when the interval lies
entirely on the claimed side of 0, *contradicted* when it lies entirely on the other side, *inconclusive*
otherwise; a claim that two arms cost about the same (within ``margin``) is supported when the interval
lies inside ±margin, contradicted when it lies entirely outside, inconclusive otherwise.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from distill3d.bench.edit import bench_edit, edit_sources, make_pair
from distill3d.bench.grid import (
    BENCH_OVERRIDES,
    RunSpec,
    check_specs,
    overrides_column,
    read_results,
    reuse_problem,
    run_grid,
)
from distill3d.bench.report import oscillation
from distill3d.bench.stats import Interval, bootstrap
from distill3d.bench.suite import load_suite
from distill3d.core.io import write_text_atomic
from distill3d.pipeline.priors import PAIR
from distill3d.toyworld.grammar import COLOR_NAMES, SHAPES, ObjectSpec, SceneSpec, parse_caption

SUITE = "toy-claims"
PRIORS: tuple[str, ...] = ("toy", "toy-words")
TWO_OBJECTS: tuple[str, ...] = ("next to", "on top of")
ALL_KINDS: tuple[str, ...] = ("next to", "on top of", "single", "face")
MIN_PAIRS = 8  # fewer pairs than this decide nothing: a bootstrap over 2-7 pairs can be degenerate (zero width)
VERDICT_RULE = (
    "Effect = mean paired difference treatment − baseline over (prompt, seed) pairs (edits: (edit, seed)) with "
    "its 95% percentile-bootstrap interval; for cost, the mean per-pair time ratio − 1. A claim that one arm is "
    "better is **supported** when the interval lies entirely on the claimed side of 0, **contradicted** when "
    "it lies entirely on the other side, **inconclusive** otherwise. A claim that two arms cost about the same is "
    "supported when the interval lies inside ±margin, contradicted when it lies entirely outside, inconclusive "
    f"otherwise. With fewer than {MIN_PAIRS} pairs a claim is inconclusive whatever its interval (a bootstrap over "
    "a few pairs can have zero width). Nothing here was tuned on the [test] prompts; methods run at their "
    "registry defaults (the levers row: at the lever study's setting, chosen on [dev])."
)


@dataclass(frozen=True)
class Arm:
    """A method with its ``--set`` overrides; ``label`` is its preset label in ``results.csv``."""

    method: str
    label: str = "default"
    overrides: tuple[tuple[str, str], ...] = ()
    #: The prior this arm runs on, whatever the claim's prior (a multi-view method needs ``toy-mv``); None: the
    #: claim's prior.
    prior: str | None = None

    def describe(self) -> str:
        return self.method + "".join(f" {k}={v}" for k, v in self.overrides) + (f" on {self.prior}" if self.prior else "")

    def prior_for(self, claim_prior: str) -> str:
        return self.prior or claim_prior


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str  # what the paper claims, in the toy world's terms
    source: str  # paper, table or figure
    treatment: Arm
    baseline: Arm
    metric: str  # a column of results.csv, or a derived one (METRICS)
    claimed: Literal["higher", "lower", "same"]  # what the paper says of treatment against baseline
    kinds: tuple[str, ...] = ALL_KINDS  # which kinds of [test] prompts
    prompts_per_kind: int | None = None  # the first N [test] prompts of each kind (said in the row), None: all
    priors: tuple[str, ...] = PRIORS
    margin: float = 0.0  # "same": the half-width of "about the same"
    edit: bool = False  # an editing claim (bench edit), else generation (bench run)
    untestable: str = ""  # why the toy world cannot test it (then nothing runs and its row says so)


#: Derived per-run metrics: name -> (title, function of a results.csv row).
METRICS: dict[str, tuple[str, Callable[[dict], float | None]]] = {
    "match": ("judged match (share of views)", lambda r: _num(r["match"])),
    "layout": ("layout right (share of views)", lambda r: _num(r["layout"])),
    "consistent": ("right from every side (share of assets)", lambda r: _num(r["consistent"])),
    "iou": ("silhouette IoU", lambda r: _num(r["iou"])),
    "oscillation": ("gradient-norm oscillation (normalised)", oscillation),
    "diverged": ("diverged runs (failed, or IoU < 0.3)", lambda r: float(bool(r["note"]) or (_num(r["iou"]) or 0) < 0.3)),
    "seconds": ("seconds per run (ratio − 1)", lambda r: _num(r["seconds_total"])),
    "front_error": ("faces' front-visibility error (share of views)", lambda r: _num(r["front_error"])),
}
SHARES = frozenset({"match", "layout", "consistent", "diverged", "changed", "kept", "front_error"})  # metrics in [0, 1], shown as %
EDIT_METRICS = {"outside_mse": "pixel MSE outside the edited object (identity)", "changed": "edit applied (share of views)",
                "kept": "rest kept (share of views)"}

_ANCHORDS = "AnchorDS (papers/anchords.md)"
_ISD = "ModeDreamer (papers/modedreamer_isd.txt)"
_UDS = "UDS (papers/uds.md)"
_SDI_T1 = "SDI (arXiv 2405.15891) Table 1"
_MVDREAM = "MVDream (Shi et al., ICLR 2024)"
#: The cameras of the multi-view arms: MVDream's 4 views at 90° per step, elevation 0-30° (threestudio-mvdream).
MV_VIEWS = (("elevation_max", "30"), ("view_azimuths", "even"), ("views_per_step", "4"))
#: mvdream-sds at its registry default CFG (chosen on toy-claims [dev], benchmarks/results/mv_levers3), pinned in
#: the arm so that its runs' ids name it: a run id holds the --set overrides, not the registry's defaults.
MV_SDS = Arm("mvdream-sds", "multiview", (("guidance_scale", "5"), *MV_VIEWS), "toy-mv")
#: The toy pair of the -mv methods: their base method's rows on the single-view prior, the term's on toy-mv.
TOY_PAIR = f"toy{PAIR}toy-mv"
#: anchords-mv at its registry default term CFG (5, chosen on toy-claims [dev]: benchmarks/results/amv_levers), pinned
#: like MV_SDS's, on the toy pair.
AMV_PAIR = Arm("anchords-mv", "multiview", (("mv.guidance_scale", "5"), *MV_VIEWS), TOY_PAIR)

#: The ledger's budget (issue 21: the whole ledger from nothing within 8 hours with --workers 2 on the 2-core
#: machine; ``bench claims --plan`` projects it from the finished runs' medians: 6.4 h with the medians of 7 Dec
#: 2026, SDI 169 s, VSD 58 s, ISM 49 s, SDS 28 s, ISD 63 s a run): the first N [test] prompts of each kind per
#: claim, 3 seeds. Two-object claims (the round's centre) get MULTI, ISD (2x an SDS run) ISD_PROMPTS, the rest
#: CHEAP; SDI (6x: 10 inversion steps per step), VSD and ISM EXPENSIVE_PROMPTS on the toy prior only. The
#: multi-view claims keep every prompt of their kinds (cheap, and each tests one kind). More power: more seeds.
CHEAP, ISD_PROMPTS, MULTI, EXPENSIVE_PROMPTS = 3, 2, 4, 2
#: Methods whose claims run after every other claim's (seed by seed), so a ledger stopped early has the rest.
EXPENSIVE = frozenset({"sdi", "vsd", "ism"})

CLAIMS: tuple[Claim, ...] = (
    Claim("anchords-multi", "AnchorDS reduces semantic over-smoothing on multi-object prompts: objects in their places",
          f"{_ANCHORDS}, Sec. 1 and Fig. 1; T3Bench multi", Arm("anchords"), Arm("sds"), "layout", "higher", TWO_OBJECTS,
          prompts_per_kind=MULTI),
    Claim("anchords-quality", "AnchorDS beats SDS overall (T3Bench quality 30.7 vs 29.7)", f"{_ANCHORDS}, T3Bench table",
          Arm("anchords"), Arm("sds"), "match", "higher", prompts_per_kind=CHEAP),
    Claim("anchords-filter", "The filter adds to AnchorDS (T3Bench 32.8 vs 30.7)", f"{_ANCHORDS}, T3Bench table (ablation)",
          Arm("anchords-filter"), Arm("anchords"), "match", "higher", prompts_per_kind=CHEAP),
    Claim("anchords-finetune", "The fine-tune adds to the filter (T3Bench 33.3 vs 32.8)",
          f"{_ANCHORDS}, T3Bench table (ablation)", Arm("anchords-finetune"), Arm("anchords-filter"), "match", "higher",
          prompts_per_kind=CHEAP),
    Claim("anchords-cost", "AnchorDS costs about what SDS costs (one more prior row, batched)",
          f"{_ANCHORDS}, Sec. 4 (cost); METHODS.md", Arm("anchords"), Arm("sds"), "seconds", "same", prompts_per_kind=CHEAP, margin=0.25),
    Claim("isd-variance", "ISD lowers the oscillation of the gradient against SDS", f"{_ISD}, Fig. 3",
          Arm("isd"), Arm("sds"), "oscillation", "lower", prompts_per_kind=ISD_PROMPTS),
    Claim("isd-control-variate", "ISD's text control variate beats IP-SDS (ε as control variate)", f"{_ISD}, ablation (Sec. 5)",
          Arm("isd"), Arm("isd", "ip-sds", (("mode", "ip-sds"),)), "match", "higher", prompts_per_kind=ISD_PROMPTS),
    Claim("isd-multi", "ISD avoids mode averaging on multi-object prompts: objects in their places",
          f"{_ISD}, T3Bench multi (41.4)", Arm("isd"), Arm("sds"), "layout", "higher", TWO_OBJECTS,
          prompts_per_kind=ISD_PROMPTS),
    Claim("isd-janus", "ISD's reference image fixes the front: fewer Janus views on faces", f"{_ISD}, Sec. 1 and figures",
          Arm("isd"), Arm("sds"), "match", "higher", ("face",)),
    Claim("uds-generation", "UDS generates better than SDS", f"{_UDS}, generation table",
          Arm("uds"), Arm("sds"), "match", "higher", prompts_per_kind=CHEAP),
    Claim("sdi-divergence", "SDI diverges less than SDS (4.7% vs 18.6% diverged)", _SDI_T1,
          Arm("sdi"), Arm("sds"), "diverged", "lower", prompts_per_kind=EXPENSIVE_PROMPTS, priors=("toy",)),
    Claim("sdi-quality", "SDI beats SDS (CLIP 33.47 vs 29.81)", _SDI_T1, Arm("sdi"), Arm("sds"), "match", "higher",
          prompts_per_kind=EXPENSIVE_PROMPTS, priors=("toy",)),
    Claim("vsd-quality", "VSD beats SDS (CLIP 33.31 vs 29.81)", f"{_SDI_T1}; ProlificDreamer", Arm("vsd"), Arm("sds"),
          "match", "higher", prompts_per_kind=EXPENSIVE_PROMPTS, priors=("toy",)),
    Claim("ism-quality", "ISM beats SDS", "LucidDreamer (CVPR 2024), comparisons", Arm("ism"), Arm("sds"), "match",
          "higher", prompts_per_kind=EXPENSIVE_PROMPTS, priors=("toy",)),
    Claim("csd-enough", "The classifier term alone does what SDS does (CSD)", "CSD (Yu et al. 2023), Sec. 3",
          Arm("csd"), Arm("sds"), "match", "same", prompts_per_kind=CHEAP, margin=0.1),
    Claim("nfsd-quality", "NFSD beats SDS at a low CFG", "NFSD (Katzir et al. 2024)", Arm("nfsd"), Arm("sds"),
          "match", "higher", prompts_per_kind=CHEAP,
          untestable="NFSD's δ_D needs its negative prompt ('unrealistic, blurry, low quality, …'), which the toy priors "
          "cannot read (every run is refused); with the empty text in its place δ_D is 0 above t = 200 and NFSD is CSD "
          "there, which csd-enough tests"),
    Claim("levers-next-to", "Evenly spread views (MVDream's 4 at 90°) and a wider initial cloud put two objects in "
          "their places from every side (distill3d's lever study, chosen on toy-claims [dev])",
          "issue 21 lever study (benchmarks/results/levers/levers.md)",
          Arm("sds", "levers", (("init_radius", "0.9"), ("view_azimuths", "even"))), Arm("sds"), "layout", "higher",
          TWO_OBJECTS, prompts_per_kind=MULTI),
    Claim("mvdream-janus", "Score distillation from a multi-view prior puts a face's front where it belongs (no Janus)",
          f"{_MVDREAM}, Sec. 1 and Fig. 1 (multi-view consistency)",
          MV_SDS, Arm("sds"), "front_error", "lower", ("face",),
          priors=("toy",)),
    Claim("mvdream-layout", "Score distillation from a multi-view prior puts two objects in their places from every side",
          f"{_MVDREAM}, Sec. 1 (the multi-face Janus problem and content drift between views)",
          MV_SDS, Arm("sds"), "consistent", "higher", ("next to",),
          priors=("toy",)),
    Claim("isd-mv-regulariser", "ISD's multi-view term from a multi-view prior (the paper's method) beats the same "
          "term one view at a time: faces' front", f"{_ISD}, Eq. 8-9 (g_MV from MVDream)",
          Arm("isd", "multiview", MV_VIEWS, "toy-mv"), Arm("isd", "multiview", MV_VIEWS), "front_error", "lower",
          ("face",), priors=("toy",)),
    Claim("anchords-multi-mv", "AnchorDS reduces semantic over-smoothing on multi-object prompts, with "
          "ModeDreamer's multi-view term on both: objects in their places from every side",
          f"{_ANCHORDS}, Sec. 1 and Fig. 1; the term from {_ISD}, Eq. 8-9",
          AMV_PAIR, Arm("sds-mv", "multiview", MV_VIEWS, TOY_PAIR), "consistent",
          "higher", ("next to",), priors=("toy",)),
    Claim("uds-edit-identity-dds", "UDS keeps identity when editing better than DDS", f"{_UDS}, editing table",
          Arm("uds"), Arm("dds"), "outside_mse", "lower", priors=("toy",), edit=True),
    Claim("uds-edit-identity-pds", "UDS keeps identity when editing better than PDS", f"{_UDS}, editing table",
          Arm("uds"), Arm("pds"), "outside_mse", "lower", priors=("toy",), edit=True),
    Claim("uds-edit-applies", "UDS applies the edit at least as well as DDS", f"{_UDS}, editing table",
          Arm("uds"), Arm("dds"), "changed", "higher", priors=("toy",), edit=True),
)


def _num(v: str | float | None) -> float | None:
    if v is None or v == "":
        return None
    return float(v)


# ---------------------------------------------------------------------------------------------- the runs


def claim_kinds(claim: Claim, prior: str) -> tuple[str, ...]:
    """The prompt kinds a claim is tested on with ``prior``: on the word-token prior only the two-object kinds
    (what it is in the ledger for: whether a claim depends on a prior that mixes attributes), to fit the budget."""
    return claim.kinds if prior == "toy" else tuple(k for k in claim.kinds if k in TWO_OBJECTS)


def claim_priors(claim: Claim) -> tuple[str, ...]:
    return tuple(p for p in claim.priors if claim_kinds(claim, p))


def claim_prompts(claim: Claim, prior: str = "toy") -> list[str]:
    """The [test] prompts of ``SUITE`` that test ``claim`` on ``prior`` (the first N of each kind for expensive
    methods), interleaved across kinds (each kind's first, then each one's second...)."""
    test = load_suite(SUITE).test
    per_kind = []
    for kind in claim_kinds(claim, prior):
        of_kind = [p for p in test if parse_caption(p).kind == kind]
        per_kind.append(of_kind[: claim.prompts_per_kind] if claim.prompts_per_kind else of_kind)
    return [ps[i] for i in range(max(map(len, per_kind), default=0)) for ps in per_kind if i < len(ps)]


def claims_edit_pairs() -> list[tuple[str, str]]:
    """24 toy edits by one rule: the first 4 singles, 4 "next to" and 4 "on top of" [test] captions of
    ``SUITE``; for each, the first object's colour changed to the next palette colour the scene does not use,
    and its shape to the next shape (faces excluded) the scene does not use."""
    test = load_suite(SUITE).test
    sources = [p for kind in ("single", "next to", "on top of") for p in [q for q in test if parse_caption(q).kind == kind][:4]]
    pairs = []
    for caption in sources:
        spec = parse_caption(caption)
        first, rest = spec.objects[0], spec.objects[1:]
        used_c, used_s = {o.color for o in spec.objects}, {o.shape for o in spec.objects}
        color = _next(COLOR_NAMES, first.color, used_c)
        shape = _next(tuple(s for s in SHAPES if s != "face"), first.shape, used_s)
        for obj in (ObjectSpec(first.shape, color), ObjectSpec(shape, first.color)):
            pairs.append((caption, SceneSpec((obj, *rest), spec.relation).caption))
    return pairs


def _next(names: tuple[str, ...], current: str, used: set[str]) -> str:
    i = names.index(current)
    return next(n for n in names[i + 1 :] + names[:i] if n not in used)


def generation_specs(claims: Iterable[Claim], seeds: list[int]):
    """Every generation run of the claims as ``grid.RunSpec``s, seed-major (all seed-0 runs first) and within
    a seed round-robin over the (claim, prior) cells (each cell's first prompt, then each one's second...), the
    claims of expensive methods (``EXPENSIVE``: SDI, VSD, ISM cost several times an SDS run) after
    the others, so a ledger stopped early has a first paired estimate for as many claims as it could afford.
    A run shared by claims is listed once."""
    cells = [(c, p, claim_prompts(c, p)) for c in claims if not (c.edit or c.untestable) for p in claim_priors(c)]
    specs, seen = [], set()
    for seed in seeds:
        for cheap in (True, False):  # the expensive methods' claims (fewer prompts) after the others
            group = [cell for cell in cells if (cell[0].treatment.method not in EXPENSIVE) == cheap]
            for i in range(max((len(prompts) for _, _, prompts in group), default=0)):
                for claim, prior, prompts in group:
                    if i >= len(prompts):
                        continue
                    for arm in (claim.treatment, claim.baseline):
                        overrides = tuple(sorted({**BENCH_OVERRIDES, **dict(arm.overrides)}.items()))
                        spec = RunSpec(prompts[i], arm.method, arm.label, arm.prior_for(prior), seed, overrides)
                        if (spec.run_id, spec.preset) not in seen:
                            seen.add((spec.run_id, spec.preset))
                            specs.append(spec)
    return specs


@dataclass(frozen=True)
class PlanRow:
    """One method on one prior in a ledger's run plan: its runs, how many are finished in the ledger's directory,
    and the median seconds of those (None: none finished yet, so its cost is unknown)."""

    method: str
    prior: str
    runs: int
    finished: int
    median_seconds: float | None


def run_plan(claims: Iterable[Claim], seeds: list[int], rows: list[dict], edit_runs: list[dict]) -> list[PlanRow]:
    """The ledger's runs per (method, prior), generation then edits (prior "edit"), with the finished ones and their
    median wall time from ``rows`` (results.csv) and ``edit_runs`` (the edits' metrics)."""
    claims = tuple(claims)
    by_cell: dict[tuple[str, str], set[str]] = {}
    for spec in generation_specs(claims, seeds):
        by_cell.setdefault((spec.method, spec.prior), set()).add(spec.run_id)
    seconds = {r["run_id"]: float(r["seconds_total"]) for r in rows if r.get("seconds_total")}
    plan = []
    for (method, prior), ids in by_cell.items():
        times = [seconds[i] for i in ids if i in seconds]
        plan.append(PlanRow(method, prior, len(ids), len(times), statistics.median(times) if times else None))
    edit_claims = [c for c in claims if c.edit]
    n_pairs = len(claims_edit_pairs())
    for method in dict.fromkeys(m for c in edit_claims for m in (c.treatment.method, c.baseline.method)):
        times = [r["seconds"] for r in edit_runs if r["method"] == method and r["seed"] in seeds and "seconds" in r]
        plan.append(PlanRow(method, "edit", n_pairs * len(seeds), len(times),
                            statistics.median(times) if times else None))
    return plan


def format_plan(plan: list[PlanRow], workers: int) -> str:
    """A markdown table of ``plan`` and its projected wall time, runs and edits spread over ``workers`` (with
    ``--ray`` the edits run one at a time, which this does not model); cells with no finished run are left out of
    the projection and named."""
    lines = ["| method | prior | runs | finished | median s | CPU h (all) | CPU h (left) |", "|---|---|---|---|---|---|---|"]
    all_h = left_h = 0.0
    unknown = []
    for r in plan:
        if r.median_seconds is None:
            unknown.append(f"{r.method} on {r.prior} ({r.runs} runs)")
            lines.append(f"| {r.method} | {r.prior} | {r.runs} | 0 | – | – | – |")
            continue
        cell_all, cell_left = r.runs * r.median_seconds / 3600, (r.runs - r.finished) * r.median_seconds / 3600
        lines.append(f"| {r.method} | {r.prior} | {r.runs} | {r.finished} | {r.median_seconds:.0f} | {cell_all:.2f} | "
                     f"{cell_left:.2f} |")
        all_h, left_h = all_h + cell_all, left_h + cell_left
    lines.append("")
    lines.append(f"Projected wall time with --workers {workers} (runs and edits {workers} at a time): from nothing "
                 f"{all_h / workers:.1f} h, what is left {left_h / workers:.1f} h ({sum(r.runs for r in plan)} runs "
                 f"and edits in all).")
    if unknown:
        lines.append(f"Not in the projection (no finished run to time yet): {', '.join(unknown)}.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- the ledger


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    prior: str
    effect: Interval | None
    baseline_mean: float | None
    treatment_mean: float | None
    verdict: str


def _keyed(rows: list[dict], arm: Arm, prior: str, prompts: set[str], metric: str) -> dict[tuple, float]:
    fn = METRICS[metric][1]
    settings = overrides_column(sorted(arm.overrides))  # in generation_specs' (sorted) order
    out = {}
    for r in rows:  # the arm's own runs: same method, label, prior and --set overrides (another CFG is another arm)
        if (r["method"] == arm.method and r["preset"] == arm.label and r["prior"] == arm.prior_for(prior)
                and r["prompt"] in prompts and r.get("overrides", "") == settings):
            v = fn(r)
            if v is not None:
                out[(r["prompt"], int(r["seed"]))] = v
    return out


def verdict(claim: Claim, effect: Interval | None) -> str:
    if effect is None or effect.n < MIN_PAIRS:
        return "not run yet" if effect is None else f"inconclusive ({effect.n} pairs)"
    if claim.claimed == "same":
        if -claim.margin <= effect.low and effect.high <= claim.margin:
            return "supported"
        return "contradicted" if effect.low > claim.margin or effect.high < -claim.margin else "inconclusive"
    lo, hi = (effect.low, effect.high) if claim.claimed == "higher" else (-effect.high, -effect.low)
    return "supported" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"


def evaluate_generation(claim: Claim, prior: str, rows: list[dict]) -> ClaimResult:
    if claim.untestable:
        return ClaimResult(claim, prior, None, None, None, f"not testable here: {claim.untestable}")
    prompts = set(claim_prompts(claim, prior))
    a = _keyed(rows, claim.treatment, prior, prompts, claim.metric)
    b = _keyed(rows, claim.baseline, prior, prompts, claim.metric)
    keys = sorted(set(a) & set(b))
    if claim.metric == "seconds":
        diffs = [a[k] / b[k] - 1.0 for k in keys if b[k] > 0]
    else:
        diffs = [a[k] - b[k] for k in keys]
    effect = bootstrap(diffs)
    return ClaimResult(claim, prior, effect, _mean(b[k] for k in keys), _mean(a[k] for k in keys), verdict(claim, effect))


def evaluate_edit(claim: Claim, runs: list[dict]) -> ClaimResult:
    def keyed(method: str) -> dict[tuple, float]:
        return {(r["source"], r["target"], r["seed"]): r[claim.metric] for r in runs
                if r["method"] == method and claim.metric in r}

    a, b = keyed(claim.treatment.method), keyed(claim.baseline.method)
    keys = sorted(set(a) & set(b))
    effect = bootstrap([a[k] - b[k] for k in keys])
    return ClaimResult(claim, "toy", effect, _mean(b[k] for k in keys), _mean(a[k] for k in keys), verdict(claim, effect))


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def _fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "–"
    if metric in SHARES:
        return f"{100 * v:.0f}%"
    return f"{v:.3g}"


def _effect(e: Interval | None, metric: str) -> str:
    if e is None:
        return "–"
    if metric in SHARES:
        return f"{100 * e.mean:+.0f} pts [{100 * e.low:+.0f}, {100 * e.high:+.0f}]"
    if metric == "seconds":
        return f"{100 * e.mean:+.0f}% [{100 * e.low:+.0f}, {100 * e.high:+.0f}]"
    return f"{e.mean:+.3g} [{e.low:+.3g}, {e.high:+.3g}]"


def write_ledger(results: list[ClaimResult], out: Path, command: str, seeds: list[int]) -> str:
    """``claims.md``: the rule, then one row per claim and prior."""
    lines = ["# Claims ledger", "", f"Made by `{command}` (suite `{SUITE}`, [test] prompts, seeds {seeds}).", "",
             f"**Verdict rule.** {VERDICT_RULE}", "",
             "| claim | source | test | metric | baseline | treatment | effect [95% CI] | pairs | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.claim
        if c.edit:
            test = f"bench edit, {len(claims_edit_pairs())} toy edits, prior {r.prior}"
            title = EDIT_METRICS[c.metric]
        else:
            n = len(claim_prompts(c, r.prior))
            test = f"{n} prompts ({', '.join(claim_kinds(c, r.prior))}" + (f"; first {c.prompts_per_kind} per kind" if c.prompts_per_kind
                                                           else "") + f"), prior {r.prior}"
            title = METRICS[c.metric][0]
        if c.claimed == "same":
            title += f", same within ±{c.margin:g}"
        lines.append(f"| {c.statement} (`{c.key}`) | {c.source} | {c.treatment.describe()} vs {c.baseline.describe()}; "
                     f"{test} | {title} | {_fmt(r.baseline_mean, c.metric)} | {_fmt(r.treatment_mean, c.metric)} | "
                     f"{_effect(r.effect, c.metric)} | {r.effect.n if r.effect else 0} | {r.verdict} |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(out, text)
    return text


def run_claims(out_dir: Path, seeds: list[int], engine, claims: tuple[Claim, ...] = CLAIMS, run: bool = True,
               log: Callable[[str], None] = print, ledger: tuple[Claim, ...] = CLAIMS, edit_workers: int = 1,
               threads: int = 1) -> str:
    """Run (or resume) the runs of ``claims``, seed by seed (the edits ``edit_workers`` at a time in local
    processes), then write ``out_dir/claims.md`` with a row for every claim of ``ledger`` (all of them by default,
    so that advancing a few claims never drops the others' rows from the file); returns its text."""
    edit_claims = [c for c in claims if c.edit]
    edit_methods = list(dict.fromkeys(m for c in edit_claims for m in (c.treatment.method, c.baseline.method)))
    pairs = [make_pair(s, t) for s, t in claims_edit_pairs()]
    if run:
        all_specs = generation_specs(claims, seeds)
        check_specs(all_specs)
        for seed in seeds:
            specs = [s for s in all_specs if s.seed == seed]
            log(f"seed {seed}: {len(specs)} generation runs")
            run_grid(specs, out_dir, engine, log)
            if edit_claims:
                log(f"seed {seed}: {len(edit_methods) * len(pairs)} edits")
                run_edits(edit_methods, pairs, seed, out_dir / "edit", edit_workers, threads)
    rows = read_results(out_dir) if (out_dir / "results.csv").is_file() else []
    made = sorted({int(r["seed"]) for r in rows})
    stale = {s.run_id for s in generation_specs(ledger, made) if reuse_problem(out_dir, s) is not None}
    if stale:  # made before a default changed: they would pass an old setting off as today's
        log(f"{len(stale)} finished runs were made with other settings than today's defaults and are left out of "
            f"the ledger; delete their directories under {out_dir / 'runs'} and run again to remake them")
        rows = [r for r in rows if r["run_id"] not in stale]
    edits = edit_runs(out_dir / "edit")
    results = []
    for c in ledger:
        if c.edit:
            results.append(evaluate_edit(c, edits))
        else:
            results += [evaluate_generation(c, p, rows) for p in claim_priors(c)]
    done = sorted({int(r["seed"]) for r in rows})
    return write_ledger(results, out_dir / "claims.md", _command(out_dir, seeds), done or seeds)


def _edit_one(method: str, pair, seed: int, edit_dir: Path, threads: int, overrides: dict[str, str],
              source_points: int) -> None:
    import torch

    torch.set_num_threads(threads)
    bench_edit([method], [pair], [seed], edit_dir, overrides, source_points=source_points)


def run_edits(methods: list[str], pairs: list, seed: int, edit_dir: Path, workers: int = 1, threads: int = 1,
              overrides: dict[str, str] | None = None, source_points: int = 5000) -> None:
    """Every method's edit of every pair at ``seed``, pair by pair (every method of a pair before the next pair: a
    ledger stopped early still pairs its edits), ``workers`` at a time in spawned processes (one: in this one);
    each edit is written by ``bench_edit`` and skipped once finished."""
    overrides = overrides or {}
    if workers <= 1:
        for pair in pairs:
            bench_edit(methods, [pair], [seed], edit_dir, overrides, source_points=source_points)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    edit_sources(pairs, edit_dir, source_points)  # written once here, not by two processes at a time
    jobs = [(m, pair) for pair in pairs for m in methods]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_edit_one, m, pair, seed, edit_dir, threads, overrides, source_points)
                   for m, pair in jobs]
        for future in futures:
            future.result()


def edit_runs(edit_dir: Path) -> list[dict]:
    """Every finished edit's metrics under ``edit_dir/runs`` (one ``metrics.json`` per method, pair, seed)."""
    runs = []
    by_slug = {make_pair(s, t).slug: (s, t) for s, t in claims_edit_pairs()}
    for path in sorted(edit_dir.glob("runs/*/*/metrics.json")):
        slug, _, seed = path.parent.name.rpartition("_s")
        if slug in by_slug:
            source, target = by_slug[slug]
            runs.append({"method": path.parent.parent.name, "source": source, "target": target, "seed": int(seed),
                         **json.loads(path.read_text())})
    return runs


def _command(out_dir: Path, seeds: list[int]) -> str:
    return f"distill3d bench claims --seeds {','.join(map(str, seeds))} --workers 2 --out {out_dir}"


__all__ = ["CHEAP", "CLAIMS", "EXPENSIVE", "EXPENSIVE_PROMPTS", "ISD_PROMPTS", "MULTI", "Arm", "Claim", "ClaimResult", "PlanRow", "claim_kinds",
           "claim_priors", "claim_prompts", "claims_edit_pairs", "edit_runs", "evaluate_edit", "evaluate_generation",
           "format_plan", "generation_specs", "run_claims", "run_edits", "run_plan", "verdict", "write_ledger"]
