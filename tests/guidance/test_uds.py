from __future__ import annotations

import math
from itertools import pairwise

import torch

from distill3d.guidance.base import AnnealedTimesteps
from distill3d.guidance.uds import UDS, UDSConfig, UDSEdit, UDSEditConfig
from distill3d.priors.base import Condition

from .contract import PROMPT, SOURCE_PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar, noised, one, replay, x0
from .tiny_prior import TinyPrior


class TestUDSContract(GuidanceContract):
    def make_method(self):
        return UDS()


class TestUDSNegativeContract(GuidanceContract):
    def make_method(self):
        return UDS(UDSConfig(negative_prompt="blurry"))


class TestUDSEditContract(GuidanceContract):
    with_source = True

    def make_method(self):
        return UDSEdit()


class TestUDSEditDDIMContract(GuidanceContract):
    with_source = True

    def make_method(self):
        return UDSEdit(UDSEditConfig(x0_steps=3))


def _check_generation(negative: str | None, seed: int) -> None:
    prior = TinyPrior()
    inp = make_input(prior)
    cfg = UDSConfig(negative_prompt=negative, interval=90)
    out = UDS(cfg)(prior, inp, torch.Generator().manual_seed(seed))
    t, eps = replay(prior, cfg.timesteps, inp, seed)
    assert torch.equal(out.t, t)
    for i in range(3):
        ti = int(t[i])
        tp = max(ti - 90, 0)
        a, ap = abar(prior, ti), abar(prior, tp)
        z = inp.latents[i].detach()
        z_t, z_p = noised(z, eps[i], a), noised(z, eps[i], ap)  # one ε for both
        x0_t = x0(z_t, one(prior, z_t, ti, Condition("")), a)
        x0_p = x0(z_p, one(prior, z_p, tp, Condition("")), ap)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_0 = one(prior, z_t, ti, Condition(""))
        cls = e_y - e_0  # δ_cls(z_t; y)
        if negative is not None:
            cls = cls - (one(prior, z_t, ti, Condition(negative)) - e_0)  # Eq. 17
        expected = (1 - a) * ((x0_t - x0_p) + 7.5 * cls)  # Eq. 16: x̂0^t − x̂0^{t−c}
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-4)


def test_uds_generation_is_eq16():
    _check_generation(None, 3)


def test_uds_generation_with_negative_prompt_is_eq17():
    _check_generation("blurry", 4)


def test_uds_clamps_t_minus_c_at_zero():
    prior = TinyPrior()
    inp = make_input(prior)
    cfg = UDSConfig(interval=90, timesteps=AnnealedTimesteps(0.05, 0.05))  # t = 50 < c
    out = UDS(cfg)(prior, inp, torch.Generator())
    assert (out.t == 50).all() and torch.isfinite(out.grad).all()


def test_uds_edit_is_eq14():
    prior = TinyPrior()
    inp = make_input(prior, with_source=True)
    cfg = UDSEditConfig()
    out = UDSEdit(cfg)(prior, inp, torch.Generator().manual_seed(5))
    t, eps = replay(prior, cfg.timesteps, inp, 5)
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        zt_tgt = noised(inp.latents[i].detach(), eps[i], a)
        zt_src = noised(inp.source_latents[i], eps[i], a)  # same ε, same t
        e_tgt0, e_src0 = one(prior, zt_tgt, ti, Condition("")), one(prior, zt_src, ti, Condition(""))
        d_tgt = one(prior, zt_tgt, ti, Condition(PROMPT)) - e_tgt0
        d_src = one(prior, zt_src, ti, Condition(SOURCE_PROMPT)) - e_src0
        expected = (1 - a) * ((x0(zt_tgt, e_tgt0, a) - x0(zt_src, e_src0, a)) + 7.5 * (d_tgt - d_src))
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-4)


def test_uds_edit_of_an_unchanged_asset_with_the_same_prompt_is_zero():
    prior = TinyPrior()
    inp = make_input(prior)
    inp.source_latents, inp.source_prompt = inp.latents.detach().clone(), PROMPT
    out = UDSEdit()(prior, inp, torch.Generator())
    assert out.grad.abs().max() == 0


