"""Fixed-azimuth views, multi-view grids and turntable videos of any representation the renderer knows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.export.images import image_grid, save_png, to_uint8
from distill3d.export.video import write_video
from distill3d.scene.render import render


@torch.no_grad()
def render_views(representation: torch.nn.Module, cameras: Cameras, size: int, chunk: int = 8) -> Tensor:
    """Render every camera on white, ``chunk`` cameras at a time, in eval mode (a radiance field then
    samples bin midpoints, so views are deterministic); the module's mode is restored. [B, 3, size, size]"""
    was_training = representation.training
    representation.eval()
    try:
        return torch.cat([render(representation, cameras[i:i + chunk], size).image.cpu()
                          for i in range(0, len(cameras), chunk)])
    finally:
        representation.train(was_training)


def view_name(azimuth: float) -> str:
    """File name of one view: ``view_<az>.png`` with the azimuth in degrees as written (0, 45, 22.5)."""
    return f"view_{azimuth:g}.png"


@dataclass(frozen=True)
class SavedViews:
    views: list[Path]  # one PNG per azimuth, in the order given
    grid: Path  # all views tiled into one PNG


def save_views(representation: torch.nn.Module, azimuths: list[float], elevation: float, size: int,
               out_dir: str | os.PathLike[str]) -> SavedViews:
    """Render at ``azimuths`` (degrees) and ``elevation``: ``out_dir/view_<az>.png`` and ``views.png``."""
    out_dir = Path(out_dir)
    frames = to_uint8(render_views(representation, Cameras.from_angles(azimuths, elevation), size))
    views = [save_png(frame, out_dir / view_name(az)) for az, frame in zip(azimuths, frames)]
    return SavedViews(views=views, grid=save_png(image_grid(frames), out_dir / "views.png"))


def save_turntable(representation: torch.nn.Module, path: str | os.PathLike[str], frames: int = 60,
                   elevation: float = 20.0, size: int = 256, fps: int = 24) -> Path:
    """One full turn: ``frames`` views evenly spaced in azimuth from 0 (the front) at ``elevation``.
    Returns the path written (an .mp4 becomes a .gif when ffmpeg is unavailable)."""
    cams = Cameras.from_angles([360.0 * i / frames for i in range(frames)], elevation)
    images: np.ndarray = to_uint8(render_views(representation, cams, size))  # [T, H, W, 3]
    return write_video(images, path, fps)


def save_before_after(before: torch.nn.Module, after: torch.nn.Module, azimuths: list[float], elevation: float,
                      size: int, path: str | os.PathLike[str]) -> Path:
    """One PNG: ``before`` rendered at ``azimuths`` (top row) over ``after`` from the same cameras."""
    cams = Cameras.from_angles(azimuths, elevation)
    frames = to_uint8(torch.cat([render_views(before, cams, size), render_views(after, cams, size)]))
    return save_png(image_grid(frames, ncols=len(azimuths)), path)


def save_turntable_side_by_side(representations: list[torch.nn.Module], path: str | os.PathLike[str],
                                frames: int = 60, elevation: float = 20.0, size: int = 256, fps: int = 24) -> Path:
    """One turntable of several representations side by side, every frame from the same camera (left to
    right in the order given). Returns the path written (.gif when ffmpeg is unavailable)."""
    cams = Cameras.from_angles([360.0 * i / frames for i in range(frames)], elevation)
    views = [to_uint8(render_views(rep, cams, size)) for rep in representations]  # each [T, H, W, 3]
    return write_video(np.concatenate(views, axis=2), path, fps)
