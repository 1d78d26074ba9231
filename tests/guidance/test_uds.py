from __future__ import annotations

import dataclasses
import math
from itertools import pairwise

import pytest
import torch

from distill3d.core.cameras import Cameras
from distill3d.guidance.base import AnnealedTimesteps, GuidanceInput
from distill3d.guidance.sds import SDS, SDSConfig
from distill3d.guidance.uds import UDS, UDSConfig, UDSEdit, UDSEditConfig
from distill3d.pipeline.presets import find_preset
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
    cfg = UDSConfig(negative_prompt=negative, interval=90, reconstruction="paper")
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
    cfg = UDSConfig(interval=90, x0_steps=3, reconstruction="paper")
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
    paper = UDS(UDSConfig(reconstruction="paper"))(prior, inp, torch.Generator().manual_seed(9))
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


# ---- the reconstruction term alone on exact scores of a 1-D Gaussian ------------------------------------------
# Data N(m, 1), m = 2, on Stable Diffusion's scaled-linear schedule (written out here). z_t = √ᾱ x + √(1−ᾱ) ε is
# N(√ᾱ m, 1) whatever ᾱ, so the exact ε-prediction is ε̂(z_t) = −√(1−ᾱ) ∇log p_t = √(1−ᾱ)(z_t − √ᾱ m), and Tweedie's
# x̂0 = (z_t − √(1−ᾱ) ε̂)/√ᾱ = m + ᾱ(x − m) + √(ᾱ(1−ᾱ)) ε. With one ε for both levels, the expected terms are
#   SDS:                E[ε̂ − ε]           = √(ᾱ(1−ᾱ)) (x − m)
#   UDS "reversed":     E[x̂0^{t−c} − x̂0^t] = (ᾱ_{t−c} − ᾱ_t)(x − m)      > 0 ·(x − m): toward m
#   UDS "paper":        E[x̂0^t − x̂0^{t−c}] = −(ᾱ_{t−c} − ᾱ_t)(x − m)    away from m
# Each is r(t)·(x − m) and t, ε are drawn independently of x, so gradient descent x ← x − lr·w(t)·term has
# E[x_N] − m = (x_0 − m)·(1 − lr·E_t[w r])^N exactly. From x_0 = −3 (lr 0.2, 200 steps, c = 80, t ~ U{20..980},
# w = 1 − ᾱ): SDS 2.00, "reversed" 1.18 (one particle: ≈ 1.06-1.23, the 1.06), "paper" −28.1 (the
# issue's −24.5). A sign error in the term cannot pass.
GAUSS_M, LR, STEPS, START = 2.0, 0.2, 200, -3.0
SD_ABAR = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2, 0)


class _Gaussian1D:
    """Exact scores of N(2, 1) data in a [N, 1, 1, 1] latent; text, cameras and images are ignored (δ_cls = 0)."""

    num_timesteps = 1000
    image_size = 1
    alphas_cumprod = SD_ABAR.float()
    device = torch.device("cpu")

    def encode(self, images):
        return images

    def decode(self, latents):
        return latents

    def predict_noise(self, z_t, t, conditions):
        a = self.alphas_cumprod[t][:, None, None, None]
        return (1 - a).sqrt() * (z_t - a.sqrt() * GAUSS_M)


def _expected_end(sign: float, term) -> float:
    """m + (x_0 − m)(1 − sign·lr·E_t[w(t) r(t)])^N with t uniform on {20, …, 980} (U[0.02, 0.98] of T)."""
    t = torch.arange(20, 981)
    a, a_prev = SD_ABAR[t], SD_ABAR[(t - 80).clamp(min=0)]
    rate = float(((1 - a) * term(a, a_prev)).mean())
    return GAUSS_M + (START - GAUSS_M) * (1 - sign * LR * rate) ** STEPS


def _end(method, n: int = 64) -> float:
    """The mean over n particles from x_0 = −3 after gradient descent with the method's gradient."""
    prior, x = _Gaussian1D(), torch.full((n, 1, 1, 1), START)
    cams = Cameras.from_angles([360.0 * i / n for i in range(n)], 15.0)
    g = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        x = x - LR * method(prior, GuidanceInput(x, x, cams, PROMPT, step, STEPS), g).grad
    return float(x.mean())


def _recon(a, a_prev):
    return a_prev - a  # ᾱ_{t−c} − ᾱ_t


@pytest.mark.parametrize("method, sign, term, closed_form", [
    (SDS(SDSConfig()), 1, lambda a, a_prev: (a * (1 - a)).sqrt(), 2.00),  # the prior ignores y: ε̂_cfg = ε̂
    (UDS(UDSConfig(guidance_scale=0.0, interval=80, reconstruction="reversed")), 1, _recon, 1.18),
    (UDS(UDSConfig(guidance_scale=0.0, interval=80, reconstruction="paper")), -1, _recon, -28.1),
], ids=["sds", "uds-reversed", "uds-paper"])
def test_reconstruction_term_alone_on_exact_gaussian_scores(method, sign, term, closed_form):
    """SDS reaches the mode, UDS's "reversed" order moves toward it, the "paper" order (Eq. 16 as printed)
    walks away: each method's particles end where the closed form says."""
    expected = _expected_end(sign, term)
    assert expected == pytest.approx(closed_form, abs=0.05)
    assert abs(_end(method) - expected) < 0.05 * abs(expected - GAUSS_M) + 0.01


def test_default_reconstruction_moves_toward_the_mode():
    """The default order is the one whose reconstruction term alone seeks the data's mode (issue 20)."""
    end = _end(UDS(UDSConfig(guidance_scale=0.0)))
    assert START < end < GAUSS_M and end == pytest.approx(_expected_end(1, _recon), abs=0.1)


@pytest.mark.parametrize("name", ["uds-paper", "uds-paper-toy"])
def test_uds_paper_preset_keeps_the_order_that_seeks_the_mode(name):
    """The preset keeps the paper's numbers (c = 80 here too) but not Eq. 16's printed order (issue 20)."""
    config = dataclasses.replace(find_preset(name).method_config, guidance_scale=0.0)
    assert config.interval == 80
    assert _end(UDS(config)) == pytest.approx(_expected_end(1, _recon), abs=0.1)
