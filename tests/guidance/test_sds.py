from __future__ import annotations

import math

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.guidance.base import Constant
from distill3d.guidance.perp_neg import PerpNegCurves, perp_neg_view, perpendicular
from distill3d.guidance.sds import SDS, SDSConfig
from distill3d.priors.base import Condition

from .contract import PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar, noised, one, replay
from .tiny_prior import TinyPrior


class TestSDSContract(GuidanceContract):
    def make_method(self):
        return SDS()


def test_sds_is_dreamfusion_eq3_with_view_prompts():
    prior = TinyPrior()
    inp = make_input(prior)
    out = SDS()(prior, inp, torch.Generator().manual_seed(11))
    t, eps = replay(prior, SDSConfig().timesteps, inp, 11)
    assert torch.equal(out.t, t)
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_0 = one(prior, z_t, ti, Condition(""))
        expected = (1 - a) * (e_0 + 100.0 * (e_y - e_0) - eps[i])
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-5, atol=1e-5)


def test_sds_clamp_bounds_every_element():
    prior = TinyPrior()
    inp = make_input(prior)
    free = SDS()(prior, inp, torch.Generator().manual_seed(0))
    clamped = SDS(SDSConfig(grad_clamp=Constant(0.05)))(prior, inp, torch.Generator().manual_seed(0))
    assert free.grad.abs().max() > 0.05
    assert clamped.grad.abs().max() <= 0.05
    torch.testing.assert_close(clamped.grad, free.grad.clamp(-0.05, 0.05))


class TestSDSPerpNegContract(GuidanceContract):
    def make_method(self):
        return SDS(SDSConfig(perp_neg=True))


def test_perp_neg_view_weights_are_threestudios():
    curves = PerpNegCurves()
    front = perp_neg_view("a cat", 0.0, 15.0, curves)
    assert front.positive == "a cat, front view" and front.negatives == ("a cat, front view", "a cat, side view")
    assert front.weights[0] == pytest.approx(0.0, abs=1e-3)  # f_fs(1) = 0
    assert front.weights[1] == pytest.approx(-(4.0 - 2.426))  # −f_sf(0)
    side = perp_neg_view("a cat", -90.0, 15.0, curves)  # r = 1 on the side-back branch
    assert side.positive == "a cat, side view" and side.negatives == ("a cat, side view", "a cat, front view")
    assert side.weights == pytest.approx((-(math.exp(-0.5) - 0.606), -(math.exp(-0.5) + 0.967)))
    back = perp_neg_view("a cat", 180.0, 15.0, curves)  # r = 0
    assert back.positive == "a cat, back view" and back.weights == pytest.approx((-(1 - 0.606), -(1 + 0.967)))
    top = perp_neg_view("a cat", 40.0, 70.0, curves)
    assert top.positive == "a cat, overhead view" and top.weights == (0.0, 0.0)


def test_perpendicular_component_is_orthogonal_and_completes_x():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    p = perpendicular(x, y)
    torch.testing.assert_close((p * y).sum((1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    parallel = x - p  # what is left must be a multiple of y
    coef = (parallel * y).sum((1, 2, 3)) / (y * y).sum((1, 2, 3))
    torch.testing.assert_close(parallel, coef[:, None, None, None] * y)


def test_sds_perp_neg_is_the_perpendicular_negative_cfg_by_hand():
    prior = TinyPrior()
    inp = make_input(prior)
    out = SDS(SDSConfig(perp_neg=True))(prior, inp, torch.Generator().manual_seed(5))
    assert out.num_prior_calls == 1 and out.num_prior_evals == 12
    t, eps = replay(prior, SDSConfig().timesteps, inp, 5)
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        view = perp_neg_view(PROMPT, 90.0 * i, 15.0, PerpNegCurves())
        e_0 = one(prior, z_t, ti, Condition(""))
        e_pos = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view")) - e_0
        total = e_pos.clone()
        for neg, w in zip(view.negatives, view.weights):
            e_neg = one(prior, z_t, ti, Condition(neg)) - e_0
            total += w * (e_neg - (e_neg * e_pos).sum() / (e_pos * e_pos).sum() * e_pos)
        expected = (1 - a) * (e_0 + 100.0 * total - eps[i])
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-4)


def test_perp_neg_without_view_prompts_is_refused():
    with pytest.raises(UserError, match="view_dependent"):
        SDSConfig(perp_neg=True, view_dependent=False)
