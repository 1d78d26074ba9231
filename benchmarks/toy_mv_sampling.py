"""[dev] sweep of the multi-view prior's sampling settings, on pair captions the prior was trained on (never the
held-out captions that ``toy report`` measures): the share of "next to" and "on top of" groups of 4 jointly drawn
views whose layout is right in every view, per CFG scale and DDIM steps.

    python3 benchmarks/toy_mv_sampling.py --cfg 3,5,8,12 --groups 24 --out benchmarks/results/toy_mv_sampling.json
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import torch

from distill3d.pipeline.priors import PriorSpec, load_prior
from distill3d.priors.toy.evaluate import group_rates, judged_groups
from distill3d.toyworld.grammar import all_specs, is_heldout
from distill3d.toyworld.judge import Judge


def dev_captions(per_relation: int) -> dict[str, list[str]]:
    """Trained-on pair captions in a stable pseudo-random order (a prefix is a fair sample)."""
    pairs = sorted((s for s in all_specs() if s.relation is not None and not is_heldout(s)),
                   key=lambda s: zlib.crc32(f"dev/{s.caption}".encode()))
    return {rel: [s.caption for s in pairs if s.relation == rel][:per_relation] for rel in ("next to", "on top of")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default="toy-mv")
    ap.add_argument("--cfg", default="3,5,8,12")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--groups", type=int, default=24, help="groups per relation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prior, judge = load_prior(PriorSpec(args.prior)), Judge.load()
    caps = dev_captions(args.groups)
    rows = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for cfg in (float(c) for c in args.cfg.split(",")):
        key = f"cfg {cfg:g}, steps {args.steps}"
        if key in rows:
            continue
        result = judged_groups(prior, judge, caps, args.groups, cfg, args.steps, seed=1000)
        rows[key] = {kind: group_rates([v for v, _ in r]) | {"n": len(r)} for kind, r in result.items()}
        print(key, json.dumps(rows[key]), flush=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
