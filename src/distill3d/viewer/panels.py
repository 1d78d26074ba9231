"""What the viewer shows beside the asset: a run directory's prompt, method, time, judge scores per view,
and its ``views.png`` and ``curves.png``; for a lone file, only what it is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from distill3d.pipeline.generate import RUN_FILE


@dataclass(frozen=True)
class Panels:
    title: str
    markdown: str  # the run's facts and the judge's table
    images: list[tuple[str, np.ndarray]]  # (label, [H, W, 3] uint8), e.g. views.png, curves.png


def _judge_table(judge: dict) -> str:
    rows = ["| azimuth | verdict | the judge sees |", "|---|---|---|"]
    for v in judge["views"]:
        verdict = "match" if v["all_ok"] else "**no match**"
        if judge["kind"] == "face" and v["front_seen"]:
            verdict += ", eyes" + ("" if v["front_truth"] else " (Janus)")
        rows.append(f"| {v['azimuth']:g}° | {verdict} | {v['seen']} |")
    return "\n".join(rows)


def run_panels(path: Path) -> Panels:
    """The panels for ``path``: a run directory (with or without its ``run.json`` yet) or a file."""
    if not path.is_dir():
        return Panels(path.name, f"`{path}`", [])
    lines, run_file = [f"`{path}`"], path / RUN_FILE
    if run_file.is_file():
        run = json.loads(run_file.read_text())
        facts = (f"{run['method']}, {run['steps']} steps, seed {run['seed']}, prior {run['prior']}, "
                 f"{run['seconds']['total_this_session']:.1f} s")
        lines += [f"**{run['prompt']}**", "", facts]
        if run.get("judge"):
            lines += ["", f"judge: **{run['judge']['match_rate']:.0%}** of views match", "",
                      _judge_table(run["judge"])]
    images = [(name, np.asarray(Image.open(path / name).convert("RGB")))
              for name in ("views.png", "curves.png") if (path / name).is_file()]
    return Panels(path.name, "\n".join(lines), images)


__all__ = ["Panels", "run_panels"]
