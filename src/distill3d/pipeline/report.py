"""What a run leaves for people to look at: ``views.png`` captioned with each view's azimuth and the
judge's verdict, ``curves.png`` (the logged history over steps) and the summary ``generate`` prints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from distill3d.core.cameras import view_direction
from distill3d.export.figures import Caption, Series, caption_tiles, plot_series
from distill3d.export.images import image_grid, save_png
from distill3d.scene.registry import REPRESENTATIONS
from distill3d.toyworld.layout import MAX_BLEED

GREY, GREEN, RED = (60, 60, 60), (0, 130, 0), (200, 0, 0)

#: Titles of the history's keys; any other numeric key (e.g. an L_rec the loop logs) is plotted under its name.
CURVE_TITLES = {"loss": "loss (surrogate)", "grad_norm": "gradient norm |g|", "t": "timestep t", "l_rec": "L_rec",
                "change": "render change between checks (early stop)", "keep_rate": "views kept by the filter"}


def view_captions(azimuths: list[float], elevation: float, judge: dict | None) -> list[Caption]:
    """Per view: its azimuth and name, then (toy prior) the judge's verdict and what it saw."""
    verdicts = {float(v["azimuth"]): v for v in judge["views"]} if judge else {}
    captions = []
    for az in azimuths:
        lines = [(f"{az:g}° {view_direction(az, elevation)}", GREY)]
        v = verdicts.get(float(az))
        if v is not None:
            verdict = "match" if v["all_ok"] else "no match"
            if judge["kind"] == "face" and v["front_seen"]:
                verdict += ", eyes" + ("" if v["front_truth"] else " (Janus)")
            lines += [(verdict, GREEN if v["all_ok"] else RED)]
            if v.get("layout_ok") is not None:  # two objects: where each is, from this side (toyworld.layout)
                lines.append(_layout_line(v))
            lines.append((f"sees {v['seen']}", GREY))
        captions.append(Caption(lines))
    return captions


def _layout_line(v: dict) -> tuple[str, tuple[int, int, int]]:
    """The layout verdict of one view: right, or what is wrong (the order the truth shows, bled colours)."""
    if v["layout_ok"]:
        return "layout right", GREEN
    if v["bleed"] > MAX_BLEED:
        return f"colours bled {v['bleed']:.0%}", RED
    return f"layout wrong ({v['layout_order']})", RED


def save_views_png(frames: np.ndarray, azimuths: list[float], elevation: float, judge: dict | None,
                   path: str | os.PathLike[str]) -> Path:
    """The view grid with captions: frames [B, H, W, 3] uint8 rendered at ``azimuths``."""
    return save_png(image_grid(caption_tiles(frames, view_captions(azimuths, elevation, judge))), path)


def history_series(history: list[dict[str, float]]) -> list[Series]:
    """One series per logged quantity (loss, gradient norm, t, then any other), over steps."""
    keys = [k for k in CURVE_TITLES if any(k in h for h in history)]
    keys += sorted({k for h in history for k in h} - set(keys) - {"step"})
    out = []
    for key in keys:
        rows = [h for h in history if isinstance(h.get(key), (int, float))]
        out.append(Series(CURVE_TITLES.get(key, key), [h["step"] for h in rows], [float(h[key]) for h in rows]))
    return out


def save_curves_png(history: list[dict[str, float]], path: str | os.PathLike[str]) -> Path:
    """``curves.png``: the run's history (logged every few steps by the loop) as line plots."""
    return plot_series(history_series(history), path)


_FILE_NOTES = {"views": "views labelled with the judge's verdict", "curves": "loss, gradient norm, t over steps",
               "glb": "mesh (glTF)", "obj": "mesh (OBJ)", "turntable": "a turn around the asset"}


def run_summary(out_dir: Path, run: dict) -> str:
    """A one-screen summary of a finished run (its ``run.json`` as ``run``): time, judged match, files."""
    secs = run["seconds"]
    ran = run.get("steps_run", run["steps"])
    steps = (f"{ran} steps (converged; at most {run['steps']})" if run.get("converged_at") is not None
             else f"{ran} steps")
    head = (f"done: {run['prompt']!r} by {run['method']}, {steps} in {secs['total_this_session']:.1f} s "
            f"(optimisation {secs['optimisation']:.1f} s, exports and judge {secs['export_and_judge']:.1f} s)")
    lines = [head]
    judge = run.get("judge")
    if judge:
        views = judge["views"]
        ok = sum(v["all_ok"] for v in views)
        marks = " ".join(f"{v['azimuth']:g}°{'+' if v['all_ok'] else '-'}" for v in views)
        lines.append(f"judge: {ok} of {len(views)} views match ({judge['match_rate']:.0%}): {marks}")
        if judge["kind"] == "face":
            seen = ", ".join(f"{a:g}°" for a in judge["front_seen_azimuths"]) or "none"
            lines.append(f"       eyes seen at {seen}; {judge['janus_views']} views show eyes the truth hides")
        if judge.get("consistent") is not None:
            marks = " ".join(f"{v['azimuth']:g}°{'+' if v['layout_ok'] else '-'}" for v in views)
            verdict = "right from every side" if judge["consistent"] else "not right from every side"
            lines.append(f"layout: {verdict}, {judge['layout_rate']:.0%} of views ({marks}); "
                         f"colours bled {judge['bleed']:.0%} on average")
    lines.append(f"files in {out_dir}/:")
    files = run["files"]
    notes = {k: f"the asset ({k}); open it with: distill3d view {out_dir}" for k in files if k in REPRESENTATIONS}
    notes |= {k: note for k, note in _FILE_NOTES.items() if k in files}
    notes |= {k: "" for k in files if k not in notes}  # the asset first, then the known files, then the rest
    width = max(len(name) for name in files.values())
    for key, note in notes.items():
        lines.append(f"  {files[key]:<{width}}  {note}".rstrip())
    lines.append(f"  {'run.json':<{width}}  timings, judge scores, history")
    return "\n".join(lines)


__all__ = ["history_series", "run_summary", "save_curves_png", "save_views_png", "view_captions"]
