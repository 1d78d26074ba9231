"""The typed result every renderer returns, whatever the representation or backend."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class RenderOutput:
    """Images composited onto the background, plus what Gaussian densification needs.

    ``depth`` is the expected depth of the visible surface, sum_i w_i z_i / alpha (gsplat's "ED"), 0 where
    nothing was hit. ``means2d`` and ``radii`` are None for representations that are not splatted;
    ``means2d`` retains its gradient so that ``DensifyStrategy.update`` can read it after backward.
    """

    image: Tensor  # [B, 3, H, W]
    alpha: Tensor  # [B, 1, H, W]
    depth: Tensor  # [B, 1, H, W]
    means2d: Tensor | None = None  # [B, N, 2] pixels
    radii: Tensor | None = None  # [B, N] int64, 0 where culled
