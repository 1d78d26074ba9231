"""What a run leaves for people: captioned views.png, curves.png, the printed summary."""

import json

import numpy as np
from PIL import Image

from distill3d.pipeline.config import resolve_run_config
from distill3d.pipeline.generate import generate
from distill3d.pipeline.report import (
    GREEN,
    RED,
    history_series,
    run_summary,
    save_curves_png,
    save_views_png,
    view_captions,
)

AZIMUTHS = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]


def _judge(kind="single", ok=(True, False) * 4, front=(False,) * 8, truth=(False,) * 8):
    views = [{"azimuth": az, "seen": "a red cube", "all_ok": o, "objects_ok": o, "relation_ok": True,
              "front_seen": f, "front_truth": t, "image_mse": 0.01} for az, o, f, t in zip(AZIMUTHS, ok, front, truth)]
    return {"caption": "a red cube", "kind": kind, "views": views, "match_rate": sum(ok) / 8,
            "front_seen_azimuths": [az for az, f in zip(AZIMUTHS, front) if f], "janus_views": 0, "image_mse": 0.01}


def test_captions_name_azimuth_view_and_verdict():
    caps = view_captions(AZIMUTHS, 20.0, _judge())
    assert [c.lines[0][0] for c in caps[:3]] == ["0° front", "45° side", "90° side"]
    assert caps[4].lines[0][0] == "180° back"
    assert caps[0].lines[1] == ("match", GREEN) and caps[1].lines[1] == ("no match", RED)
    assert caps[0].lines[2][0] == "sees a red cube"
    face = view_captions(AZIMUTHS, 20.0, _judge("face", ok=(True,) * 8, front=(True, True) + (False,) * 6,
                                                truth=(True,) + (False,) * 7))
    assert face[0].lines[1][0] == "match, eyes" and face[1].lines[1][0] == "match, eyes (Janus)"
    assert [len(c.lines) for c in view_captions(AZIMUTHS, 20.0, None)] == [1] * 8  # no judge: azimuths only


def test_two_object_captions_say_whether_the_layout_is_right_from_that_side():
    j = _judge("next to", ok=(True,) * 8)
    for v, ok, bleed in zip(j["views"], (True, False, False) + (True,) * 5, (0.0, 0.1, 0.6) + (0.0,) * 5):
        v |= {"layout_ok": ok, "layout_order": "left/right", "bleed": bleed}
    caps = view_captions(AZIMUTHS, 20.0, j)
    assert caps[0].lines[2] == ("layout right", GREEN)
    assert caps[1].lines[2] == ("layout wrong (left/right)", RED)
    assert caps[2].lines[2] == ("colours bled 60%", RED)
    assert all(len(c.lines) == 3 for c in view_captions(AZIMUTHS, 20.0, _judge()))  # one object: no layout line


def test_views_png_is_a_grid_of_captioned_tiles(tmp_path):
    frames = np.full((8, 64, 64, 3), 255, np.uint8)
    frames[:, 16:48, 16:48] = (200, 30, 30)
    image = np.asarray(Image.open(save_views_png(frames, AZIMUTHS, 20.0, _judge(), tmp_path / "views.png")))
    assert image.shape[1] == 3 * 64 and image.shape[0] % 3 == 0 and image.shape[0] // 3 > 64  # a band per tile
    band = image[64:image.shape[0] // 3]  # under the first tile (match) and the second (no match)
    green = (band[..., 1] > 100) & (band[..., 0] < 60)
    red = (band[..., 0] > 150) & (band[..., 1] < 60)
    assert green[:, :64].any() and not green[:, 64:128].any()
    assert red[:, 64:128].any() and not red[:, :64].any()


def test_curves_plot_every_logged_quantity(tmp_path):
    history = [{"step": s, "loss": 1.0 / s, "grad_norm": 2.0, "t": 500.0 - s, "l_rec": 0.1} for s in (1, 10, 20)]
    series = history_series(history)
    assert [s.title for s in series] == ["loss (surrogate)", "gradient norm |g|", "timestep t", "L_rec"]
    assert series[0].x == [1, 10, 20] and series[2].y == [499.0, 490.0, 480.0]
    assert [s.title for s in history_series([{"step": 1, "loss": 1.0, "grad_norm": 1.0, "t": 3.0}])][-1] == "timestep t"
    image = Image.open(save_curves_png(history, tmp_path / "curves.png"))
    assert image.size[0] > 400 and image.size[1] > 200


def test_a_run_leaves_curves_captioned_views_and_a_summary(tmp_path, tiny_prior):
    cfg, rest = resolve_run_config("sds", {"steps": "3", "views_per_step": "1", "num_gaussians": "200",
                                           "checkpoint_every": "0", "preview_every": "1", "export_size": "32",
                                           "turntable_frames": "2", "mesh_resolution": "16"})
    previews = []
    result = generate("a red cube", cfg, rest, tmp_path / "r", prior=tiny_prior, progress=False,
                      on_preview=lambda step, rep: previews.append((step, len(rep.means))))
    assert previews == [(1, 200), (2, 200), (3, 200)]  # the live callback sees the asset at each preview
    run = json.loads((result.out_dir / "run.json").read_text())
    assert run["files"]["curves"] == "curves.png" and (result.out_dir / "curves.png").is_file()
    views = Image.open(result.out_dir / "views.png")
    assert views.size[0] == 3 * 32 and views.size[1] > 3 * 32  # tiles of 32 px with caption bands
    text = run_summary(result.out_dir, run)
    assert "'a red cube' by sds, 3 steps in" in text
    assert f"judge: {sum(v['all_ok'] for v in run['judge']['views'])} of 8 views match" in text
    for name in ("gaussians.ply", "views.png", "curves.png", "mesh.glb", "run.json"):
        assert name in text
    assert f"distill3d view {result.out_dir}" in text
    assert len(text.splitlines()) <= 24  # one screen
