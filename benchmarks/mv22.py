"""Issue 22's method comparison: a multi-view prior against the single-view one, paired per (prompt, seed), 95%
percentile bootstrap (distill3d.bench.stats: 2000 resamples, seed 0), from the committed result files alone.

Both grids run the same cameras: 4 views per step at 90° (view_azimuths=even), elevation 0-30°, 200 steps:

    S="--set views_per_step=4 --set view_azimuths=even --set elevation_max=30"
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods sds,isd --priors toy \\
        --seeds 0,1,2 --workers 2 $S --out benchmarks/results/mv22/toy
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods mvdream-sds,isd --priors toy-mv \\
        --seeds 0,1,2 --workers 2 $S --out benchmarks/results/mv22/toy-mv
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods mvdream-sds --priors toy-mv \
        --seeds 0 --workers 1 $S --out benchmarks/results/mv22/toy-mv_ontop
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods sds --priors toy \
        --seeds 0 --workers 1 $S --out benchmarks/results/mv22/toy_ontop
    # issue 21: mvdream-sds at its CFG 15 default on the re-shipped toy-mv (camera-modulated text tokens); CFG 5 is
    # the default since, so a rerun of the two toy-mv2 grids is refused (bench.grid.check_reusable): remake them
    # with --set guidance_scale=15 (new run ids)
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods mvdream-sds --priors toy-mv \
        --seeds 0,1,2 --workers 2 $S --out benchmarks/results/mv22/toy-mv2
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods mvdream-sds --priors toy-mv \
        --seeds 0 --workers 2 $S --out benchmarks/results/mv22/toy-mv2_ontop
    # issue 21, third round: on top of and single at seeds 0,1,2 for both (the first runs had seed 0 only), then
    # mvdream-sds at CFG 5 (chosen on the larger [dev]: benchmarks/mv_levers3.sh) on every kind, seeds 0,1,2
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods mvdream-sds --priors toy-mv \
        --seeds 0,1,2 --workers 1 $S --out benchmarks/results/mv22/toy-mv2_ontop
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods sds --priors toy \
        --seeds 0,1,2 --workers 1 $S --out benchmarks/results/mv22/toy_ontop
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods mvdream-sds --priors toy-mv \
        --seeds 0,1,2 --workers 1 $S --set guidance_scale=5 --out benchmarks/results/mv22/toy-mv3
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods mvdream-sds --priors toy-mv \
        --seeds 0,1,2 --workers 1 $S --set guidance_scale=5 --out benchmarks/results/mv22/toy-mv3_ontop
    # issue 22: AnchorDS and UDS unchanged against the same with ModeDreamer's β-weighted multi-view term, on toy-mv
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods anchords,anchords-mv \
        --priors toy-mv --seeds 0,1,2 --workers 1 $S --out benchmarks/results/mv22/toy-mv_terms
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods uds,uds-mv --priors toy-mv \
        --seeds 0 --workers 1 $S --out benchmarks/results/mv22/toy-mv_terms_uds
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods anchords-mv --priors toy-mv \
        --seeds 0,1,2 --workers 1 $S --out benchmarks/results/mv22/toy-mv_terms_ontop
    # issue 21, fourth round: anchords-mv on the toy pair (AnchorDS's rows on toy, the term's camera rows on toy-mv:
    # --priors toy+toy-mv), chosen on [dev] by benchmarks/amv_levers.sh
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods anchords-mv --priors toy+toy-mv \
        --seeds 0,1,2 --workers 2 $S --out benchmarks/results/mv22/toy-pair_terms
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods anchords-mv --priors toy+toy-mv \
        --seeds 0,1,2 --workers 2 $S --out benchmarks/results/mv22/toy-pair_terms_ontop
    # then the term's CFG 5 on the pair (on top of +12 [+3, +26] on [dev]: benchmarks/amv_levers.sh, paired_cfg5),
    # on the [test] "next to" and "on top of" prompts first, then faces and single (the same grid: finished runs
    # are reused)
    distill3d bench run --suite benchmarks/results/mv22/nextto_ontop.txt --methods anchords-mv --priors toy+toy-mv \
        --seeds 0,1,2 --workers 2 $S --set mv.guidance_scale=5 --out benchmarks/results/mv22/toy-pair_terms_cfg5
    distill3d bench run --suite benchmarks/results/mv22/faces_nextto.txt --methods anchords-mv --priors toy+toy-mv \
        --seeds 0,1,2 --workers 2 $S --set mv.guidance_scale=5 --out benchmarks/results/mv22/toy-pair_terms_cfg5
    distill3d bench run --suite benchmarks/results/mv22/ontop_single.txt --methods anchords-mv --priors toy+toy-mv \
        --seeds 0,1,2 --workers 2 $S --set mv.guidance_scale=5 --out benchmarks/results/mv22/toy-pair_terms_cfg5
    python3 benchmarks/mv22.py > benchmarks/results/mv22/mv22.md

Rows: mvdream-sds on toy-mv − SDS on toy; ISD on toy-mv (g_MV from groups of 4 views denoised jointly) − ISD on
toy (g_MV one view at a time with its camera); mvdream-sds at CFG 15 on the re-shipped toy-mv − SDS on toy, and −
mvdream-sds at CFG 50 on the first toy-mv (the toy-mv grids ran before the prior was re-shipped); mvdream-sds at
CFG 5 − SDS on toy, and − mvdream-sds at CFG 15 (both on the re-shipped toy-mv).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill3d.bench.grid import read_results
from distill3d.bench.stats import bootstrap, paired

HERE = Path(__file__).parent / "results" / "mv22"
#: (column, shown as a percentage); "consistent" is the layout right in every view, "front_error" the share of
#: views whose eyes the judge sees where the truth does not show them or misses them where it does.
METRICS = {"face": (("front_error", True), ("janus_views", False), ("match", True), ("iou", False),
                    ("seconds", False)),
           "next to": (("consistent", True), ("layout", True), ("bleed", True), ("match", True), ("iou", False),
                       ("seconds", False)),
           "on top of": (("consistent", True), ("layout", True), ("bleed", True), ("match", True), ("iou", False)),
           "single": (("match", True), ("iou", False), ("color_error", False))}


@dataclass(frozen=True)
class Arm:
    """One method on one prior, read from the results.csv of some grids under benchmarks/results/mv22/."""

    label: str
    method: str
    prior: str
    grids: tuple[str, ...]


SDS = Arm("sds on toy", "sds", "toy", ("toy", "toy_ontop"))
MV = Arm("mvdream-sds on toy-mv", "mvdream-sds", "toy-mv", ("toy-mv", "toy-mv_ontop"))
#: mvdream-sds at CFG 15 (its embedded-prior default since issue 21's [dev] choice) on the re-shipped toy-mv (camera-
#: modulated text tokens): grids toy-mv2 and toy-mv2_ontop.
MV2 = Arm("mvdream-sds CFG 15 on toy-mv (camera tokens)", "mvdream-sds", "toy-mv", ("toy-mv2", "toy-mv2_ontop"))
#: mvdream-sds at CFG 5 (its embedded-prior default since issue 21's third round, chosen on the larger [dev]).
MV3 = Arm("mvdream-sds CFG 5 on toy-mv (camera tokens)", "mvdream-sds", "toy-mv", ("toy-mv3", "toy-mv3_ontop"))
#: AnchorDS / UDS with ModeDreamer's β-weighted multi-view term against themselves, both on toy-mv (issue 22).
TERMS = tuple((Arm(f"{m}-mv on toy-mv", f"{m}-mv", "toy-mv", (g,)), Arm(f"{m} on toy-mv", m, "toy-mv", (g,)))
              for m, g in (("anchords", "toy-mv_terms"), ("uds", "toy-mv_terms_uds")))
#: anchords-mv on every kind (on top of and single: grid toy-mv_terms_ontop) against SDS and mvdream-sds.
AMV = Arm("anchords-mv on toy-mv", "anchords-mv", "toy-mv", ("toy-mv_terms", "toy-mv_terms_ontop"))
#: anchords-mv on the toy pair (issue 21's fourth round) against SDS, mvdream-sds and itself on toy-mv alone.
AMV_PAIR = Arm("anchords-mv on toy+toy-mv", "anchords-mv", "toy+toy-mv", ("toy-pair_terms", "toy-pair_terms_ontop"))
#: The same with the term's CFG 5 (chosen on [dev]), "next to" and "on top of" only.
AMV_PAIR5 = Arm("anchords-mv term CFG 5 on toy+toy-mv", "anchords-mv", "toy+toy-mv", ("toy-pair_terms_cfg5",))
PAIRS = ((MV, SDS), (Arm("isd on toy-mv", "isd", "toy-mv", ("toy-mv",)), Arm("isd on toy", "isd", "toy", ("toy",))),
         (MV2, SDS), (MV2, MV), (MV3, SDS), (MV3, MV2), *TERMS, (AMV, SDS), (AMV, MV3), (AMV_PAIR, SDS),
         (AMV_PAIR, AMV), (AMV_PAIR, MV3), (AMV_PAIR5, SDS), (AMV_PAIR5, AMV_PAIR))


def _values(arm: Arm, kind: str, metric: str) -> dict[tuple, float]:
    rows = [r for g in arm.grids if (HERE / g / "results.csv").is_file() for r in read_results(HERE / g)]
    out = {}
    for r in rows:
        if r["method"] == arm.method and r["prior"] == arm.prior and r["kind"] == kind and r[metric] not in ("", None):
            v = r[metric]
            out[(r["prompt"], r["seed"])] = float(v == "True") if v in ("True", "False") else float(v)
    return out


def _fmt(interval, pct: bool) -> str:
    return "–" if interval is None else interval.format(pct)


def main() -> None:
    print(__doc__.split("\n\n")[1].strip() + "\n")
    for (a, b) in PAIRS:
        for kind, metrics in METRICS.items():
            if not _values(a, kind, "match") or not _values(b, kind, "match"):
                continue
            print(f"\n### {a.label} vs {b.label}, {kind}\n")
            print(f"| metric | {a.label} | {b.label} | difference (paired) | pairs |\n|---|---|---|---|---|")
            for m, pct in metrics:
                va, vb = _values(a, kind, m), _values(b, kind, m)
                d = paired(va, vb)
                ia, ib = bootstrap(list(va.values())), bootstrap(list(vb.values()))
                print(f"| {m} | {_fmt(ia, pct)} | {_fmt(ib, pct)} | {_fmt(d, pct)} | {d.n if d else 0} |")


if __name__ == "__main__":
    main()
