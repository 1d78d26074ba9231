"""Wall time and profile of the default ``distill3d generate`` on the embedded prior, method against SDS.

    python benchmarks/profile_generate.py [--methods sds,anchords] [--prompt "a red cube"] [--repeats 3]
        [--threads 2] [--after-threads 1,2] [--before SRC] [--out benchmarks/results/generate_speed]

Each repeat runs every (variant, method) once as a fresh ``python -m distill3d generate`` process, in
interleaved order, so that load on the shared machine falls on all of them alike; the table gives medians
over repeats of the whole command's wall time (start-up and prior loading included) and of the split that
``run.json`` records (render, prior, backward, other, each export, the judge), the steps run, and the
judged match. ``--after-threads 1,2`` also runs the current code at each of those torch thread counts
(variants "after@1", "after@2"). ``--before SRC`` adds the variant "before": the same commands with ``PYTHONPATH=SRC`` (a
``src/`` folder of an earlier checkout, e.g. ``git worktree add /tmp/before <commit>``), so before and
after are measured in one run. Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("render", "prior", "backward", "other")


def run_once(src: str | None, method: str, prompt: str, threads: int, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if src is not None:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "distill3d", "generate", prompt, "--method", method, "--out", str(out),
           "--set", f"threads={threads}", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    run = json.loads((out / "run.json").read_text())
    secs = run["seconds"]
    row = {"wall": wall, "optimisation": secs["optimisation"], **{p: secs[p] for p in PARTS},
           "exports_and_judge": secs["export_and_judge"], "steps_run": run.get("steps_run", run["steps"]),
           "match": run["judge"]["match_rate"] if run.get("judge") else None}
    for key, value in secs.get("exports", {}).items():
        row[f"export:{key}"] = value
    row["startup"] = wall - secs["total_this_session"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="sds,anchords")
    ap.add_argument("--prompt", default="a red cube")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--after-threads", default=None, help="extra thread counts for the current code, e.g. 1,2")
    ap.add_argument("--before", default=None, help="src/ folder of an earlier checkout to compare with")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="--set for every 'after' run")
    ap.add_argument("--out", default="benchmarks/results/generate_speed")
    args = ap.parse_args()
    methods = args.methods.split(",")
    variants = ([("before", args.before, args.threads)] if args.before else []) + [("after", None, args.threads)]
    if args.after_threads:
        variants += [(f"after@{n}", None, int(n)) for n in args.after_threads.split(",") if int(n) != args.threads]
    rows: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, src, threads in variants:
                for method in methods:
                    extra = [] if name == "before" else [a for o in args.overrides for a in ("--set", o)]
                    out = Path(tmp) / f"{name}_{method}_{r}"
                    row = run_once(src, method, args.prompt, threads, out, extra)
                    rows.setdefault((name, method), []).append(row)
                    print(f"repeat {r} {name:6s} {method:10s} wall {row['wall']:.1f} s, steps {row['steps_run']}, "
                          f"match {row['match']}", flush=True)
    keys = sorted({k for v in rows.values() for row in v for k in row})
    table = {f"{n}/{m}": {k: statistics.median(row[k] for row in v if row.get(k) is not None)
                          for k in keys if any(row.get(k) is not None for row in v)} for (n, m), v in rows.items()}
    for name, _, _ in variants:
        sds = table.get(f"{name}/sds")
        for method in methods:
            if sds is not None:
                table[f"{name}/{method}"]["wall_ratio_to_sds"] = table[f"{name}/{method}"]["wall"] / sds["wall"]
    load = os.getloadavg()[0]
    result = {"prompt": args.prompt, "threads": args.threads, "repeats": args.repeats, "load_average_1min": load,
              "cpu_count": os.cpu_count(), "overrides": args.overrides, "medians": table,
              "runs": {f"{n}/{m}": v for (n, m), v in rows.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    cols = ["wall", "wall_ratio_to_sds", "startup", "optimisation", *PARTS, "exports_and_judge",
            *sorted(k for k in keys if k.startswith("export:")), "steps_run", "match"]
    lines = [(f"Medians of {args.repeats} interleaved runs, `{args.prompt}`, {args.threads} threads, "
              f"load average at the end {load:.1f}; seconds unless noted."), "",
             "| variant/method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key, med in table.items():
        lines.append(f"| {key} | " + " | ".join(
            "" if med.get(c) is None else (f"{med[c]:.2f}" if isinstance(med[c], float) else str(med[c]))
            for c in cols) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
