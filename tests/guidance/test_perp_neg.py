"""Perp-Neg, the one piece SDS, SDI and ISM share: LucidDreamer's view weights from its own formulas, and SDI and
ISM with Perp-Neg against the closed form of perpendicular CFG on an analytic prior whose view prompts differ."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from distill3d.core.errors import UserError
from distill3d.guidance.base import AnnealedTimesteps, Constant
from distill3d.guidance.ism import ISM, ISMConfig
from distill3d.guidance.perp_neg import LUCIDDREAMER_CURVES, PerpNegCurves, perp_neg_view
from distill3d.guidance.sdi import SDI, SDIConfig
from distill3d.priors.base import Condition

from .analytic_prior import AnalyticPrior, gaussian_eps
from .contract import PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar

VIEWS = ("front", "side", "back", "overhead")


class ViewAnalyticPrior(AnalyticPrior):
    """The analytic prior with a view word moving its mode: "<colour ...>, <view> view" is N(μ_colour + D_view,
    s² I), D_view a fixed image per view (∅ stays the mixture). Perp-Neg's negatives then differ from the
    positive, and every prediction stays closed-form."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.offsets = {v: 0.3 * torch.randn(3, self.image_size, self.image_size, generator=g) for v in VIEWS}

    def view_mean(self, text: str) -> Tensor:
        k = self.mode_of(text)
        view = next(v for v in VIEWS if text.endswith(f", {v} view"))
        return self.means[k] + self.offsets[view]

    def _gaussian(self, cond: Condition):
        params = super()._gaussian(cond)
        if params is None or cond.image is not None or not any(cond.text.endswith(f", {v} view") for v in VIEWS):
            return params
        return self.view_mean(cond.text), params[1]


def _eps(prior: ViewAnalyticPrior, z_t: Tensor, t: int, text: str) -> Tensor:
    """Closed-form ε̂ of one latent [C, h, w]: the mixture for ∅, the view's Gaussian otherwise."""
    a = prior.alphas_cumprod[[t]]
    if text == "":
        return prior.mixture_eps(z_t[None], a)[0]
    return gaussian_eps(z_t[None], prior.view_mean(text), prior.std**2, a)[0]


def _perp_neg(prior, z_t, t, positive, negatives, weights, s) -> Tensor:
    """ε̂(∅) + s(e_pos + Σ w_i (e_i − ⟨e_i, e_pos⟩/‖e_pos‖² e_pos)), written out."""
    e0 = _eps(prior, z_t, t, "")
    e_pos = _eps(prior, z_t, t, positive) - e0
    total = e_pos.clone()
    for neg, w in zip(negatives, weights):
        e_i = _eps(prior, z_t, t, neg) - e0
        total += w * (e_i - (e_i * e_pos).sum() / (e_pos * e_pos).sum() * e_pos)
    return e0 + s * total


def _cfg(prior, z_t, t, positive, s) -> Tensor:
    e0 = _eps(prior, z_t, t, "")
    return e0 + s * (_eps(prior, z_t, t, positive) - e0)


def _ddim(z, e, a, a_next):
    return math.sqrt(a_next) * (z - math.sqrt(1 - a) * e) / math.sqrt(a) + math.sqrt(1 - a_next) * e


def _negatives(view: str) -> tuple[str, str]:
    front, side = f"{PROMPT}, front view", f"{PROMPT}, side view"
    return (front, side) if view == "front" else (side, front)


# threestudio's weights at make_input's azimuths 0, 90, 180 (elevation 15), from its shifted_expotional_decay
TS_WEIGHTS = {"front": (-(4 * math.exp(-0.5) - 2.426), -(4 - 2.426)),  # r = 1 on the front-side branch
              "side": (-(math.exp(-0.5) - 0.606), -(math.exp(-0.5) + 0.967)),  # r = 1 on the side-back branch
              "back": (-(1 - 0.606), -(1 + 0.967))}  # r = 0
# LucidDreamer's (train.py get_pos_neg_text_embeddings, negative_w −2, decay factors 2 and 10) at the same views
LD_WEIGHTS = {"front": (0.0, -2.0), "side": (0.0, -2.0), "back": (-1.0, -2.0)}


@pytest.mark.parametrize("azimuth, elevation", [(0.0, 15.0), (30.0, 15.0), (-60.0, 5.0), (90.0, 15.0),
                                                (150.0, 15.0), (180.0, 15.0), (40.0, 70.0)])
def test_luciddreamer_curves_are_its_weights(azimuth, elevation):
    """LucidDreamer: |a| < 90: r = 1 − |a|/90, front −2e^{−2r} (0 for r > 0.8), side −2e^{−10(1−r)} (0 for r < 0.2);
    else r = 2 − |a|/90, side −2e^{−10r}/2 (0 for r > 0.8), front −2. No overhead rule."""
    a = abs(azimuth)
    if a < 90:
        r = 1 - a / 90
        expected = (0.0 if r > 0.8 else -2 * math.exp(-2 * r), 0.0 if r < 0.2 else -2 * math.exp(-10 * (1 - r)))
        negatives = (f"{PROMPT}, front view", f"{PROMPT}, side view")
    else:
        r = 2 - a / 90
        expected = (0.0 if r > 0.8 else -math.exp(-10 * r), -2.0)
        negatives = (f"{PROMPT}, side view", f"{PROMPT}, front view")
    view = perp_neg_view(PROMPT, azimuth, elevation, LUCIDDREAMER_CURVES)
    assert view.negatives == negatives and view.weights == pytest.approx(expected)


