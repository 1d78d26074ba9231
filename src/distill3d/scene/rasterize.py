"""A differentiable Gaussian rasterizer in pure PyTorch, fast enough for CPU optimisation.

The image formation model is 3DGS's (Kerbl et al. 2023, Eq. 2-3): sorted front to back by camera depth,
each Gaussian i covers pixel p with

    alpha_i(p) = min(0.99, o_i exp(-1/2 d^T Sigma'_i^{-1} d)),   d = p - mu'_i,   zero beyond 3 sigma,
    C(p) = sum_i c_i alpha_i T_i + T_final bg,   T_i = prod_{j<i} (1 - alpha_j).

How it avoids the dense [pixels x Gaussians] product (``scene/reference.py`` is that dense twin). The
"tiles" are single pixels: each pixel gets its own depth-ordered list, built without any dense block.
1. Scanlines: for every visible Gaussian and image row its 3-sigma ellipse crosses, the exact column
   span inside the ellipse is solved in closed form, so only pairs inside the ellipse are generated.
2. Early termination without autograd: Gaussians are visited front to back in chunks (bounded memory)
   while a per-pixel log-transmittance buffer accumulates; pairs (and whole scanlines) on pixels whose
   transmittance already fell below ``min_transmittance`` (3DGS: 1e-4) before the chunk are dropped.
3. One integer sort of the surviving pairs by (pixel, depth) makes each pixel's list a contiguous
   segment; T_i is a segmented exclusive cumulative sum of log(1 - alpha) (one float64 cumulative sum
   read at the segment bounds, which are found once per render).
All cameras of a batch go through these steps together, as one stack of images (one sort, one
compositing call), instead of one camera after another.
4. ``_Composite`` evaluates the surviving pairs with a hand-written backward (3DGS's gradient formulas),
   so autograd stores no per-op intermediates; per-Gaussian values enter through one packed gather.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.scene.projection import MAX_POWER, Projected

MAX_ALPHA = 0.99  # 3DGS forward.cu: alpha = min(0.99, ...)


@dataclass(frozen=True)
class RasterConfig:
    """Knobs of the fast rasterizer; the defaults follow 3DGS."""

    min_transmittance: float = 1e-4  # a pixel stops blending once T drops below this; 0 keeps every pair
    depth_chunks: int = 16  # front-to-back chunks for that early termination: more drop more, cost more
    max_pairs_per_chunk: int = 1_000_000  # candidate pairs handled at once without autograd (memory bound)


@dataclass(frozen=True)
class _Pairs:
    """Depth-ordered (pixel, Gaussian) pairs, grouped by pixel: each pixel's pairs are one contiguous
    segment ``first[i] .. last[i]``."""

    pixel: Tensor  # [P] int64, row * size + column, non-decreasing
    gaussian: Tensor  # [P] int64, index into the ordered visible Gaussians given to _sorted_pairs
    first: Tensor  # [P] int64, index of the first pair of pair i's pixel
    last: Tensor  # [P] int64, index of the last pair of pair i's pixel


def rasterize(proj: Projected, opacities: Tensor, colors: Tensor, size: int, background: Tensor,
              config: RasterConfig = RasterConfig()) -> tuple[Tensor, Tensor, Tensor]:
    """Composite projected Gaussians. opacities [N], colors [B, N, 3], background [3]
    -> image [B, 3, H, W], alpha [B, 1, H, W], expected depth [B, 1, H, W].

    All B cameras are rasterized in one pass (one pair list, one sort, one compositing call): camera b's
    pixels are numbered b·H·W + row·W + column and its Gaussians b·N + i, so each pixel's list still holds
    only its own camera's Gaussians in that camera's depth order. The front-to-back chunks of the early
    termination interleave the cameras by depth rank (each chunk takes the next layer of every camera)."""
    batch, n = proj.means2d.shape[:2]
    means2d, conics = proj.means2d.reshape(batch * n, 2), proj.conics.reshape(batch * n, 3)
    depths, radii = proj.depths.reshape(batch * n), proj.radii.reshape(batch * n)
    camera = torch.arange(batch, device=radii.device).repeat_interleave(n)  # [B*N]
    visible = (radii > 0).nonzero().squeeze(1)
    by_depth = visible[torch.argsort(depths[visible].detach())]
    by_camera = by_depth[torch.argsort(camera[by_depth], stable=True)]  # camera-major, front to back
    cam = camera[by_camera]
    per_camera = torch.bincount(cam, minlength=batch)
    rank = torch.arange(len(by_camera), device=cam.device) - (per_camera.cumsum(0) - per_camera)[cam]
    order = by_camera[torch.argsort((rank.double() + 0.5) / per_camera[cam].double(), stable=True)]
    opacity = opacities.repeat(batch)  # [B*N]
    pairs = _sorted_pairs(means2d[order].detach(), conics[order].detach(), radii[order],
                          opacity[order].detach(), camera[order] * size, batch * size, size, config)
    packed = torch.cat([means2d, conics, opacity[:, None], depths[:, None], colors.reshape(batch * n, 3)],
                       dim=1)  # [B*N, 10]
    sums = _Composite.apply(packed, order[pairs.gaussian], pairs, size, batch)  # [B*H*W, 5]
    sums = sums.reshape(batch, size * size, 5)
    rgb, acc, zsum = sums[..., :3], sums[..., 3], sums[..., 4]
    image = rgb + (1.0 - acc)[..., None] * background.to(rgb.dtype)
    depth = zsum / acc.clamp_min(1e-10)
    return (image.transpose(1, 2).reshape(batch, 3, size, size), acc.reshape(batch, 1, size, size),
            depth.reshape(batch, 1, size, size))


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of depth-sorted (pixel, Gaussian) pairs with a hand-written backward.

    Per pair i of a pixel: alpha_i from the 2D Gaussian, T_i = exp(sum_{j<i} log(1 - alpha_j)), w_i = alpha_i T_i;
    per pixel: (sum_i w_i c_i, sum_i w_i, sum_i w_i z_i). With v_i = c_i . dL/dC + dL/dA + z_i dL/dZ:

        dL/dalpha_i = T_i v_i - (sum_{j>i} w_j v_j) / (1 - alpha_i)      (as 3DGS's backward.cu)

    Both segment sums come from one global float64 cumulative sum C over all pairs, read at the segment
    bounds: sum_{j<i} x_j = C_{i-1} - C_{first-1} and sum_{j>i} x_j = C_{last} - C_i.

    then the chain rule through alpha = o exp(-power) and power = 1/2 (a dx^2 + c dy^2) + b dx dy.
    ``packed`` rows are (mx, my, a, b, c, opacity, z, r, g, b); the backward returns its gradient.
    """

    @staticmethod
    def forward(ctx, packed: Tensor, gauss: Tensor, pairs: _Pairs, size: int, batch: int) -> Tensor:
        pix = pairs.pixel
        pp = torch.index_select(packed, 0, gauss)  # [P, 10]
        mx, my, a, b, c, opacity, z = pp[:, :7].unbind(-1)
        dx = (pix % size).to(pp.dtype) + 0.5 - mx
        dy = (torch.div(pix, size, rounding_mode="floor") % size).to(pp.dtype) + 0.5 - my  # row in its camera
        power = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        falloff = torch.exp(-power)
        raw = opacity * falloff
        inside = (power >= 0) & (power <= MAX_POWER)
        alpha = torch.where(inside, raw.clamp_max(MAX_ALPHA), 0.0)
        trans = torch.exp(_sum_before(torch.log1p(-alpha).double(), pairs.first)).to(pp.dtype)
        weight = alpha * trans
        sums = torch.empty(len(pix), 5, dtype=pp.dtype, device=pp.device)  # filled column-wise: no cat
        torch.mul(weight[:, None], pp[:, 7:], out=sums[:, :3])
        sums[:, 3] = weight
        torch.mul(weight, z, out=sums[:, 4])
        ctx.save_for_backward(pp, gauss, pix, pairs.last, dx, dy, falloff, alpha, trans, inside & (raw <= MAX_ALPHA))
        ctx.n_rows = packed.shape[0]
        return sums.new_zeros(batch * size * size, 5).index_add_(0, pix, sums)

    @staticmethod
    def backward(ctx, grad_sums: Tensor):
        pp, gauss, pix, last, dx, dy, falloff, alpha, trans, active = ctx.saved_tensors
        a, b, c, _, z = pp[:, 2:7].unbind(-1)
        g = torch.index_select(grad_sums, 0, pix)  # [P, 5]
        g_rgb, g_acc, g_z = g[:, :3], g[:, 3], g[:, 4]
        weight = alpha * trans
        v = (pp[:, 7:] * g_rgb).sum(-1) + g_acc + z * g_z
        behind = _sum_after((weight * v).double(), last).to(v.dtype)
        g_alpha = trans * v - behind / (1.0 - alpha)
        g_opacity = torch.where(active, g_alpha * falloff, 0.0)
        g_power = torch.where(active, -g_alpha * alpha, 0.0)
        grad_pp = torch.empty_like(pp)  # [P, 10], filled column-wise
        grad_pp[:, 0] = -g_power * (a * dx + b * dy)  # d power / d mean = -(conic d)
        grad_pp[:, 1] = -g_power * (c * dy + b * dx)
        half_g = 0.5 * g_power
        grad_pp[:, 2] = half_g * dx * dx
        grad_pp[:, 3] = g_power * dx * dy
        grad_pp[:, 4] = half_g * dy * dy
        grad_pp[:, 5] = g_opacity
        grad_pp[:, 6] = weight * g_z
        torch.mul(weight[:, None], g_rgb, out=grad_pp[:, 7:])
        grad_packed = grad_sums.new_zeros(ctx.n_rows, 10).index_add_(0, gauss, grad_pp)
        return grad_packed, None, None, None, None


