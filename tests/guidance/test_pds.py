"""PDS: the contract, the stochastic latents of Eq. 8 by hand in both forms, what they reduce to, and both forms
derived from the DDPM posterior on Stable Diffusion's schedule written out here."""

from __future__ import annotations

import math

import pytest
import torch

from distill3d.guidance.base import AnnealedTimesteps
from distill3d.guidance.pds import PDS, PDSConfig
from distill3d.priors.base import Condition

from .contract import PROMPT, SOURCE_PROMPT, GuidanceContract, make_input
from .helpers import abar, noised, one, replay, x0
from .tiny_prior import TinyPrior


class TestPDSContract(GuidanceContract):
    with_source = True

    def make_method(self):
        return PDS()


class TestPDSCodeFormContract(GuidanceContract):
    with_source = True

    def make_method(self):
        return PDS(PDSConfig(form="code"))


def _by_hand(form: str, seed: int):
    prior = TinyPrior()
    inp = make_input(prior, with_source=True)
    cfg = PDSConfig(form=form)
    out = PDS(cfg)(prior, inp, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    t = cfg.timesteps.sample(inp.step, inp.total_steps, 3, prior.num_timesteps, g)
    eps = torch.randn(inp.latents.shape, generator=g)  # ε_t, shared
    eps_prev = torch.randn(inp.latents.shape, generator=g)  # ε_{t'}, shared
    assert torch.equal(out.t, t)
    for i in range(3):
        ti = int(t[i])
        tp = ti - 1 if form == "paper" else ti - 2
        a, ap, a1 = abar(prior, ti), abar(prior, tp), abar(prior, ti - 1)
        beta = 1 - a / a1  # the one-step β_t of DDPM (both forms use it; only t' differs)
        c0 = math.sqrt(ap) * beta / (1 - a)
        c1 = math.sqrt(1 - beta) * (1 - ap) / (1 - a)
        sigma = math.sqrt((1 - ap) / (1 - a) * beta)
        z = []
        for x0_, y in ((inp.latents[i].detach(), PROMPT), (inp.source_latents[i], SOURCE_PROMPT)):
            x_t = noised(x0_, eps[i], a)
            e_y, e_0 = one(prior, x_t, ti, Condition(y)), one(prior, x_t, ti, Condition(""))
            mu = c0 * x0(x_t, e_0 + 100 * (e_y - e_0), a) + c1 * x_t
            z.append((noised(x0_, eps_prev[i], ap) - mu) / sigma)  # Eq. 8
        torch.testing.assert_close(out.grad[i], z[0] - z[1], rtol=1e-4, atol=1e-4)
    return prior, inp, out, t


def test_pds_paper_form_is_eq8_with_the_exact_one_step_posterior():
    _by_hand("paper", 3)


def test_pds_code_form_is_the_authors_two_step_grid_with_one_step_beta():
    _by_hand("code", 4)


def test_paper_form_reduces_to_a_t_weighted_dds_and_the_code_form_adds_an_identity_term():
    prior = TinyPrior()
    inp = make_input(prior, with_source=True)
    sched = AnnealedTimesteps(0.4, 0.4)  # t = 400 for every view
    paper = PDS(PDSConfig(form="paper", timesteps=sched))(prior, inp, torch.Generator().manual_seed(0))
    code = PDS(PDSConfig(form="code", timesteps=sched))(prior, inp, torch.Generator().manual_seed(0))
    a, a1, a2 = abar(prior, 400), abar(prior, 399), abar(prior, 398)
    eps = replay(prior, sched, inp, 0)[1]
    dds = []
    for i in range(3):
        x_tgt, x_src = noised(inp.latents[i].detach(), eps[i], a), noised(inp.source_latents[i], eps[i], a)
        cfg = []
        for x, y in ((x_tgt, PROMPT), (x_src, SOURCE_PROMPT)):
            e_y, e_0 = one(prior, x, 400, Condition(y)), one(prior, x, 400, Condition(""))
            cfg.append(e_0 + 100 * (e_y - e_0))
        dds.append(cfg[0] - cfg[1])
    dds = torch.stack(dds)
    beta = 1 - a / a1
    chi = (math.sqrt(a1) * beta / (1 - a)) * math.sqrt((1 - a) / a) / math.sqrt((1 - a1) / (1 - a) * beta)
    torch.testing.assert_close(paper.grad, chi * dds, rtol=1e-3, atol=1e-4)  # the x0 parts cancel
    c0 = math.sqrt(a2) * beta / (1 - a)
    c1 = math.sqrt(1 - beta) * (1 - a2) / (1 - a)
    sigma = math.sqrt((1 - a2) / (1 - a) * beta)
    psi = (math.sqrt(a2) - c0 - c1 * math.sqrt(a)) / sigma
    chi_code = c0 * math.sqrt((1 - a) / a) / sigma
    assert psi > 0  # pulls the edit toward the source
    identity = inp.latents.detach() - inp.source_latents
    torch.testing.assert_close(code.grad, psi * identity + chi_code * dds, rtol=1e-3, atol=1e-4)


def test_pds_of_an_unchanged_asset_with_the_same_prompt_is_zero():
    prior = TinyPrior()
    inp = make_input(prior)
    inp.source_latents, inp.source_prompt = inp.latents.detach().clone(), PROMPT
    for form in ("paper", "code"):
        assert PDS(PDSConfig(form=form))(prior, inp, torch.Generator()).grad.abs().max() == 0


def test_pds_refuses_t_zero():
    prior = TinyPrior()
    with pytest.raises(ValueError, match="t >= 1"):
        PDS(PDSConfig(timesteps=AnnealedTimesteps(0.0, 0.0)))(prior, make_input(prior, with_source=True),
                                                               torch.Generator())


# ---- both forms from the DDPM posterior, by hand ------------------------------------------------------------
# Stable Diffusion's "scaled_linear" schedule, written out (not the library's): β_t linear in √ from 0.00085 to
# 0.012 over T = 1000. The ψ values the issue quotes (1.12 at t = 30, 0.14 at 200) are on this schedule (SD's,
# the one the authors' code runs on); the embedded toy prior's cosine schedule gives ψ(30) ≈ 3.97, ψ(200) ≈ 0.29.
SD_BETAS = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
SD_ABAR = torch.cumprod(1 - SD_BETAS, 0)


class _ZeroPrior:
    """ε̂ ≡ 0 on SD's schedule: x̂0 = x_t/√ᾱ_t, so z^tgt − z^src keeps only the x0 parts of the posterior —
    the identity term ψ(t)(x0^tgt − x0^src) and nothing else (ε_t and ε_{t'} are shared and cancel)."""

    num_timesteps = 1000
    image_size = 2
    alphas_cumprod = SD_ABAR.float()
    device = torch.device("cpu")

    def encode(self, images):
        return 2 * images - 1

    def decode(self, latents):
        return (latents + 1) / 2

    def predict_noise(self, z_t, t, conditions):
        return torch.zeros_like(z_t)


def _posterior(t: int, t_prev: int, beta: float) -> tuple[float, float, float]:
    """c0, c1, σ of μ = c0 x0 + c1 x_t for a step t → t' with the given β (α = 1 − β), DDPM's Eq. 7:
    c0 = √ᾱ_{t'} β / (1−ᾱ_t), c1 = √α (1−ᾱ_{t'}) / (1−ᾱ_t), σ² = (1−ᾱ_{t'}) β / (1−ᾱ_t)."""
    a, ap = float(SD_ABAR[t]), float(SD_ABAR[t_prev])
    return (math.sqrt(ap) * beta / (1 - a), math.sqrt(1 - beta) * (1 - ap) / (1 - a),
            math.sqrt((1 - ap) * beta / (1 - a)))


def _psi(t: int, t_prev: int, beta: float) -> float:
    """The x0 coefficient of z = (x_{t'} − μ)/σ: x_{t'} brings √ᾱ_{t'} x0, μ brings c0 x0 + c1 √ᾱ_t x0."""
    c0, c1, sigma = _posterior(t, t_prev, beta)
    return (math.sqrt(float(SD_ABAR[t_prev])) - c0 - c1 * math.sqrt(float(SD_ABAR[t]))) / sigma


def _zero_prior_grad(form: str | None, t: int):
    prior = _ZeroPrior()
    inp = make_input(prior, with_source=True)
    sched = AnnealedTimesteps(t / 1000, t / 1000)
    cfg = PDSConfig(timesteps=sched) if form is None else PDSConfig(form=form, timesteps=sched)
    out = PDS(cfg)(prior, inp, torch.Generator().manual_seed(0))
    assert (out.t == t).all()
    return out.grad.double(), (inp.latents.detach() - inp.source_latents).double()


def test_exact_one_step_posterior_has_no_identity_term_and_the_code_form_has_psi():
    """q(x_{t'} | x_t, x0) is exact when β is the step's own β_{t'→t} = 1 − ᾱ_t/ᾱ_{t'}: then c0 + c1√ᾱ_t =
    √ᾱ_{t'} and ψ = 0, so the paper form (t' = t − 1) has no identity term. The authors' pds.py steps t → t − 2
    on its 500-step grid but takes scheduler.betas[t], the ONE-step β_t = 1 − ᾱ_t/ᾱ_{t−1}: ψ > 0."""
    for t in (30, 200):
        one_step_beta = 1 - float(SD_ABAR[t] / SD_ABAR[t - 1])
        two_step_beta = 1 - float(SD_ABAR[t] / SD_ABAR[t - 2])
        assert abs(_psi(t, t - 1, one_step_beta)) < 1e-9  # the exact posterior of the paper form
        assert abs(_psi(t, t - 2, two_step_beta)) < 1e-9  # the exact two-step posterior: no term either
    assert _psi(30, 28, 1 - float(SD_ABAR[30] / SD_ABAR[29])) == pytest.approx(1.12, abs=0.005)
    assert _psi(200, 198, 1 - float(SD_ABAR[200] / SD_ABAR[199])) == pytest.approx(0.14, abs=0.005)


@pytest.mark.parametrize("t, psi", [(30, 1.12), (200, 0.14)])
def test_default_form_is_the_authors_code_with_its_identity_term(t, psi):
    """With ε̂ ≡ 0 the gradient is exactly ψ(t)(x0^tgt − x0^src): ψ(30) ≈ 1.12, ψ(200) ≈ 0.14 by default (the
    code form), 0 in the paper form."""
    want = _psi(t, t - 2, 1 - float(SD_ABAR[t] / SD_ABAR[t - 1]))
    assert want == pytest.approx(psi, abs=0.005)
    grad, diff = _zero_prior_grad(None, t)
    torch.testing.assert_close(grad, want * diff, rtol=1e-4, atol=1e-5)
    paper, _ = _zero_prior_grad("paper", t)
    assert paper.abs().max() < 1e-4 * diff.abs().max()
