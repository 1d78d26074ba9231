"""Perp-Neg (Armandpour et al. 2023, "Re-imagine the Negative Prompt Algorithm") for view-dependent
score distillation, with the view weights threestudio uses (``prompt_processors/base.py``,
``use_perp_neg``), against the Janus problem.

For a view whose positive prompt is ``y_v`` ("<y>, side view", ...) and whose negatives are the prompts of
the other views ``y_1, y_2`` with weights ``w_1, w_2 ≤ 0``:

    e_pos = ε̂(z_t; y_v) − ε̂(z_t; ∅)
    e_i   = ε̂(z_t; y_i) − ε̂(z_t; ∅)
    ε̂_PN  = ε̂(z_t; ∅) + s · (e_pos + Σ_i w_i · e_i^⊥),   e_i^⊥ = e_i − (⟨e_i, e_pos⟩ / ‖e_pos‖²) e_pos

(Perp-Neg's perpendicular gradient, as threestudio computes it: only the component of a negative direction perpendicular to the positive one is
removed, so the negative cannot cancel what the positive asks for.)

View weights (threestudio), azimuth a folded to [0, 180], f(r) = α·exp(−β r) + γ:
- overhead (elevation above 60°): no negatives;
- a < 90 (front–side): r = 1 − a/90, negatives (front, side) with weights (−f_fs(r), −f_sf(1 − r));
- a ≥ 90 (side–back): r = 2 − a/90, negatives (side, front) with weights (−f_sb(r), −f_fsb(r)).

One deviation, forced by the prior protocol (priors are conditioned on prompt *strings*): threestudio's
positive is an interpolation of the front/side (or side/back) text *embeddings* by r; here the positive is
the view's own prompt (front within 45° of azimuth 0, back within 45° of 180, side otherwise), the same
discrete prompt plain view-dependent SDS uses. The negatives and their weights are threestudio's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from distill3d.core.cameras import view_prompt


@dataclass(frozen=True)
class Decay:
    """f(r) = alpha · exp(−beta · r) + gamma (threestudio's ``shifted_expotional_decay``)."""

    alpha: float  # scale of the exponential
    beta: float  # its rate
    gamma: float  # the offset

    def __call__(self, r: float) -> float:
        return self.alpha * math.exp(-self.beta * r) + self.gamma


@dataclass(frozen=True)
class PerpNegCurves:
    """threestudio's defaults; f_fs(1) = 0: a view straight from the front is not pushed off "front"."""

    f_fs: Decay = field(default_factory=lambda: Decay(4.0, 0.5, -2.426))  # weight of "front" for front-side views
    f_sf: Decay = field(default_factory=lambda: Decay(4.0, 0.5, -2.426))  # weight of "side" for front-side views
    f_sb: Decay = field(default_factory=lambda: Decay(1.0, 0.5, -0.606))  # weight of "side" for side-back views
    f_fsb: Decay = field(default_factory=lambda: Decay(1.0, 0.5, 0.967))  # weight of "front" for side-back views
    overhead_elevation: float = 60.0  # elevation (degrees) above which a view is "overhead"


@dataclass(frozen=True)
class PerpNegView:
    positive: str  # the view's prompt y_v
    negatives: tuple[str, str]  # y_1, y_2
    weights: tuple[float, float]  # w_1, w_2 (≤ 0 where a negative acts; 0 = none)


def perp_neg_view(prompt: str, azimuth: float, elevation: float, curves: PerpNegCurves) -> PerpNegView:
    """Positive prompt, negative prompts and their weights for one view (module docstring)."""
    positive = view_prompt(prompt, azimuth, elevation)
    if elevation > curves.overhead_elevation:
        return PerpNegView(positive, ("", ""), (0.0, 0.0))
    a = abs((azimuth + 180.0) % 360.0 - 180.0)  # [0, 180]
    front, side = f"{prompt}, front view", f"{prompt}, side view"
    if a < 90.0:
        r = 1.0 - a / 90.0  # 1 = straight front, 0 = full side
        return PerpNegView(positive, (front, side), (-curves.f_fs(r), -curves.f_sf(1.0 - r)))
    r = 2.0 - a / 90.0  # 1 = full side, 0 = straight back
    return PerpNegView(positive, (side, front), (-curves.f_sb(r), -curves.f_fsb(r)))


def perpendicular(x: Tensor, y: Tensor, eps: float = 1e-6) -> Tensor:
    """Per sample, the component of x [B, ...] perpendicular to y [B, ...]."""
    dims = tuple(range(1, x.ndim))
    coef = (x * y).sum(dims, keepdim=True) / (y * y).sum(dims, keepdim=True).clamp_min(eps)
    return x - coef * y


def perp_neg_cfg(eps_uncond: Tensor, eps_pos: Tensor, eps_negs: list[Tensor], weights: Tensor,
                 scale: float) -> Tensor:
    """ε̂_PN = ε̂(∅) + s (e_pos + Σ_i w_i e_i^⊥) (module docstring). eps_* [B, C, h, w], weights [B, K]."""
    e_pos = eps_pos - eps_uncond
    acc = torch.zeros_like(e_pos)
    for i, eps_neg in enumerate(eps_negs):
        acc = acc + weights[:, i].reshape(-1, *[1] * (e_pos.ndim - 1)) * perpendicular(eps_neg - eps_uncond, e_pos)
    return eps_uncond + scale * (e_pos + acc)


__all__ = ["Decay", "PerpNegCurves", "PerpNegView", "perp_neg_cfg", "perp_neg_view", "perpendicular"]
