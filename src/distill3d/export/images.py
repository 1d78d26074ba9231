"""Images as PNG files and multi-view grids (PIL)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from distill3d.core.io import atomic_path


def to_uint8(images: Tensor) -> np.ndarray:
    """[B, 3, H, W] floats in [0, 1] -> [B, H, W, 3] uint8 (rounded, clamped)."""
    x = images.detach().float().clamp(0.0, 1.0).mul(255.0).round().byte()
    return x.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(frames: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """Tile [B, H, W, 3] uint8 frames row by row into [rows * H, ncols * W, 3]; empty cells are white.
    ``ncols`` None: ceil(sqrt(B)) columns, so 8 views make a 3 x 3 grid with one blank cell."""
    b, h, w, c = frames.shape
    ncols = ncols or math.ceil(math.sqrt(b))
    rows = math.ceil(b / ncols)
    grid = np.full((rows * h, ncols * w, c), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, col = divmod(i, ncols)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = frame
    return grid


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an [H, W, 3] uint8 image as PNG (atomically); returns the path."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)
