from __future__ import annotations

import torch

from distill3d.guidance.base import Constant
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
