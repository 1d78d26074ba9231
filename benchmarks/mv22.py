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
    python3 benchmarks/mv22.py > benchmarks/results/mv22/mv22.md

Rows: mvdream-sds on toy-mv − SDS on toy; ISD on toy-mv (g_MV from groups of 4 views denoised jointly) − ISD on
toy (g_MV one view at a time with its camera).
"""

from __future__ import annotations

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
PAIRS = ((("mvdream-sds", "toy-mv"), ("sds", "toy")), (("isd", "toy-mv"), ("isd", "toy")))


def _values(rows: list[dict], method: str, prior: str, kind: str, metric: str) -> dict[tuple, float]:
    out = {}
    for r in rows:
        if r["method"] == method and r["prior"] == prior and r["kind"] == kind and r[metric] not in ("", None):
            v = r[metric]
            out[(r["prompt"], r["seed"])] = float(v == "True") if v in ("True", "False") else float(v)
    return out


def _fmt(interval, pct: bool) -> str:
    return "–" if interval is None else interval.format(pct)


def main() -> None:
    rows = [r for sub in ("toy", "toy-mv", "toy_ontop", "toy-mv_ontop") if (HERE / sub / "results.csv").is_file()
            for r in read_results(HERE / sub)]
    print(__doc__.split("\n\n")[1].strip() + "\n")
    for (a, b) in PAIRS:
        for kind, metrics in METRICS.items():
            if not _values(rows, *a, kind, "match"):
                continue
            print(f"\n### {a[0]} on {a[1]} vs {b[0]} on {b[1]}, {kind}\n")
            print(f"| metric | {a[0]} ({a[1]}) | {b[0]} ({b[1]}) | difference (paired) | pairs |\n|---|---|---|---|---|")
            for m, pct in metrics:
                va, vb = _values(rows, *a, kind, m), _values(rows, *b, kind, m)
                d = paired(va, vb)
                ia, ib = bootstrap(list(va.values())), bootstrap(list(vb.values()))
                print(f"| {m} | {_fmt(ia, pct)} | {_fmt(ib, pct)} | {_fmt(d, pct)} | {d.n if d else 0} |")


if __name__ == "__main__":
    main()
