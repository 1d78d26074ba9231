"""Does the prior know the order of two objects from every side? DDIM samples of two-object captions from
the embedded prior at fixed cameras (azimuths 0, 90, 180, 270 at 20° elevation), each judged by
toyworld.layout against the truth from the same camera (the sample's silhouette: pixels not near white).
If the prior shows the front's order from the back, score distillation inherits a two-object Janus.
With ``--joint`` (a multi-view prior) the four cameras are one group drawn jointly, as mvdream-sds asks for them.

    python benchmarks/prior_layout_by_azimuth.py --prior toy --n 4 --out benchmarks/results/prior_layout_toy.json
    python benchmarks/prior_layout_by_azimuth.py --prior toy-mv --joint --n 4 --out ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from distill3d.bench.suite import load_suite
from distill3d.core.cameras import Cameras
from distill3d.pipeline.priors import PriorSpec, load_prior
from distill3d.priors.sampling import sample
from distill3d.toyworld.grammar import parse_caption
from distill3d.toyworld.layout import judge_layout, sample_alpha
from distill3d.toyworld.render import render

AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
ELEVATION = 20.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prior", default="toy")
    ap.add_argument("--model", default=None, help="A toy checkpoint (default: the shipped one of --prior).")
    ap.add_argument("--n", type=int, default=4, help="Samples per caption and azimuth.")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--joint", action="store_true", help="Draw the four azimuths as one group (multi-view prior).")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    prior = load_prior(PriorSpec(kind=a.prior, model=a.model))
    captions = [p for p in load_suite("toy-claims").prompts(a.split) if parse_caption(p).relation]
    size = prior.image_size
    rows = []
    for cap in captions:
        spec = parse_caption(cap)
        if a.joint:  # n groups of the four views: [n·4] group after group -> per azimuth [n]
            groups = sample(prior, cap, n=a.n, cfg=a.cfg, steps=25, seed=0, camera=(AZIMUTHS[0], ELEVATION),
                            views=len(AZIMUTHS)).cpu()
        for k, az in enumerate(AZIMUTHS):
            imgs = (groups[k::len(AZIMUTHS)] if a.joint
                    else sample(prior, cap, n=a.n, cfg=a.cfg, steps=25, seed=0, camera=(az, ELEVATION)).cpu())
            alpha = sample_alpha(imgs)
            truth = render(spec, Cameras.from_angles([az] * a.n, ELEVATION), size)
            views = judge_layout(spec, imgs, alpha, truth.material)
            rows.append({"caption": cap, "kind": spec.kind, "azimuth": az,
                         "layout_ok": sum(v.layout_ok for v in views) / a.n, "order": views[0].order,
                         "bleed": sum(v.bleed for v in views) / a.n})
            print(cap, az, rows[-1]["layout_ok"], rows[-1]["order"], flush=True)
    summary = {}
    for kind in ("next to", "on top of"):
        for az in AZIMUTHS:
            sel = [r["layout_ok"] for r in rows if r["kind"] == kind and r["azimuth"] == az]
            if sel:
                summary[f"{kind} @ {az:g}"] = sum(sel) / len(sel)
    a.out.write_text(json.dumps({"command": "python " + " ".join(__import__("sys").argv), "summary": summary,
                                 "rows": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
