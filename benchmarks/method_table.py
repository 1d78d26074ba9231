"""One row per method from ``bench run`` / ``bench tune`` result files: judged match (mean and 95% bootstrap
interval over the runs), median seconds per run, prior calls and prior evaluations per optimisation step.

    python benchmarks/method_table.py RESULTS.csv [RESULTS.csv ...] [--preset default,tune-0] [--out FILE.md]

``steps`` in a row is the run's step budget; a run that stopped early (converged) made fewer steps, so the
per-step figures divide by the steps actually run (prior calls / calls per step is not known from the CSV
alone for a method whose calls vary, hence both columns)."""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from distill3d.bench.stats import bootstrap


def table(paths: list[str], presets: set[str]) -> str:
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            rows += [r for r in csv.DictReader(f) if r["preset"] in presets and not r.get("note")]
    lines = ["| method | runs | judged match [95% CI] | IoU | s / run (median) | prior calls / step | rows / step |",
             "|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        match = [float(r["match"]) for r in mine]
        ci = bootstrap(match)
        steps = [_steps_run(r) for r in mine]
        calls = statistics.median(float(r["prior_calls"]) / s for r, s in zip(mine, steps))
        evals = statistics.median(float(r["prior_evals"]) / s for r, s in zip(mine, steps))
        iou = statistics.fmean(float(r["iou"]) for r in mine)
        secs = statistics.median(float(r["seconds_total"]) for r in mine)
        lines.append(f"| {method} | {len(mine)} | {ci.format(pct=True) if ci else '-'} | {iou:.2f} | "
                     f"{secs:.0f} | {calls:.1f} | {evals:.0f} |")
    return "\n".join(lines) + "\n"


def _steps_run(row: dict) -> float:
    """Steps the run made: the last step of its gradient-norm series (``step:value;...``), else its budget."""
    series = row.get("grad_norm_series") or ""
    last = series.rsplit(";", 1)[-1].split(":", 1)[0] if series else ""
    return float(last) if last else float(row["steps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--preset", default="default,tune-0", help="preset labels that are a method's defaults")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = table(args.results, set(args.preset.split(",")))
    if args.out:
        Path(args.out).write_text(out)
    print(out, end="")


if __name__ == "__main__":
    main()
