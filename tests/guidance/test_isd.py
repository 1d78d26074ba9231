from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from distill3d.guidance.base import Constant
from distill3d.guidance.isd import ISD, ISDConfig
from distill3d.priors.base import Condition

from .contract import PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar, noised, one, replay
from .tiny_prior import TinyPrior


def _reference() -> torch.Tensor:
    return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(42))


class TestISDContract(GuidanceContract):
    def make_method(self):
        return ISD(reference=_reference())


class TestIPSDSContract(GuidanceContract):
    def make_method(self):
        return ISD(ISDConfig(mode="ip-sds", beta=None), reference=_reference())


def test_isd_is_eq7_plus_eq8_weighted_by_eq9():
    prior = TinyPrior()
    inp = make_input(prior, step=25, total_steps=101)
    ref = _reference()
    out = ISD(reference=ref)(prior, inp, torch.Generator().manual_seed(6))
    t, eps = replay(prior, ISDConfig().timesteps, inp, 6)
    alpha, beta = 0.4 + 0.4 * 25 / 100, 0.6 - 0.58 * 25 / 100
    assert out.extras.alpha == pytest.approx(alpha) and out.extras.beta == pytest.approx(beta)
    assert out.num_prior_calls == 1 and out.num_prior_evals == 5 * 3
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        y = f"{PROMPT}, {VIEW_NAMES[i]} view"
        e_ip = one(prior, z_t, ti, Condition(y, ref, 0.5))
        e_y = one(prior, z_t, ti, Condition(y))
        e_0 = one(prior, z_t, ti, Condition(""))
        cam = (90.0 * i, 15.0)
        e_mv = one(prior, z_t, ti, Condition(PROMPT, camera=cam))
        e_mv0 = one(prior, z_t, ti, Condition("", camera=cam))
        g_isd = (1 - a) * ((e_0 + 7.5 * (e_ip - e_0)) - (e_0 + 7.5 * (e_y - e_0)))  # Eq. 7
        g_mv = (1 - a) * ((e_mv0 + 50.0 * (e_mv - e_mv0)) - eps[i])  # Eq. 8
        torch.testing.assert_close(out.grad[i], alpha * g_isd + beta * g_mv, rtol=1e-5, atol=1e-5)  # Eq. 9
        torch.testing.assert_close(out.extras.isd_norm[i], g_isd.norm(), rtol=1e-5, atol=1e-6)


def test_ip_sds_uses_noise_as_control_variate():
    prior = TinyPrior()
    inp = make_input(prior)
    ref = _reference()
    cfg = ISDConfig(mode="ip-sds", beta=None, alpha=Constant(1.0))
    out = ISD(cfg, reference=ref)(prior, inp, torch.Generator().manual_seed(8))
    t, eps = replay(prior, cfg.timesteps, inp, 8)
    assert out.num_prior_evals == 2 * 3
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        e_ip = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view", ref, 0.5))
        e_0 = one(prior, z_t, ti, Condition(""))
        torch.testing.assert_close(out.grad[i], (1 - a) * (e_0 + 7.5 * (e_ip - e_0) - eps[i]), rtol=1e-5, atol=1e-5)


def test_alpha_beta_schedules_over_training():
    cfg = ISDConfig()
    total = 6000
    assert cfg.alpha(0, total) == pytest.approx(0.4) and cfg.alpha(total - 1, total) == pytest.approx(0.8)
    assert cfg.beta(0, total) == pytest.approx(0.6) and cfg.beta(total - 1, total) == pytest.approx(0.02)
    alphas = [cfg.alpha(s, total) for s in range(0, total, 500)]
    betas = [cfg.beta(s, total) for s in range(0, total, 500)]
    assert all(b > a for a, b in pairwise(alphas)) and all(b < a for a, b in pairwise(betas))


def test_isd_without_multiview_term_and_without_reference():
    prior = TinyPrior()
    inp = make_input(prior)
    out = ISD(ISDConfig(beta=None), reference=_reference())(prior, inp, torch.Generator().manual_seed(0))
    assert out.num_prior_evals == 3 * 3 and out.extras.beta == 0.0
    with pytest.raises(ValueError, match="reference"):
        ISD()(prior, inp, torch.Generator())
    method = ISD()
    method.set_reference(_reference())
    assert torch.isfinite(method(prior, inp, torch.Generator()).grad).all()


def test_setup_samples_the_reference_once_and_the_state_dict_keeps_it():
    prior = TinyPrior()
    method = ISD()
    method.setup(prior, PROMPT, seed=0)
    ref = method.reference
    assert ref.shape == (3, 16, 16) and 0 <= ref.min() and ref.max() <= 1
    method.setup(prior, PROMPT, seed=1)
    assert method.reference is ref  # made once: a given or restored reference is kept
    other = ISD()
    other.load_state_dict(prior, method.state_dict(prior))
    assert torch.equal(other.reference, ref)
    with pytest.raises(ValueError, match="reference"):
        ISD()(prior, make_input(prior), torch.Generator())


class TestISDZeroImageContract(GuidanceContract):
    def make_method(self):
        return ISD(ISDConfig(unconditional="zero-image"), reference=_reference())


def test_zero_image_unconditional_is_diffusers_ip_adapter_cfg():
    """ε̂_IP,cfg = ε̂(∅, 0) + s(ε̂(y, x_ref) − ε̂(∅, 0)) with the zero image at the same λ_ip; one more row."""
    prior = TinyPrior()
    inp = make_input(prior)
    ref = _reference()
    cfg = ISDConfig(unconditional="zero-image", beta=None, alpha=Constant(1.0))
    out = ISD(cfg, reference=ref)(prior, inp, torch.Generator().manual_seed(3))
    text = ISD(ISDConfig(beta=None, alpha=Constant(1.0)), reference=ref)(prior, inp, torch.Generator().manual_seed(3))
    assert out.num_prior_evals == 4 * 3 and text.num_prior_evals == 3 * 3
    t, eps = replay(prior, cfg.timesteps, inp, 3)
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        y = f"{PROMPT}, {VIEW_NAMES[i]} view"
        e_ip, e_y = one(prior, z_t, ti, Condition(y, ref, 0.5)), one(prior, z_t, ti, Condition(y))
        e_0, e_0img = one(prior, z_t, ti, Condition("")), one(prior, z_t, ti, Condition("", torch.zeros_like(ref), 0.5))
        expected = (1 - a) * ((e_0img + 7.5 * (e_ip - e_0img)) - (e_0 + 7.5 * (e_y - e_0)))  # Eq. 7
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-5, atol=1e-5)
    assert (out.grad - text.grad).abs().max() > 1e-4  # the two unconditionals differ
