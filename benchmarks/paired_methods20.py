"""Paired differences of issue 20's two measurements, 95% percentile bootstrap (distill3d.bench.stats: 2000
resamples, seed 0), from the committed result files alone:

    python3 benchmarks/paired_methods20.py uds   # paper − reversed per (prompt, seed), uds/results.csv
    python3 benchmarks/paired_methods20.py pds   # code − paper per (pair, seed), pds/{code,paper}/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from distill3d.bench.grid import read_results
from distill3d.bench.stats import bootstrap, paired
from distill3d.bench.suite import load_suite

HERE = Path(__file__).parent / "results" / "methods20"


def table(a: dict, b: dict, metrics: tuple[tuple[str, bool], ...], names: tuple[str, str]) -> None:
    print(f"| metric | {names[0]} | {names[1]} | {names[0]} − {names[1]} (paired) | pairs |\n|---|---|---|---|---|")
    for m, pct in metrics:
        d = paired(a[m], b[m])
        print(f"| {m} | {bootstrap(list(a[m].values())).format(pct)} | {bootstrap(list(b[m].values())).format(pct)} "
              f"| {d.format(pct)} | {d.n} |")


def uds() -> None:
    rows = read_results(HERE / "uds")
    suites = {"toy-core + toy-hard": None, **{s: set(load_suite(s).prompts("dev")) for s in ("toy-core", "toy-hard")}}
    metrics = (("match", True), ("iou", False), ("color_error", False))
    for name, prompts in suites.items():
        mine = [r for r in rows if prompts is None or r["prompt"] in prompts]
        side = {p: {m: {(r["prompt"], r["seed"]): float(r[m]) for r in mine if r["preset"] == p} for m, _ in metrics}
                for p in ("default", "tuned")}
        print(f"\n{name} dev prompts ({len(mine) // 2} pairs); paper = preset 'default', reversed = 'tuned'\n")
        table(side["default"], side["tuned"], metrics, ("paper", "reversed"))


def pds() -> None:
    metrics = (("changed", True), ("kept", True), ("outside_mse", False), ("inside_mse", False), ("seconds", False))
    side = {}
    for form in ("code", "paper"):
        runs = json.loads((HERE / "pds" / form / "results.json").read_text())["runs"]
        side[form] = {m: {(r["source"], r["target"], r["seed"]): r[m] for r in runs} for m, _ in metrics}
    table(side["code"], side["paper"], metrics, ("code", "paper"))


if __name__ == "__main__":
    {"uds": uds, "pds": pds}[sys.argv[1]]()
