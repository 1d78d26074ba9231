"""The viewer in a real browser: headless Chromium opens ``distill3d view`` of another producer's 3DGS .ply
and must show the object's colours where the conventions put them (front camera on +x, +z up)."""

import math

import numpy as np
import pytest
import torch

from distill3d.scene.gaussians import GaussianModel, rgb_to_sh_dc

from .helpers import blob, find_chromium, watch_page, write_graphdeco_ply

WIDTH, HEIGHT = 1200, 900  # the object lies clear of viser's panel (top right) and notices (top left)


def _mask(image: np.ndarray, rgb: str) -> np.ndarray:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return {"red": (r > 150) & (g < 90) & (b < 90), "green": (g > 120) & (r < 90) & (b < 90),
            "blue": (b > 150) & (r < 90) & (g < 120)}[rgb]


@pytest.fixture
def chromium() -> str:
    pytest.importorskip("viser", reason="viser is not installed (pip install -e '.[view]')")
    path = find_chromium()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser test cannot run")
    return path


def test_viewer_shows_the_object_in_headless_chromium(tmp_path, chromium):
    pytest.importorskip("plyfile", reason="plyfile (a dev dependency) writes the other producer's .ply")
    from distill3d.viewer.app import open_asset

    rng = np.random.default_rng(0)
    red_cube = blob((0.0, 0.0, 0.0), 0.3, 600, rng)  # at the origin
    green = blob((0.0, 0.6, 0.0), 0.1, 120, rng)  # on +y: to the right, seen from the front (+x)
    blue = blob((0.0, 0.0, 0.7), 0.1, 120, rng)  # on +z: above
    colours = np.concatenate([np.tile([0.9, 0.05, 0.05], (600, 1)), np.tile([0.05, 0.8, 0.05], (120, 1)),
                              np.tile([0.05, 0.05, 0.9], (120, 1))])
    ply = write_graphdeco_ply(tmp_path / "point_cloud.ply", np.concatenate([red_cube, green, blue]), colours)
    viewer = open_asset(ply, "127.0.0.1", 0)
    try:
        assert viewer.url.startswith("http://127.0.0.1:") and viewer.port > 0
        image = watch_page(chromium, viewer.url, tmp_path / "shot.png", WIDTH, HEIGHT,
                           lambda im: all(_mask(im, c).sum() > 200 for c in ("red", "green", "blue")))
    finally:
        viewer.stop()
    masks = {c: _mask(image, c) for c in ("red", "green", "blue")}
    counts = {c: int(m.sum()) for c, m in masks.items()}
    assert all(n > 200 for n in counts.values()), f"colours not drawn: {counts} (screenshot {tmp_path / 'shot.png'})"
    (ry, rx), (gy, gx), (by, bx) = (np.argwhere(masks[c]).mean(0) for c in ("red", "green", "blue"))
    assert abs(rx - WIDTH / 2) < 0.1 * WIDTH and abs(ry - HEIGHT / 2) < 0.15 * HEIGHT  # the object at the centre
    assert gx > rx + 0.1 * WIDTH and abs(gy - ry) < 0.1 * HEIGHT  # +y to the right: the camera is on +x (the front)
    assert by < ry - 0.1 * HEIGHT and abs(bx - rx) < 0.05 * WIDTH  # +z up


def _centre(image: np.ndarray) -> np.ndarray:
    return image[HEIGHT // 4: 3 * HEIGHT // 4, WIDTH // 4: 3 * WIDTH // 4]


def _cube(rgb: tuple[float, float, float], n: int = 400) -> GaussianModel:
    means = (torch.rand(n, 3, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.6
    return GaussianModel(means, torch.full((n, 3), math.log(0.05)), torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
                         torch.full((n,), 3.0), rgb_to_sh_dc(torch.tensor([rgb]).repeat(n, 1)))


def test_live_updates_reach_the_browser(tmp_path, chromium):
    """generate --view's callback: after a red asset is redrawn green, a page opened then shows green only."""
    from distill3d.viewer.live import LiveView
    from distill3d.viewer.server import Viewer

    viewer = Viewer("127.0.0.1", 0)
    try:
        live = LiveView(viewer, steps=30)
        for step in (10, 20):
            live(step, _cube((0.9, 0.05, 0.05)))
        live(30, _cube((0.05, 0.8, 0.05)))
        image = watch_page(chromium, viewer.url, tmp_path / "live.png", WIDTH, HEIGHT,
                           lambda im: _mask(_centre(im), "green").sum() > 200)
    finally:
        viewer.stop()
    centre = _centre(image)
    green, red = int(_mask(centre, "green").sum()), int(_mask(centre, "red").sum())
    assert green > 200 and red < 0.01 * green, f"green {green}, red {red} (screenshot {tmp_path / 'live.png'})"
