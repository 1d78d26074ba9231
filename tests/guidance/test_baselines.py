"""SDS-Bridge, CSD, NFSD, ISM and DDS: the contract and each one's equation by hand."""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from distill3d.guidance.base import AnnealedTimesteps
from distill3d.guidance.csd import CSD
from distill3d.guidance.dds import DDS
from distill3d.guidance.ism import ISM, ISMConfig
from distill3d.guidance.nfsd import NFSD, NFSDConfig
from distill3d.guidance.sds_bridge import SOURCE_PROMPT, SDSBridge, SDSBridgeConfig
from distill3d.priors.base import Condition

from .contract import PROMPT, GuidanceContract, make_input
from .contract import SOURCE_PROMPT as EDIT_SOURCE
from .helpers import VIEW_NAMES, abar, noised, one, replay
from .tiny_prior import TinyPrior


class TestSDSBridgeContract(GuidanceContract):
    def make_method(self):
        return SDSBridge()


class TestCSDContract(GuidanceContract):
    def make_method(self):
        return CSD()


class TestNFSDContract(GuidanceContract):
    def make_method(self):
        return NFSD()


class TestISMContract(GuidanceContract):
    def make_method(self):
        return ISM(ISMConfig(inversion_steps=3))


class TestDDSContract(GuidanceContract):
    with_source = True

    def make_method(self):
        return DDS()


def _views(method, seed, prior=None, inp=None):
    prior = prior or TinyPrior()
    inp = inp or make_input(prior)
    out = method(prior, inp, torch.Generator().manual_seed(seed))
    t, eps = replay(prior, method.config.timesteps, inp, seed)
    assert torch.equal(out.t, t)
    for i in range(inp.latents.shape[0]):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        yield out, prior, inp, i, ti, a, eps[i]


def test_sds_bridge_by_hand():
    for out, prior, inp, i, ti, a, eps in _views(SDSBridge(), 1):
        z_t = noised(inp.latents[i].detach(), eps, a)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_s, e_0 = one(prior, z_t, ti, Condition(SOURCE_PROMPT)), one(prior, z_t, ti, Condition(""))
        expected = (1 - a) * ((e_0 + 40 * (e_y - e_0)) - (e_0 + 40 * (e_s - e_0)))
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-5, atol=1e-5)
    assert SDSBridgeConfig().source_prompt.startswith("oversaturated, smooth")


def test_csd_by_hand():
    for out, prior, inp, i, ti, a, eps in _views(CSD(), 2):
        z_t = noised(inp.latents[i].detach(), eps, a)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        expected = (1 - a) * 7.5 * (e_y - one(prior, z_t, ti, Condition("")))
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-5, atol=1e-5)


def test_nfsd_by_hand_on_both_sides_of_t_200():
    for t_frac in (0.1, 0.5):  # t = 100 (δ_D = ε̂(∅)) and t = 500 (δ_D = ε̂(∅) − ε̂(y_neg))
        method = NFSD(NFSDConfig(timesteps=AnnealedTimesteps(t_frac, t_frac)))
        for out, prior, inp, i, ti, a, eps in _views(method, 3):
            z_t = noised(inp.latents[i].detach(), eps, a)
            e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
            e_0 = one(prior, z_t, ti, Condition(""))
            e_neg = one(prior, z_t, ti, Condition(method.config.negative_prompt))
            delta_d = e_0 if ti < 200 else e_0 - e_neg
            torch.testing.assert_close(out.grad[i], (1 - a) * (delta_d + 7.5 * (e_y - e_0)), rtol=1e-5, atol=1e-5)


def test_ism_by_hand():
    k, delta = 3, 200
    method = ISM(ISMConfig(inversion_steps=k, delta=delta))
    for out, prior, inp, i, ti, a, _ in _views(method, 4):
        s = max(ti - delta, 0)

        def step(z, eps_hat, t_from, t_to, prior=prior):  # DDIM: √ᾱ_to x̂0 + √(1−ᾱ_to) ε̂
            af, at = abar(prior, t_from), abar(prior, t_to)
            return math.sqrt(at) * (z - math.sqrt(1 - af) * eps_hat) / math.sqrt(af) + math.sqrt(1 - at) * eps_hat

        z = inp.latents[i].detach()
        taus = [s * j // k for j in range(k + 1)]
        for t_from, t_to in pairwise(taus):
            z = step(z, one(prior, z, t_from, Condition("")), t_from, t_to)
        e_s = one(prior, z, s, Condition(""))
        z_t = step(z, e_s, s, ti)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_0 = one(prior, z_t, ti, Condition(""))
        expected = math.sqrt((1 - a) / a) * ((e_0 + 7.5 * (e_y - e_0)) - e_s)
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-4)
    assert out.num_prior_calls == k + 2


def test_dds_by_hand():
    tiny = TinyPrior()
    views = _views(DDS(), 5, tiny, make_input(tiny, with_source=True))
    for out, prior, inp, i, ti, a, eps in views:
        zt_tgt = noised(inp.latents[i].detach(), eps, a)
        zt_src = noised(inp.source_latents[i], eps, a)
        e_t, e_t0 = one(prior, zt_tgt, ti, Condition(PROMPT)), one(prior, zt_tgt, ti, Condition(""))
        e_s, e_s0 = one(prior, zt_src, ti, Condition(EDIT_SOURCE)), one(prior, zt_src, ti, Condition(""))
        expected = (1 - a) * ((e_t0 + 100 * (e_t - e_t0)) - (e_s0 + 100 * (e_s - e_s0)))
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-4)
