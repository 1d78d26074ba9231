from __future__ import annotations

import math

import torch

from distill3d.guidance.sdi import SDI, SDIConfig, posterior_std
from distill3d.priors.base import Condition

from .contract import PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar, one
from .tiny_prior import TinyPrior


class TestSDIContract(GuidanceContract):
    def make_method(self):
        return SDI(SDIConfig(inversion_steps=3))


class TestSDINoEtaContract(GuidanceContract):
    def make_method(self):
        return SDI(SDIConfig(inversion_steps=2, inversion_eta=0.0))


def _cfg(prior, z, t, y, s):
    return one(prior, z, t, Condition("")) + s * (one(prior, z, t, Condition(y)) - one(prior, z, t, Condition("")))


def test_gradient_matches_hand_computation():
    """Replay t (then the unused ε), the jitter δ, then per inversion step the η-noise; invert by hand."""
    prior = TinyPrior()
    inp = make_input(prior, step=30, total_steps=100)
    c = SDIConfig(inversion_steps=3, perp_neg=False, guidance_scale=8.5, inversion_guidance_scale=-6.5)
    out = SDI(c)(prior, inp, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    t = c.timesteps.sample(inp.step, inp.total_steps, 3, 1000, g)
    torch.randn(inp.latents.shape, generator=g)  # SDS' ε, drawn and unused
    t = (t + torch.randint(0, 1000 // 3, (3,), generator=g)).clamp(max=999)
    xis = [torch.randn(inp.latents.shape, generator=g) for _ in range(3)]
    assert torch.equal(out.t, t)
    z = inp.latents.detach()
    for i in range(3):
        y, ti = f"{PROMPT}, {VIEW_NAMES[i]} view", int(t[i])
        zk = z[i]
        for k in range(3):
            tau, tau_next = ti * k // 3, ti * (k + 1) // 3
            a, a_next = abar(prior, tau), abar(prior, tau_next)
            e = _cfg(prior, zk, tau, y, -6.5)
            zk = math.sqrt(a_next) * (zk - math.sqrt(1 - a) * e) / math.sqrt(a) + math.sqrt(1 - a_next) * e
            sigma = float(posterior_std(torch.tensor([a]), torch.tensor([a_next]))[0])
            zk = zk + 0.3 * sigma * xis[k][i]
        a = abar(prior, ti)
        eps_inv = (zk - math.sqrt(a) * z[i]) / math.sqrt(1 - a)
        expected = (1 - a) * (_cfg(prior, zk, ti, y, 8.5) - eps_inv)
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-5)


def test_t_is_annealed_linearly_from_098_to_025_plus_a_jitter_below_the_stride():
    """configs/sdi.yaml: min_step_percent 0.25, max_step_percent 0.98, t_anneal: t = 0.98 − 0.73·p."""
    prior = TinyPrior()
    method = SDI()
    first = method(prior, make_input(prior, step=0, total_steps=101), torch.Generator().manual_seed(0)).t
    last = method(prior, make_input(prior, step=100, total_steps=101), torch.Generator().manual_seed(0)).t
    middle = method(prior, make_input(prior, step=50, total_steps=101), torch.Generator().manual_seed(0)).t
    assert ((first >= 980) & (first <= 999)).all()
    assert ((last >= 250) & (last < 350)).all()
    assert ((middle >= 615) & (middle < 715)).all()


def test_defaults_are_the_release_sdi_yaml():
    """configs/sdi.yaml: use_perp_neg true, whose code path is the standard CFG form, so guidance_scale 7.5 and
    inversion_guidance_scale −7.5 stand as they are; inversion_n_steps 10, inversion_eta 0.3."""
    c = SDIConfig()
    assert (c.guidance_scale, c.inversion_guidance_scale) == (7.5, -7.5)
    assert c.perp_neg and c.view_dependent and (c.inversion_steps, c.inversion_eta) == (10, 0.3)
    assert (c.timesteps.t_min, c.timesteps.t_max, c.timesteps.curve) == (0.25, 0.98, "linear")
    prior = TinyPrior()
    out = SDI()(prior, make_input(prior), torch.Generator().manual_seed(0))
    assert out.num_prior_calls == 11 and out.num_prior_evals == 11 * 4 * 3  # [y_v, ∅, y_1, y_2] per call
