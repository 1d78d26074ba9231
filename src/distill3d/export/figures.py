"""Figures for people to look at: view tiles with captions (PIL) and line plots over steps (matplotlib)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from distill3d.core.io import atomic_path

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Caption:
    """Text under one tile: lines drawn top to bottom, each in its colour."""

    lines: list[tuple[str, RGB]]


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """``text`` cut with an ellipsis so it fits in ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """``text`` broken at spaces into at most ``max_lines`` lines of ``width`` pixels (the last one cut)."""
    lines: list[str] = []
    words = text.split(" ")
    while words and len(lines) < max_lines - 1:
        k = len(words)
        while k > 1 and font.getlength(" ".join(words[:k])) > width:
            k -= 1
        lines.append(" ".join(words[:k]))
        words = words[k:]
    if words:
        lines.append(_fit(" ".join(words), font, width))
    return [_fit(line, font, width) for line in lines]


def caption_tiles(frames: np.ndarray, captions: list[Caption], font_size: int = 11,
                  max_lines_each: int = 2) -> np.ndarray:
    """Add a white band with ``captions[i]`` under ``frames[i]``; each caption line wraps onto at most
    ``max_lines_each`` lines of the tile's width. [B, H, W, 3] uint8 -> [B, H + band, W, 3]"""
    if len(captions) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(captions)} captions")
    font = ImageFont.load_default(size=font_size)
    b, h, w, _ = frames.shape
    wrapped = [[(part, colour) for text, colour in c.lines for part in _wrap(text, font, w - 6, max_lines_each)]
               for c in captions]
    line_h = font_size + 3
    band = 4 + line_h * max((len(lines) for lines in wrapped), default=0)
    out = np.full((b, h + band, w, 3), 255, dtype=np.uint8)
    out[:, :h] = frames
    for i, lines in enumerate(wrapped):
        tile = Image.fromarray(out[i])
        draw = ImageDraw.Draw(tile)
        for k, (text, colour) in enumerate(lines):
            draw.text((3, h + 2 + k * line_h), text, fill=colour, font=font)
        out[i] = np.asarray(tile)
    return out


@dataclass(frozen=True)
class Series:
    """One panel of a line plot: y over x (steps)."""

    title: str
    x: list[float]
    y: list[float]


def plot_series(series: list[Series], path: str | os.PathLike[str], ncols: int = 2) -> Path:
    """Write one small line plot per series, in a grid of ``ncols`` columns, as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(series) // ncols))
    fig, axes = plt.subplots(rows, ncols, figsize=(4.0 * ncols, 2.6 * rows), squeeze=False)
    for ax, s in zip(axes.flat, series):
        ax.plot(s.x, s.y, marker="." if len(s.x) < 30 else None, linewidth=1.2)
        ax.set_title(s.title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


__all__ = ["Caption", "Series", "caption_tiles", "plot_series"]
