"""Perp-Neg (Armandpour et al. 2023, "Re-imagine the Negative Prompt Algorithm") for view-dependent
score distillation, against the Janus problem: the one implementation SDS, SDI and ISM use
(:func:`guided_eps`, their ``perp_neg`` and ``perp_neg_curves`` fields).

For a view whose positive prompt is ``y_v`` ("<y>, side view", ...) and whose negatives are the prompts of
the other views ``y_1, y_2`` with weights ``w_1, w_2 ≤ 0``:

    e_pos = ε̂(z_t; y_v) − ε̂(z_t; ∅)
    e_i   = ε̂(z_t; y_i) − ε̂(z_t; ∅)
    ε̂_PN  = ε̂(z_t; ∅) + s · (e_pos + Σ_i w_i · e_i^⊥),   e_i^⊥ = e_i − (⟨e_i, e_pos⟩ / ‖e_pos‖²) e_pos

(Perp-Neg's perpendicular gradient, as threestudio and LucidDreamer compute it: only the component of a negative
direction perpendicular to the positive one is removed, so the negative cannot cancel what the positive asks
for.) The scale s is in the standard form: both codes write ε̂(∅) + s(...) on this path.

View weights, azimuth a folded to [0, 180], f(r) = α·exp(−β r) + γ (0 where r exceeds its cut-off):
- overhead (elevation above ``overhead_elevation``): no negatives;
- a < 90 (front–side): r = 1 − a/90, negatives (front, side) with weights (−f_fs(r), −f_sf(1 − r));
- a ≥ 90 (side–back): r = 2 − a/90, negatives (side, front) with weights (−f_sb(r), −f_fsb(r)).

Two sets of curves: threestudio's (``prompt_processors/base.py``, ``use_perp_neg``; :class:`PerpNegCurves`'
defaults) and LucidDreamer's (``train.py`` ``get_pos_neg_text_embeddings`` with ``arguments/__init__.py``
``GuidanceParams`` negative_w −2, front_decay_factor 2, side_decay_factor 10: :data:`LUCIDDREAMER_CURVES`).

One deviation, forced by the prior protocol (priors are conditioned on prompt *strings*): both codes' positive
is an interpolation of the front/side (or side/back) text *embeddings* by r; here the positive is the view's
own prompt (front within 45° of azimuth 0, back within 45° of 180, side otherwise, overhead above 60°), the
same discrete prompt plain view-dependent SDS uses. The negatives and their weights are the codes'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from distill3d.core.cameras import view_prompt
from distill3d.core.errors import UserError
from distill3d.guidance.base import GuidanceInput, camera_tuples, cfg, predict_groups, prompt_conditions
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class Decay:
    """f(r) = alpha · exp(−beta · r) + gamma (threestudio's ``shifted_expotional_decay``), 0 for r above
    ``cutoff`` (LucidDreamer drops a negative whose view is within 0.2 of the positive's)."""

    alpha: float  # scale of the exponential
    beta: float  # its rate
    gamma: float  # the offset
    cutoff: float | None = None  # f(r) = 0 for r above it (LucidDreamer: 0.8); none: no cut-off

    def __call__(self, r: float) -> float:
        if self.cutoff is not None and r > self.cutoff:
            return 0.0
        return self.alpha * math.exp(-self.beta * r) + self.gamma


@dataclass(frozen=True)
class PerpNegCurves:
    """threestudio's defaults; f_fs(1) = 0: a view straight from the front is not pushed off "front"."""

    f_fs: Decay = field(default_factory=lambda: Decay(4.0, 0.5, -2.426))  # weight of "front" for front-side views
    f_sf: Decay = field(default_factory=lambda: Decay(4.0, 0.5, -2.426))  # weight of "side" for front-side views
    f_sb: Decay = field(default_factory=lambda: Decay(1.0, 0.5, -0.606))  # weight of "side" for side-back views
    f_fsb: Decay = field(default_factory=lambda: Decay(1.0, 0.5, 0.967))  # weight of "front" for side-back views
    overhead_elevation: float = 60.0  # elevation (degrees) above which a view is "overhead"


#: LucidDreamer's Perp-Neg (``train.py`` ``get_pos_neg_text_embeddings``, ``GuidanceParams`` negative_w −2,
#: front_decay_factor 2, side_decay_factor 10): front–side weights −2·exp(−2r) (0 for r > 0.8) and
#: −2·exp(−10(1 − r)) (0 for r < 0.2); side–back −2·exp(−10r)/2 (0 for r > 0.8) and a constant −2 on "front";
#: no overhead rule (elevations never exceed 89°).
LUCIDDREAMER_CURVES = PerpNegCurves(f_fs=Decay(2.0, 2.0, 0.0, 0.8), f_sf=Decay(2.0, 10.0, 0.0, 0.8),
                                    f_sb=Decay(1.0, 10.0, 0.0, 0.8), f_fsb=Decay(0.0, 0.0, 2.0),
                                    overhead_elevation=90.0)


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


def guided_eps(prior: Prior, z_t: Tensor, t: Tensor, inp: GuidanceInput, scale: float, view_dependent: bool,
               perp_neg: PerpNegCurves | None, negative_prompt: str = "") -> Tensor:
    """ε̂_cfg(z_t; y) of every view at (z_t [B, C, h, w], t [B]) in ONE predict_noise call, ∅ being
    ``negative_prompt``: with ``perp_neg`` curves Perp-Neg's ε̂_PN (rows [y_v, ∅, y_1, y_2], 4B), else the
    standard CFG ε̂(∅) + s(ε̂(y) − ε̂(∅)) (rows [y, ∅], 2B; y with the view suffix if ``view_dependent``).
    [B, C, h, w]"""
    b = z_t.shape[0]
    null = (z_t, t, [Condition(negative_prompt)] * b)
    if perp_neg is None:
        eps_y, eps_null = predict_groups(prior, [(z_t, t, prompt_conditions(inp, view_dependent)), null])
        return cfg(eps_null, eps_y, scale)
    views = [perp_neg_view(inp.prompt, a, e, perp_neg) for a, e in camera_tuples(inp.cameras)]
    groups = [(z_t, t, [Condition(v.positive) for v in views]), null]
    groups += [(z_t, t, [Condition(v.negatives[i]) for v in views]) for i in range(2)]
    eps_y, eps_null, *eps_negs = predict_groups(prior, groups)
    weights = torch.tensor([v.weights for v in views], dtype=eps_y.dtype, device=eps_y.device)  # [B, 2]
    return perp_neg_cfg(eps_null, eps_y, eps_negs, weights, scale)


def guided_rows(perp_neg: bool) -> int:
    """Rows per view of one :func:`guided_eps` call."""
    return 4 if perp_neg else 2


def check_perp_neg(perp_neg: bool, view_dependent: bool) -> None:
    """Perp-Neg's negatives are the other views' prompts: it needs view-dependent prompts."""
    if perp_neg and not view_dependent:
        raise UserError("perp_neg needs view-dependent prompts: set view_dependent=true")


__all__ = ["LUCIDDREAMER_CURVES", "Decay", "PerpNegCurves", "PerpNegView", "check_perp_neg", "guided_eps",
           "guided_rows", "perp_neg_cfg", "perp_neg_view", "perpendicular"]