def test_uds_edit_ddim_x0_is_eq15_iterated_to_zero():
    prior = TinyPrior()
    inp = make_input(prior, with_source=True)
    cfg = UDSEditConfig(x0_steps=3)
    out = UDSEdit(cfg)(prior, inp, torch.Generator().manual_seed(6))
    t, eps = replay(prior, cfg.timesteps, inp, 6)
    assert out.num_prior_calls == 3 and out.num_prior_evals == 4 * 3 + 2 * 2 * 3

    def ddim_x0(z_t, ti):  # Eq. 15 with ε̂(∅): t -> ⌊2t/3⌋ -> ⌊t/3⌋, then x̂0
        taus = [ti, ti * 2 // 3, ti // 3]
        z = z_t
        for a_, b_ in pairwise(taus):
            e = one(prior, z, a_, Condition(""))
            z = math.sqrt(abar(prior, b_)) * x0(z, e, abar(prior, a_)) + math.sqrt(1 - abar(prior, b_)) * e
        return x0(z, one(prior, z, taus[-1], Condition("")), abar(prior, taus[-1]))

    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        zt_tgt = noised(inp.latents[i].detach(), eps[i], a)
        zt_src = noised(inp.source_latents[i], eps[i], a)
        d_tgt = one(prior, zt_tgt, ti, Condition(PROMPT)) - one(prior, zt_tgt, ti, Condition(""))
        d_src = one(prior, zt_src, ti, Condition(SOURCE_PROMPT)) - one(prior, zt_src, ti, Condition(""))
        expected = (1 - a) * ((ddim_x0(zt_tgt, ti) - ddim_x0(zt_src, ti)) + 7.5 * (d_tgt - d_src))
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-4)


class TestUDSDDIMGenerationContract(GuidanceContract):
    def make_method(self):
        return UDS(UDSConfig(x0_steps=3, reconstruction="reversed"))


def _ddim_x0(prior, z_t, ti, k):
    """Eq. 15 with ε̂(∅) on the grid t → ⌊t(k−1)/k⌋ → … → ⌊t/k⌋, then x̂0 (k = 1: Tweedie, Eq. 10)."""
    taus = [ti * (k - j) // k for j in range(k)]
    z = z_t
    for a_, b_ in pairwise(taus):
        e = one(prior, z, a_, Condition(""))
        z = math.sqrt(abar(prior, b_)) * x0(z, e, abar(prior, a_)) + math.sqrt(1 - abar(prior, b_)) * e
    return x0(z, one(prior, z, taus[-1], Condition("")), abar(prior, taus[-1]))


def test_uds_generation_ddim_x0_is_eq15_for_both_noise_levels():
    """Alg. 1 line 17: x̂0^t and x̂0^{t−c} "via Eq. (10) or Eq. (15)"; K calls per step."""
    prior = TinyPrior()
    inp = make_input(prior)
    cfg = UDSConfig(interval=90, x0_steps=3)
    out = UDS(cfg)(prior, inp, torch.Generator().manual_seed(8))
    t, eps = replay(prior, cfg.timesteps, inp, 8)
    assert out.num_prior_calls == 3 and out.num_prior_evals == 3 * 3 + 2 * 2 * 3
    for i in range(3):
        ti = int(t[i])
        tp = max(ti - 90, 0)
        a, ap = abar(prior, ti), abar(prior, tp)
        z = inp.latents[i].detach()
        z_t, z_p = noised(z, eps[i], a), noised(z, eps[i], ap)
        recon = _ddim_x0(prior, z_t, ti, 3) - _ddim_x0(prior, z_p, tp, 3)
        cls = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view")) - one(prior, z_t, ti, Condition(""))
        torch.testing.assert_close(out.grad[i], (1 - a) * (recon + 7.5 * cls), rtol=1e-4, atol=1e-4)
        tweedie = x0(z_t, one(prior, z_t, ti, Condition("")), a) - x0(z_p, one(prior, z_p, tp, Condition("")), ap)
        assert (recon - tweedie).abs().max() > 1e-3  # the DDIM x̂0 is another estimate


def test_uds_reversed_reconstruction_flips_only_that_term():
    prior = TinyPrior()
    inp = make_input(prior)
    paper = UDS(UDSConfig())(prior, inp, torch.Generator().manual_seed(9))
    flipped = UDS(UDSConfig(reconstruction="reversed"))(prior, inp, torch.Generator().manual_seed(9))
    torch.testing.assert_close(flipped.extras.recon_norm, paper.extras.recon_norm)
    torch.testing.assert_close(flipped.extras.cls_norm, paper.extras.cls_norm)
    # g = w(Δx̂0 + s δ): the two gradients add to 2 w s δ and differ by 2 w Δx̂0
    t, eps = replay(prior, UDSConfig().timesteps, inp, 9)
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        cls = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view")) - one(prior, z_t, ti, Condition(""))
        torch.testing.assert_close(paper.grad[i] + flipped.grad[i], 2 * (1 - a) * 7.5 * cls, rtol=1e-4, atol=1e-4)
    assert (paper.grad - flipped.grad).abs().max() > 1e-3