class TestISMPerpNegContract(GuidanceContract):
    def make_method(self):
        return ISM(ISMConfig(max_inversion_steps=3, perp_neg=True))


def test_sdi_with_perp_neg_is_the_closed_form_of_perpendicular_cfg():
    """SDI's inversion and final prediction both use ε̂_PN (the release: use_perp_neg in predict_noise, called by
    the inversion too) at s_inv = −7.5 and s = 7.5; η = 0 so only t and the jitter are drawn."""
    prior = ViewAnalyticPrior()
    inp = make_input(prior, step=99, total_steps=100)
    c = SDIConfig(inversion_steps=2, inversion_eta=0.0)
    out = SDI(c)(prior, inp, torch.Generator().manual_seed(4))
    plain = SDI(SDIConfig(inversion_steps=2, inversion_eta=0.0, perp_neg=False))(prior, inp,
                                                                                torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    t = c.timesteps.sample(inp.step, inp.total_steps, 3, 1000, g)
    torch.randn(inp.latents.shape, generator=g)  # SDS' ε, drawn and unused
    t = (t + torch.randint(0, 500, (3,), generator=g)).clamp(max=999)
    assert torch.equal(out.t, t) and out.num_prior_evals == 3 * 4 * 3
    z = inp.latents.detach()
    for i, view in enumerate(VIEW_NAMES):
        ti, y, negs, w = int(t[i]), f"{PROMPT}, {view} view", _negatives(view), TS_WEIGHTS[view]
        zk = z[i]
        for tau, tau_next in ((0, ti // 2), (ti // 2, ti)):
            zk = _ddim(zk, _perp_neg(prior, zk, tau, y, negs, w, -7.5), abar(prior, tau), abar(prior, tau_next))
        a = abar(prior, ti)
        eps_inv = (zk - math.sqrt(a) * z[i]) / math.sqrt(1 - a)
        expected = (1 - a) * (_perp_neg(prior, zk, ti, y, negs, w, 7.5) - eps_inv)
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-5)
    assert (out.grad - plain.grad).abs().max() > 1e-3  # Perp-Neg changes the gradient here


def test_ism_with_perp_neg_is_the_closed_form_with_luciddreamers_weights():
    """t = 150, δ = 50: one unconditional inversion step 0 → 100, one 100 → 150, target ε̂(z_s; s, ∅);
    ε̂_cfg(z_t; y) replaced by ε̂_PN with LucidDreamer's weights (its train_step_perpneg), CFG 7.5."""
    prior = ViewAnalyticPrior()
    inp = make_input(prior)
    base = {"interval": Constant(50.0), "timesteps": AnnealedTimesteps(0.15, 0.15)}
    out = ISM(ISMConfig(perp_neg=True, **base))(prior, inp, torch.Generator().manual_seed(0))
    plain = ISM(ISMConfig(**base))(prior, inp, torch.Generator().manual_seed(0))
    assert out.num_prior_evals == 2 * 3 + 4 * 3
    a0, a_s, a_t = abar(prior, 0), abar(prior, 100), abar(prior, 150)
    z = inp.latents.detach()
    for i, view in enumerate(VIEW_NAMES):
        z_s = _ddim(z[i], _eps(prior, z[i], 0, ""), a0, a_s)
        eps_s = _eps(prior, z_s, 100, "")
        z_t = _ddim(z_s, eps_s, a_s, a_t)
        pn = _perp_neg(prior, z_t, 150, f"{PROMPT}, {view} view", _negatives(view), LD_WEIGHTS[view], 7.5)
        expected = math.sqrt((1 - a_t) / a_t) * (pn - eps_s)
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-5)
        plain_i = math.sqrt((1 - a_t) / a_t) * (_cfg(prior, z_t, 150, f"{PROMPT}, {view} view", 7.5) - eps_s)
        torch.testing.assert_close(plain.grad[i], plain_i, rtol=1e-4, atol=1e-5)
    assert (out.grad - plain.grad).abs().max() > 1e-3


def test_perp_neg_needs_view_prompts_in_every_method():
    with pytest.raises(UserError, match="view_dependent"):
        SDIConfig(view_dependent=False)  # Perp-Neg is SDI's default
    with pytest.raises(UserError, match="view_dependent"):
        ISMConfig(perp_neg=True, view_dependent=False).validate()  # checked before a run
    assert SDIConfig().perp_neg_curves == PerpNegCurves() and ISMConfig().perp_neg_curves == LUCIDDREAMER_CURVES


def test_the_view_prior_is_a_real_difference():
    """The fixture's premise: view prompts move the mode, so the perpendicular parts are not zero."""
    prior = ViewAnalyticPrior()
    z = torch.randn(3, 4, 4)
    assert (_eps(prior, z, 300, f"{PROMPT}, front view") - _eps(prior, z, 300, f"{PROMPT}, side view")).abs().max() > 1e-2
