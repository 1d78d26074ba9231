"""The lever study's table: for each lever's results.csv under <root>/<name>/, per kind the mean (95% bootstrap
interval) of layout right per view, right from every side, IoU, colour bleeding and judged match, and the paired difference
against the base setting (same prompt and seed). Writes <root>/levers.md.

    python benchmarks/levers_table.py [--root benchmarks/results/levers]   # SDS on toy (benchmarks/levers.sh)
    python benchmarks/levers_table.py --root benchmarks/results/mv_levers --base cfg15 \
        --title "mvdream-sds on toy-mv" --made "bash benchmarks/mv_levers.sh"
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from distill3d.bench.stats import bootstrap, paired

METRICS = (("layout", "layout right (views)", True), ("consistent", "right from every side", True),
           ("iou", "IoU", False), ("bleed", "colour bleed", True), ("match", "judged match (views)", True))
#: The metrics shown also as a paired difference against the base setting.
DELTAS = (("layout", True), ("consistent", True), ("iou", False), ("match", True))


def cell(iv, pct: bool) -> str:
    if iv is None:
        return "–"
    f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.2f}")
    return f"{f(iv.mean)} [{f(iv.low)}, {f(iv.high)}]" if iv.n > 1 else f(iv.mean)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path(__file__).parent / "results" / "levers")
    ap.add_argument("--base", default="base", help="The setting every other is paired against.")
    ap.add_argument("--title", default="SDS")
    ap.add_argument("--made", default="bash benchmarks/levers.sh")
    a = ap.parse_args()
    base = a.base
    tables = {}
    for d in sorted(p for p in a.root.iterdir() if (p / "results.csv").is_file()):
        with (d / "results.csv").open() as f:
            tables[d.name] = list(csv.DictReader(f))
    names = [base] + [n for n in tables if n != base]
    lines = [f"# Lever study (issue 21): toy-claims [dev] pairs, {a.title}, seeds 0,1", "",
             (f"Made by `{a.made}` then `python benchmarks/levers_table.py"
              + ("" if a.root == ap.get_default("root") else f" --root {a.root} --base {base}") + "`. "
              f"Δ: paired against {base} (same prompt and seed), 95% bootstrap interval."), ""]
    singles = {n: tables.pop(n) for n in list(tables) if n.startswith("singles_")}
    names = [n for n in names if n in tables]
    for kind in ("next to", "on top of"):
        lines += [f"## {kind}", "", "| lever | runs | " + " | ".join(t for _, t, _ in METRICS)
                  + " | Δ layout | Δ every side | Δ IoU | Δ match |",
                  "|---|---|" + "---|" * (len(METRICS) + len(DELTAS))]
        for n in names:
            if n not in tables:
                continue
            rows = [r for r in tables[n] if r["kind"] == kind]
            vals = {m: [float(r[m]) for r in rows if r[m] != ""] for m, _, _ in METRICS}
            def key(rs: list[dict], m: str, kind: str = kind) -> dict:
                return {(r["prompt"], r["seed"]): float(r[m]) for r in rs if r["kind"] == kind and r[m] != ""}
            deltas = ["–"] * len(DELTAS) if n == base or base not in tables else [
                cell(paired(key(tables[n], m), key(tables[base], m)), pct) for m, pct in DELTAS]
            lines.append(f"| {n} | {len(rows)} | " + " | ".join(cell(bootstrap(vals[m]), p) for m, _, p in METRICS)
                         + " | " + " | ".join(deltas) + " |")
        lines.append("")
    if singles:  # single objects (benchmarks/results/levers/dev_singles.txt): does a lever cost them anything?
        lines += ["## single objects (toy-claims [dev] singles)", "", "| setting | runs | judged match | IoU | colour error |",
                  "|---|---|---|---|---|"]
        for n, rows in singles.items():
            lines.append(f"| {n.removeprefix('singles_')} | {len(rows)} | "
                         + " | ".join(cell(bootstrap([float(r[m]) for r in rows]), m == "match")
                                      for m in ("match", "iou", "color_error")) + " |")
        lines.append("")
    (a.root / "levers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
