"""Frames as a video: H.264 ``.mp4`` through imageio-ffmpeg, or an animated ``.gif`` (PIL) when no ffmpeg
binary is available."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from distill3d.core.io import atomic_path


def ffmpeg_available() -> bool:
    """True when imageio-ffmpeg is installed and finds an ffmpeg binary (its own or the system's)."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: pad the bottom/right with white where they are odd."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=255)


def write_mp4(frames: np.ndarray, path: str | os.PathLike[str], fps: int = 24) -> Path:
    """[T, H, W, 3] uint8 frames as an H.264 mp4 (yuv420p, so every player can show it)."""
    import imageio.v2 as imageio

    frames = _pad_even(frames)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                                    quality=8, macro_block_size=1)
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
    return Path(path)


def write_gif(frames: np.ndarray, path: str | os.PathLike[str], fps: int = 24) -> Path:
    """[T, H, W, 3] uint8 frames as a looping animated GIF."""
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0)
    return Path(path)


def write_video(frames: np.ndarray, path: str | os.PathLike[str], fps: int = 24) -> Path:
    """Write [T, H, W, 3] uint8 frames to ``path`` (.mp4 or .gif). An .mp4 becomes a .gif beside it when
    ffmpeg is unavailable. Returns the path actually written."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        return write_gif(frames, path, fps)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path must end in .mp4 or .gif, got {path.name}")
    if ffmpeg_available():
        return write_mp4(frames, path, fps)
    return write_gif(frames, path.with_suffix(".gif"), fps)
