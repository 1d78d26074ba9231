"""mvdream-sds against hand-written references of threestudio-mvdream's guidance (multiview_diffusion_guidance.py,
configs/mvdream-sd21.yaml), on the tiny multi-view prior."""

from __future__ import annotations

import math

import pytest
import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.guidance.base import GuidanceInput
from distill3d.guidance.mvdream_sds import MVDreamSDS, MVDreamSDSConfig, RampedRangeTimesteps
from distill3d.priors.base import Condition, view_groups

from .contract import PROMPT, GuidanceContract, make_input
from .joint_prior import JointTinyPrior
from .tiny_prior import TinyPrior


class TestMVDreamSDSPlainSDSContract(GuidanceContract):
    """The SDS form (recon_loss false); the default x̂0 form runs in the registry's contract."""

    batch = 8  # two groups of 4: make_input's azimuths 0, 90, ..., 630 are two groups at 90°

    def make_prior(self):
        return JointTinyPrior()

    def make_method(self):
        return MVDreamSDS(MVDreamSDSConfig(recon_loss=False))


def _input(prior, azimuths, step: int = 10, total: int = 100) -> GuidanceInput:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(len(azimuths), 3, prior.image_size, prior.image_size, generator=g)
    return GuidanceInput(prior.encode(images), images, Cameras.from_angles(azimuths, 20.0), PROMPT, step, total)


