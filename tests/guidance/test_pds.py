"""PDS: the contract, the stochastic latents of Eq. 8 by hand in both forms, and what they reduce to."""

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
    paper = PDS(PDSConfig(timesteps=sched))(prior, inp, torch.Generator().manual_seed(0))
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
