from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.guidance.base import Constant, LinearRamp
from distill3d.guidance.isd import ISD, ISDConfig
from distill3d.priors.base import Condition, views_of

from .analytic_prior import COLOURS, AnalyticPrior
from .contract import PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar, noised, one, replay
from .joint_prior import JointTinyPrior
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


# ---- the multi-view term needs a prior that conditions on cameras (issue 20) ----------------------------


def _flat_reference(prior: AnalyticPrior) -> torch.Tensor:
    return torch.tensor(COLOURS["red"])[:, None, None].expand(3, prior.image_size, prior.image_size).clone()


def test_without_camera_conditioning_the_gradient_is_alpha_times_g_isd_alone():
    """The analytic prior ignores cameras: g = α(τ)·g_ISD (Eq. 7 by hand from single-row predictions), no g_MV
    rows, β reported 0. Today's code added β·w(ε̂_cfg,50(z_t; y) − ε), a view-agnostic SDS."""
    prior = AnalyticPrior()
    assert not views_of(prior).conditions_on_cameras
    inp = make_input(prior, step=25, total_steps=101)
    ref = _flat_reference(prior)
    out = ISD(reference=ref)(prior, inp, torch.Generator().manual_seed(6))
    t, eps = replay(prior, ISDConfig().timesteps, inp, 6)
    alpha = 0.4 + 0.4 * 25 / 100
    assert out.extras.alpha == pytest.approx(alpha) and out.extras.beta == 0.0
    assert out.num_prior_evals == 3 * 3  # [ε̂(y, x_ref), ε̂(∅), ε̂(y)] per view, nothing for g_MV
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        y = f"{PROMPT}, {VIEW_NAMES[i]} view"
        e_ip, e_y, e_0 = (one(prior, z_t, ti, c) for c in (Condition(y, ref, 0.5), Condition(y), Condition("")))
        g_isd = (1 - a) * ((e_0 + 7.5 * (e_ip - e_0)) - (e_0 + 7.5 * (e_y - e_0)))  # Eq. 7
        torch.testing.assert_close(out.grad[i], alpha * g_isd, rtol=1e-5, atol=1e-6)
        assert g_isd.abs().max() > 1e-3  # the comparison is not vacuous


def test_the_run_says_once_that_the_multi_view_term_is_off(capsys):
    prior = AnalyticPrior()
    method = ISD(reference=_flat_reference(prior))
    method.setup(prior, PROMPT, seed=0)
    for step in range(3):
        method(prior, make_input(prior, step=step), torch.Generator().manual_seed(step))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and "multi-view term g_MV" in lines[0] and "AnalyticPrior" in lines[0]
    ISD(ISDConfig(beta=None), reference=_flat_reference(prior)).setup(prior, PROMPT, seed=0)  # off by choice
    camera_prior = TinyPrior()
    ISD(reference=_reference()).setup(camera_prior, PROMPT, seed=0)  # the term is on there
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("beta", [LinearRamp(0.6, 0.02), Constant(0.3)], ids=["ramp", "constant"])
def test_an_explicit_beta_on_a_prior_without_cameras_is_refused_in_one_line(beta):
    prior = AnalyticPrior()
    method = ISD(ISDConfig(beta=beta), reference=_flat_reference(prior))
    for set_up in (lambda: method.setup(prior, PROMPT, seed=0), lambda: method.load_state_dict(prior, {})):
        with pytest.raises(UserError, match="multi-view term .*conditions on cameras") as err:
            set_up()
        assert "\n" not in str(err.value)
    out = ISD(ISDConfig(beta=beta), reference=_reference())(TinyPrior(), make_input(TinyPrior()), torch.Generator())
    assert out.extras.beta == beta(10, 100)  # kept on a camera-conditioned prior


def test_on_a_camera_prior_auto_beta_is_the_paper_schedule():
    prior = TinyPrior()
    assert views_of(prior).conditions_on_cameras
    out = ISD(reference=_reference())(prior, make_input(prior, step=25, total_steps=101), torch.Generator())
    assert out.extras.beta == pytest.approx(0.6 - 0.58 * 25 / 100) and out.num_prior_evals == 5 * 3


class TestISDOnAMultiViewPriorContract(GuidanceContract):
    """ISD on a multi-view prior, its steps' views in two groups of 4 at 90°: g_MV denoised group by group."""

    batch = 8

    def make_prior(self):
        return JointTinyPrior()

    def make_method(self):
        return ISD(reference=_reference())


def test_on_a_multi_view_prior_g_mv_denoises_each_group_jointly_at_one_t():
    """Eq. 8 with MVDream's ε̂_MV: the g_MV rows of a group are denoised together, at the group's one t; written
    out with JointTinyPrior's closed form (TinyPrior's ε̂ + 0.3·tanh(B(z̄_t − z_t,k)), z̄_t the group mean)."""
    prior = JointTinyPrior()
    inp = make_input(prior, batch=8, step=25, total_steps=101)  # azimuths 0, 90, ..., 630: two groups at 90°
    ref = _reference()
    out = ISD(reference=ref)(prior, inp, torch.Generator().manual_seed(6))
    t_drawn, eps = replay(prior, ISDConfig().timesteps, inp, 6)
    t = t_drawn.reshape(2, 4)[:, :1].expand(2, 4).reshape(-1)  # the first view's t for its whole group
    assert torch.equal(out.t, t) and not torch.equal(t, t_drawn)
    alpha, beta = 0.4 + 0.4 * 25 / 100, 0.6 - 0.58 * 25 / 100
    z_t = torch.stack([noised(inp.latents[i].detach(), eps[i], abar(prior, int(t[i]))) for i in range(8)])
    for i in range(8):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        y = f"{PROMPT}, {(VIEW_NAMES + ['side'])[i % 4]} view"  # 270°: side
        e_ip, e_y, e_0 = (TinyPrior.predict_noise(prior, z_t[i][None], torch.tensor([ti]), [c])[0]
                          for c in (Condition(y, ref, 0.5), Condition(y), Condition("")))
        cam = ((90.0 * i) % 360.0, 15.0)
        mates = z_t[4 * (i // 4):4 * (i // 4) + 4]
        joint = 0.3 * torch.tanh(torch.einsum("cd,dhw->chw", prior.couple, mates.mean(0) - z_t[i]))
        e_mv, e_mv0 = (TinyPrior.predict_noise(prior, z_t[i][None], torch.tensor([ti]), [c])[0] + joint
                       for c in (Condition(PROMPT, camera=cam), Condition("", camera=cam)))
        g_isd = (1 - a) * ((e_0 + 7.5 * (e_ip - e_0)) - (e_0 + 7.5 * (e_y - e_0)))  # Eq. 7, rows alone
        g_mv = (1 - a) * ((e_mv0 + 50.0 * (e_mv - e_mv0)) - eps[i])  # Eq. 8, jointly denoised
        torch.testing.assert_close(out.grad[i], alpha * g_isd + beta * g_mv, rtol=1e-4, atol=1e-5)


def test_on_a_multi_view_prior_views_not_in_groups_are_denoised_alone():
    """Three views (no group of 4): each g_MV row is the prior's single-view prediction, as on TinyPrior."""
    joint, single = JointTinyPrior(), TinyPrior()
    inp = make_input(single, batch=3)
    a = ISD(reference=_reference())(joint, inp, torch.Generator().manual_seed(2))
    b = ISD(reference=_reference())(single, inp, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.grad, b.grad)