def _reference(prior, inp, seed: int, s: float, recon: bool, r: float):
    """threestudio-mvdream's forward, written out: one t from [int(T·min%), int(T·max%)], ε per view, each
    group of 4 denoised on its own (conditional and unconditional groups), CFG, x0 loss with the std rescale."""
    b = inp.latents.shape[0]
    p = min(inp.step / (0.8 * inp.total_steps), 1.0)
    lo, hi = int(1000 * (0.98 - 0.96 * p)), int(1000 * (0.98 - 0.48 * p))
    g = torch.Generator().manual_seed(seed)
    t = int(torch.randint(lo, hi + 1, (1,), generator=g))
    eps = torch.randn(inp.latents.shape, generator=g)
    a = float(prior.alphas_cumprod[t])
    z = inp.latents.detach()
    z_t = math.sqrt(a) * z + math.sqrt(1 - a) * eps
    cams = [(float(az), 20.0) for az in inp.cameras.azimuth]

    def group(k, text):
        rows = slice(4 * k, 4 * k + 4)
        conds = [Condition(text, camera=cams[i], view_group=0) for i in range(4 * k, 4 * k + 4)]
        return prior.predict_noise(z_t[rows], torch.full((4,), t), conds)

    grads = []
    for k in range(b // 4):
        e_y, e_n = group(k, PROMPT), group(k, "")
        e = e_n + s * (e_y - e_n)
        zk, ztk = z[4 * k:4 * k + 4], z_t[4 * k:4 * k + 4]
        if not recon:
            grads.append((1 - a) * (e - eps[4 * k:4 * k + 4]))
            continue
        x0 = (ztk - math.sqrt(1 - a) * e) / math.sqrt(a)
        x0_y = (ztk - math.sqrt(1 - a) * e_y) / math.sqrt(a)
        factor = (x0_y.std() + 1e-8) / (x0.std() + 1e-8)
        grads.append(zk - (r * factor * x0 + (1 - r) * x0))
    return torch.cat(grads), t, eps, a


@pytest.mark.parametrize("recon", [True, False])
def test_gradient_equals_threestudio_mvdreams_written_out(recon):
    prior = JointTinyPrior()
    inp = _input(prior, [10.0, 100.0, 190.0, 280.0, 55.0, 145.0, 235.0, 325.0], step=30)
    out = MVDreamSDS(MVDreamSDSConfig(recon_loss=recon))(prior, inp, torch.Generator().manual_seed(4))
    ref, t, _, _ = _reference(prior, inp, 4, 50.0, recon, 0.5)
    assert (out.t == t).all() and out.num_prior_calls == 1 and out.num_prior_evals == 16
    torch.testing.assert_close(out.grad, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_without_the_rescale_the_x0_form_is_sds_weighted_by_sqrt_of_one_minus_abar_over_abar():
    """z − x̂0 = z − (√ᾱ z + √(1−ᾱ) ε − √(1−ᾱ) ε̂)/√ᾱ = √((1−ᾱ)/ᾱ)(ε̂ − ε)."""
    prior = JointTinyPrior()
    inp = _input(prior, [0.0, 90.0, 180.0, 270.0])
    recon = MVDreamSDS(MVDreamSDSConfig(recon_std_rescale=0.0))(prior, inp, torch.Generator().manual_seed(1))
    sds = MVDreamSDS(MVDreamSDSConfig(recon_loss=False))(prior, inp, torch.Generator().manual_seed(1))
    a = float(prior.alphas_cumprod[int(sds.t[0])])
    torch.testing.assert_close(recon.grad, sds.grad * math.sqrt((1 - a) / a) / (1 - a), rtol=1e-4, atol=1e-5)


def test_the_timestep_schedule_is_threestudio_mvdreams():
    sched = RampedRangeTimesteps()
    draw = lambda step, seed: sched.sample(step, 100, 4, 1000, torch.Generator().manual_seed(seed))
    assert all((draw(0, s) == 980).all() for s in range(5))  # min = max = 0.98 at the start
    late = torch.stack([draw(90, s) for s in range(300)])  # past the ramp's end (0.8 of 100 steps)
    assert (late == late[:, :1]).all()  # one t for every view
    assert late.min() >= 20 and late.max() <= 500 and late.min() < 60 and late.max() > 460
    mid = torch.stack([draw(40, s) for s in range(300)])  # half-way: [0.98 − 0.48, 0.98 − 0.24] = [500, 740]
    assert mid.min() >= 500 and mid.max() <= 740


def test_rows_are_groups_of_four_each_view_with_its_camera():
    calls = []

    class Recording(JointTinyPrior):
        def predict_noise(self, z_t, t, conditions):
            calls.append(list(conditions))
            return super().predict_noise(z_t, t, conditions)

    prior = Recording()
    azimuths = [10.0, 100.0, 190.0, 280.0, 55.0, 145.0, 235.0, 325.0]
    MVDreamSDS()(prior, _input(prior, azimuths), torch.Generator().manual_seed(0))
    (conds,) = calls
    assert view_groups(conds, 4) == (4, 4, 4, 4)
    assert [c.text for c in conds] == [PROMPT] * 8 + [""] * 8  # no view suffixes: the cameras carry the view
    assert [c.camera[0] for c in conds] == pytest.approx(azimuths * 2)


def test_a_single_view_prior_is_refused_at_set_up_and_at_a_resumed_call():
    with pytest.raises(UserError, match="mvdream-sds denoises groups of 4 views jointly") as err:
        MVDreamSDS().setup(TinyPrior(), PROMPT, seed=0)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="multi-view prior"):
        MVDreamSDS()(TinyPrior(), make_input(TinyPrior(), batch=4), torch.Generator())


@pytest.mark.parametrize("azimuths", [[0.0, 90.0, 180.0], [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0],
                                      [0.0, 90.0, 200.0, 270.0]])
def test_views_not_in_groups_of_four_at_90_degrees_are_refused_in_one_line(azimuths):
    prior = JointTinyPrior()
    with pytest.raises(UserError, match="--set views_per_step=4 --set view_azimuths=even") as err:
        MVDreamSDS()(prior, _input(prior, azimuths), torch.Generator())
    assert "\n" not in str(err.value)


def test_a_run_with_views_per_step_4_at_even_azimuths_steps_and_one_without_stops_at_once(tmp_path):
    from distill3d.pipeline import loop
    from distill3d.pipeline.config import resolve_run_config

    prior = JointTinyPrior()
    base = {"steps": "2", "num_gaussians": "100", "checkpoint_every": "0", "preview_every": "0"}
    cfg, _ = resolve_run_config("mvdream-sds", {**base, "views_per_step": "4", "view_azimuths": "even"})
    _, state = loop.optimise(PROMPT, cfg, MVDreamSDS(), prior, tmp_path / "even")
    assert state.step == 2 and prior.rows == 2 * 8
    cfg, _ = resolve_run_config("mvdream-sds", {**base, "views_per_step": "8", "view_azimuths": "even",
                                                "views_per_group": "4"})  # two groups of 4, as their batch of 8
    _, state = loop.optimise(PROMPT, cfg, MVDreamSDS(), JointTinyPrior(), tmp_path / "two")
    assert state.step == 2
    cfg, _ = resolve_run_config("mvdream-sds", {**base, "views_per_step": "8", "view_azimuths": "even"})
    with pytest.raises(UserError, match="views_per_group=4"):  # 8 views at 45° are not groups at 90°
        loop.optimise(PROMPT, cfg, MVDreamSDS(), JointTinyPrior(), tmp_path / "45")
    with pytest.raises(UserError, match="multiple of views_per_group"):
        resolve_run_config("mvdream-sds", {**base, "views_per_step": "6", "views_per_group": "4"})[0].validate()
    cfg, _ = resolve_run_config("mvdream-sds", base)  # random azimuths
    with pytest.raises(UserError, match="view_azimuths=even"):
        loop.optimise(PROMPT, cfg, MVDreamSDS(), prior, tmp_path / "random")