def _sum_before(values: Tensor, first: Tensor) -> Tensor:
    """sum_{first_i <= j < i} values_j: the exclusive sum within each pair's segment. [P] -> [P]"""
    if values.numel() == 0:
        return values
    excl = values.cumsum(0) - values  # C_{i-1}
    return excl - excl[first]


def _sum_after(values: Tensor, last: Tensor) -> Tensor:
    """sum_{i < j <= last_i} values_j: what follows each pair within its segment. [P] -> [P]"""
    if values.numel() == 0:
        return values
    incl = values.cumsum(0)  # C_i
    return incl[last] - incl


def _segment_bounds(segments: Tensor) -> tuple[Tensor, Tensor]:
    """For sorted ``segments`` [P]: the index of the first and of the last element of each one's run."""
    count = segments.numel()
    is_start = torch.ones_like(segments, dtype=torch.bool)
    is_start[1:] = segments[1:] != segments[:-1]
    starts = is_start.nonzero().squeeze(1)
    ends = torch.cat([starts[1:] - 1, starts.new_tensor([count - 1])]) if count else starts
    run = is_start.cumsum(0) - 1
    return starts[run], ends[run]


@torch.no_grad()
def _sorted_pairs(means2d: Tensor, conics: Tensor, radii: Tensor, opacities: Tensor, row_offset: Tensor,
                  rows: int, size: int, config: RasterConfig) -> _Pairs:
    """Every (pixel, Gaussian) pair inside the 3-sigma ellipse that is not behind T < min_transmittance,
    sorted by pixel then list position. Inputs are the visible Gaussians, each camera's in its depth order;
    ``row_offset`` [N] is the first image row of each one's camera in a stack of ``rows`` rows of ``size``
    pixels (b·size for camera b), so pixel indices are global over the stack.

    Gaussians are visited front to back in chunks while a per-pixel log-transmittance buffer accumulates;
    a pair is dropped when its pixel's buffer was already below log(min_transmittance) before its chunk,
    i.e. only pairs that are certainly behind T < min_transmittance go (a few more than 3DGS keep stay),
    and scanlines whose pixels are all finished are not even expanded.
    """
    n = means2d.shape[0]
    lines = _scanlines(means2d, conics, radii, opacities, row_offset, size)
    log_t = means2d.new_zeros(rows * size)
    log_min = torch.log(torch.tensor(config.min_transmittance)) if config.min_transmittance > 0 else None
    budget = min(config.max_pairs_per_chunk, max(65536, -(-int(lines.count.sum()) // config.depth_chunks)))
    keys = []
    for lo, hi in _chunks(lines.count, budget):
        count = lines.count[lo:hi]
        if log_min is not None:  # skip scanlines whose pixels are all finished already
            count = torch.where(_alive_in_span(log_t >= log_min, lines.ids[lo:hi, 0], count, rows, size) > 0, count, 0)
        total = int(count.sum())
        line = torch.repeat_interleave(torch.arange(lo, hi, device=count.device), count, output_size=total)
        k = _local_index(count, total)  # column offset within the scanline
        quad_a, quad_b, quad_c, offset, opacity = torch.index_select(lines.coef, 0, line).unbind(-1)
        dx = offset + k.to(offset.dtype)
        power = (quad_a * dx + quad_b) * dx + quad_c  # = 1/2 d^T conic d on this row
        alpha = torch.where(power <= MAX_POWER, (opacity * torch.exp(-power)).clamp_max(MAX_ALPHA), 0.0)
        base, gid = torch.index_select(lines.ids, 0, line).unbind(-1)
        pix = base + k
        alive = alpha > 0
        if log_min is not None:
            alive &= log_t[pix] >= log_min
            log_t.index_add_(0, pix, torch.log1p(-alpha))
        keys.append((pix * n + gid)[alive])
    key = torch.sort(torch.cat(keys)).values if keys else radii.new_zeros(0)
    pixel = torch.div(key, n, rounding_mode="floor")
    return _Pairs(pixel, key % n, *_segment_bounds(pixel))


@dataclass(frozen=True)
class _Scanlines:
    """One entry per (Gaussian, image row) the Gaussian's 3-sigma ellipse crosses, Gaussian-major.

    On a row, with dx = offset + k for the k-th pixel from the first one inside the ellipse, the
    Mahalanobis half-power is quad_a dx^2 + quad_b dx + quad_c."""

    count: Tensor  # [L] int64, number of pixel columns inside the ellipse (may be 0)
    coef: Tensor  # [L, 5] (quad_a, quad_b, quad_c, offset, opacity)
    ids: Tensor  # [L, 2] int64 (pixel index of the first column, Gaussian index)


def _scanlines(means2d: Tensor, conics: Tensor, radii: Tensor, opacities: Tensor, row_offset: Tensor,
               size: int) -> _Scanlines:
    u, v = means2d.unbind(-1)
    r = radii.to(means2d.dtype)
    y0 = torch.ceil(v - r - 0.5).clamp(0, size - 1).long()
    y1 = torch.floor(v + r - 0.5).clamp(0, size - 1).long()
    n_rows = (y1 - y0 + 1).clamp_min(0)
    gid = torch.repeat_interleave(torch.arange(len(u), device=u.device), n_rows)
    row = y0[gid] + _local_index(n_rows)
    # columns where 1/2 (a dx^2 + 2 b dx dy + c dy^2) <= MAX_POWER, solved for dx on this row
    a, b, c = conics[gid].unbind(-1)
    dy = row.to(u.dtype) + 0.5 - v[gid]
    disc = (b * dy) ** 2 - a * (c * dy * dy - 2.0 * MAX_POWER)
    half = disc.clamp_min(0).sqrt() / a + 1e-3  # a hair wider: the exact test is MAX_POWER itself
    centre = u[gid] - b * dy / a - 0.5
    x0 = torch.ceil(centre - half).clamp(0, size - 1).long()
    x1 = torch.floor(centre + half).clamp(-1, size - 1).long()
    count = torch.where(disc >= 0, (x1 - x0 + 1).clamp_min(0), 0)
    offset = x0.to(u.dtype) + 0.5 - u[gid]
    coef = torch.stack([0.5 * a, b * dy, 0.5 * c * dy * dy, offset, opacities[gid]], dim=-1)
    return _Scanlines(count, coef, torch.stack([(row_offset[gid] + row) * size + x0, gid], dim=-1))


def _alive_in_span(alive: Tensor, start: Tensor, count: Tensor, rows: int, size: int) -> Tensor:
    """How many of the pixels start .. start + count - 1 (within one of ``rows`` rows of ``size``) are
    alive. [L]"""
    per_row = alive.reshape(rows, size).to(torch.int32).cumsum(1)
    prefix = torch.cat([per_row.new_zeros(rows, 1), per_row], dim=1).reshape(-1)  # [rows * (size + 1)]
    row, col = torch.div(start, size, rounding_mode="floor"), start % size
    first = row * (size + 1) + col
    return prefix[first + count] - prefix[first]


def _local_index(counts: Tensor, total: int | None = None) -> Tensor:
    """[0, 1, .., c0 - 1, 0, 1, .., c1 - 1, ...] for counts [c0, c1, ...]."""
    total = int(counts.sum()) if total is None else total
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts, output_size=total)
    return torch.arange(total, device=counts.device) - starts


def _chunks(counts: Tensor, budget: int) -> list[tuple[int, int]]:
    """Consecutive index ranges whose counts sum to about ``budget`` (at least one item each)."""
    ends = torch.searchsorted(counts.cumsum(0), torch.arange(budget, int(counts.sum()) + budget, budget,
                                                                 device=counts.device), right=True)
    bounds = sorted({0, len(counts), *(min(max(int(e), 1), len(counts)) for e in ends.tolist())})
    return list(itertools.pairwise(bounds))
