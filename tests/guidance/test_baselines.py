"""SDS-Bridge, CSD, NFSD, ISM and DDS: the contract and each one's equation by hand."""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from distill3d.guidance.base import (
    AnnealedTimesteps,
    Constant,
    LinearRamp,
    MaxRampTimesteps,
    UniformTimesteps,
)
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
        return ISM(ISMConfig(max_inversion_steps=3))

    def test_counts_its_prior_calls(self):
        """Its inversion takes as many calls as strides to the largest s, at most max_inversion_steps."""
        prior = TinyPrior()
        method = self.make_method()
        out, _ = self._run(prior, method)
        s = (out.t - 99).clamp(min=0)  # δ = int(100 − 20·10/1500) = 99 at step 10 of the 1500-step anneal
        k = min(-(-int(s.max()) // 200), 3)
        assert prior.calls == out.num_prior_calls == k + 2 <= method.prior_calls_per_step
        assert prior.rows == out.num_prior_evals == (k + 1) * 3 + 2 * 3


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
    """The release config: CFG 100, uniform w; CFG's ∅ cancels, so g = 100 (ε̂(y) − ε̂(y_src))."""
    for out, prior, inp, i, ti, a, eps in _views(SDSBridge(), 1):
        z_t = noised(inp.latents[i].detach(), eps, a)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_s = one(prior, z_t, ti, Condition(SOURCE_PROMPT))
        torch.testing.assert_close(out.grad[i], 100 * (e_y - e_s), rtol=1e-4, atol=1e-4)
    assert SDSBridgeConfig().source_prompt.startswith("oversaturated, smooth")


def test_sds_bridge_defaults_are_the_release_config():
    c = SDSBridgeConfig()
    assert (c.guidance_scale, c.weighting) == (100.0, "uniform")
    assert (c.timesteps.t_min, c.timesteps.t_max, c.timesteps.t_max_after) == (0.02, 0.98, 0.5)


def test_sds_bridge_stage_one_is_sds_and_the_source_may_carry_the_prompt():
    method = SDSBridge(SDSBridgeConfig(sds_until=0.5, prompt_in_source=True))
    prior = TinyPrior()
    early = make_input(prior, step=10, total_steps=100)  # before 0.5 of the run: SDS, w = 1 − ᾱ
    for out, _, inp, i, ti, a, eps in _views(method, 2, prior, early):
        z_t = noised(inp.latents[i].detach(), eps, a)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_0 = one(prior, z_t, ti, Condition(""))
        torch.testing.assert_close(out.grad[i], (1 - a) * (e_0 + 100 * (e_y - e_0) - eps), rtol=1e-4, atol=1e-4)
    late = make_input(prior, step=60, total_steps=100)
    for out, _, inp, i, ti, a, eps in _views(method, 2, prior, late):
        z_t = noised(inp.latents[i].detach(), eps, a)
        e_y = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_s = one(prior, z_t, ti, Condition(f"{PROMPT}, {SOURCE_PROMPT}, {VIEW_NAMES[i]} view"))  # y_src = y + src
        torch.testing.assert_close(out.grad[i], 100 * (e_y - e_s), rtol=1e-4, atol=1e-4)
    assert method.extra_texts() == []  # its only other text starts with the prompt


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


def _ddim(prior, z, eps_hat, t_from, t_to):  # DDIM: √ᾱ_to x̂0 + √(1−ᾱ_to) ε̂
    af, at = abar(prior, t_from), abar(prior, t_to)
    return math.sqrt(at) * (z - math.sqrt(1 - af) * eps_hat) / math.sqrt(af) + math.sqrt(1 - at) * eps_hat


def _ism_reference(prior, z, ti, delta, stride, max_steps, y):
    """LucidDreamer's ISM for one view: inversion 0 → s in strides, one step s → t, target ε̂(z_s; s, ∅)."""
    s = max(ti - delta, 0)
    taus = [0]
    while taus[-1] < s and len(taus) <= max_steps:
        taus.append(min(taus[-1] + stride, s))
    for t_from, t_to in pairwise(taus):
        z = _ddim(prior, z, one(prior, z, t_from, Condition("")), t_from, t_to)
    e_s = one(prior, z, s, Condition(""))
    z_t = _ddim(prior, z, e_s, s, ti)
    e_y, e_0 = one(prior, z_t, ti, Condition(y)), one(prior, z_t, ti, Condition(""))
    a = abar(prior, ti)
    return math.sqrt((1 - a) / a) * ((e_0 + 7.5 * (e_y - e_0)) - e_s)


def test_ism_by_hand_with_strided_inversion():
    """s = t − δ with δ the annealed interval; 200 is only the inversion stride (LucidDreamer's code)."""
    method = ISM(ISMConfig(timesteps=UniformTimesteps(0.5, 0.9)))
    for out, prior, inp, i, ti, a, _ in _views(method, 4):
        y = f"{PROMPT}, {VIEW_NAMES[i]} view"
        expected = _ism_reference(prior, inp.latents[i].detach(), ti, 99, 200, 5, y)  # δ(10) = int(99.87)
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-4, atol=1e-4)
        old = _ism_reference(prior, inp.latents[i].detach(), ti, 200, 200, 5, y)  # s = t − 200: the old baseline
        assert (old - expected).abs().max() > 100 * 1e-4
    assert out.num_prior_calls == min(-(-int((out.t - 99).max()) // 200), 5) + 2


def test_ism_interval_anneals_from_100_to_80():
    """At the end of the warm-up the interval is 80: a t of 500 gives s = 420, not 300 (t − 200)."""
    prior = TinyPrior()
    pinned = MaxRampTimesteps(0.5, 0.5 + 1e-9, 0.5 + 1e-9, 1)  # t = 500 for every view
    method = ISM(ISMConfig(timesteps=AnnealedTimesteps(0.5, 0.5)))
    for step, delta in ((0, 100), (750, 90), (1500, 80), (3000, 80)):
        inp = make_input(prior, step=step, total_steps=5000)
        out = method(prior, inp, torch.Generator().manual_seed(0))
        expected = _ism_reference(prior, inp.latents[0].detach(), 500, delta, 200, 5, f"{PROMPT}, front view")
        torch.testing.assert_close(out.grad[0], expected, rtol=1e-4, atol=1e-4)
    assert ISMConfig().interval == LinearRamp(100.0, 80.0, 0, 1500) and pinned.t_max_at(0) > 0.5
    fixed = ISM(ISMConfig(interval=Constant(200.0), timesteps=AnnealedTimesteps(0.5, 0.5)))
    out = fixed(prior, make_input(prior), torch.Generator().manual_seed(0))
    expected = _ism_reference(prior, make_input(prior).latents[0].detach(), 500, 200, 200, 5, f"{PROMPT}, front view")
    torch.testing.assert_close(out.grad[0], expected, rtol=1e-4, atol=1e-4)


def test_ism_t_range_is_luciddreamers():
    s = ISMConfig().timesteps
    assert isinstance(s, MaxRampTimesteps) and (s.t_min, s.t_max, s.t_max_end, s.ramp_steps) == (0.02, 0.98, 0.5, 1500)
    g = torch.Generator().manual_seed(0)
    assert s.sample(0, 5000, 4000, 1000, g).max() == 980 and s.sample(1500, 5000, 4000, 1000, g).max() == 500
    assert 730 <= s.sample(750, 5000, 4000, 1000, g).max() <= 740  # halfway: 0.98 − 0.24


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
