"""PNG grids and videos read back with PIL and imageio."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from distill3d.export import video
from distill3d.export.images import image_grid, save_png, to_uint8


def _frames(t: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    """A red square sliding right over white: frame i has its square at column 4 * i."""
    f = np.full((t, h, w, 3), 255, dtype=np.uint8)
    for i in range(t):
        f[i, 8:24, 4 * i:4 * i + 16] = [255, 0, 0]
    return f


def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = to_uint8(x)
    assert out.shape == (1, 1, 5, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_grid_png_round_trip(tmp_path):
    frames = np.stack([np.full((4, 5, 3), 10 * i, dtype=np.uint8) for i in range(1, 9)])  # 8 views
    grid = image_grid(frames)  # 3 x 3 cells
    path = save_png(grid, tmp_path / "views.png")
    back = np.asarray(Image.open(path))
    assert back.shape == (12, 15, 3)
    assert back[0, 0, 0] == 10 and back[0, 5, 0] == 20 and back[4, 0, 0] == 40 and back[11, 5, 0] == 80
    assert (back[8:, 10:] == 255).all()  # the ninth cell is blank
    assert image_grid(frames, ncols=4).shape == (8, 20, 3)


@pytest.mark.skipif(not video.ffmpeg_available(), reason="no ffmpeg binary for imageio-ffmpeg")
def test_mp4_read_back(tmp_path):
    frames = _frames(h=31, w=48)  # odd height gets padded to even
    path = video.write_video(frames, tmp_path / "turntable.mp4", fps=12)
    assert path.suffix == ".mp4" and path.read_bytes()[4:8] == b"ftyp"
    back = np.stack(list(iio.imiter(path, plugin="FFMPEG")))
    assert back.shape == (6, 32, 48, 3)
    # lossy, but the red square must be where it was
    assert back[3, 16, 12 + 8, 0] > 200 and back[3, 16, 12 + 8, 1] < 60
    assert back[3, 16, 2, 1] > 200


def test_gif_fallback_without_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "ffmpeg_available", lambda: False)
    path = video.write_video(_frames(), tmp_path / "turntable.mp4", fps=10)
    assert path == tmp_path / "turntable.gif" and not (tmp_path / "turntable.mp4").exists()
    with Image.open(path) as im:
        assert im.n_frames == 6 and im.size == (48, 32)
        im.seek(2)
        assert im.convert("RGB").getpixel((8 + 8, 16)) == (255, 0, 0)
        assert im.info["duration"] == 100
