"""Stable Diffusion paired with MVDream (``priors/paired.py``, ``--prior sd --mv-prior PATH``) on the tiny models of
``sd_tiny`` and ``mvdream_tiny`` (both 32² renders to 4×16² latents on SD's schedule): rows with a camera or a view
group are MVDream's own prediction (a group jointly), the others SD's own, in the batch's order; a pair that does
not share the latent space or the schedule is a one-line error; ISD on the pair takes g_MV from MVDream."""

from __future__ import annotations

import functools

import pytest
import torch

pytest.importorskip("diffusers", reason="the Stable Diffusion and MVDream priors need the 'sd' extra")

from mvdream_tiny import build_mvdream_checkpoint

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.guidance import GuidanceInput
from distill3d.guidance.isd import ISD, ISDConfig
from distill3d.pipeline.priors import PriorSpec, load_prior
from distill3d.priors import mvdream
from distill3d.priors.base import Condition, Prior, TrainableDenoiserPrior, views_of
from distill3d.priors.mvdream import MVDreamConfig, MVDreamPrior
from distill3d.priors.paired import PairedPrior

SIZE = 32  # sd_tiny's renders: latents [4, 16, 16]
AZ = (0.0, 90.0, 180.0, 270.0)
PROMPT = "a cat"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_mvdream_checkpoint(tmp_path_factory.mktemp("mvdream") / "tiny-4view.pt")


def _mvdream(ckpt, image_size: int = SIZE) -> MVDreamPrior:
    return MVDreamPrior(MVDreamConfig(model=str(ckpt), tokenizer=str(ckpt.parent), image_size=image_size))


@pytest.fixture(scope="module")
def sd(ip):
    """Stable Diffusion with its IP-Adapter (conftest's ``ip``), the pair's base."""
    return ip


@pytest.fixture(scope="module")
def mv(ckpt):
    return _mvdream(ckpt)


@pytest.fixture(scope="module")
def paired(sd, mv):
    return PairedPrior(sd, mv)


def _image(seed: int) -> torch.Tensor:
    return torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _z(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(seed))


def test_the_pair_sees_views_as_mvdream_and_everything_else_as_sd(paired, sd):
    assert isinstance(paired, Prior) and isinstance(paired, TrainableDenoiserPrior)  # VSD's LoRA: SD's
    assert views_of(paired).conditions_on_cameras and views_of(paired).joint_views == 4
    assert paired.image_size == SIZE and paired.takes_images and paired.control_kind is None
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(paired.encode(images), sd.encode(images))
    assert next(iter(paired.adapter_layer().parameters())) is next(iter(sd.adapter_layer().parameters()))


def test_rows_with_views_are_mvdreams_own_prediction_and_the_others_sds_in_order(paired, sd, mv):
    ref = _image(5)
    group = [Condition(PROMPT, camera=(a, 15.0), view_group=3) for a in AZ]
    conds = [Condition("a dog"), *group, Condition(PROMPT, ref, 0.5), Condition("", camera=(30.0, 10.0)),
             Condition("")]
    z, t = _z(8, seed=1), torch.tensor([100, 400, 400, 400, 400, 900, 250, 600])
    out = paired.predict_noise(z, t, conds)
    mv_rows = [1, 2, 3, 4]
    torch.testing.assert_close(out[mv_rows], mv.predict_noise(z[mv_rows], t[mv_rows], group), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[6:7], mv.predict_noise(z[6:7], t[6:7], conds[6:7]), atol=1e-5, rtol=1e-5)
    for i in (0, 5, 7):
        torch.testing.assert_close(out[i:i + 1], sd.predict_noise(z[i:i + 1], t[i:i + 1], conds[i:i + 1]),
                                   atol=1e-5, rtol=1e-5)
    # the two networks disagree on the same rows, so a row sent to the wrong one would fail above
    sd_view = sd.predict_noise(z[mv_rows], t[mv_rows], group)
    assert (sd_view - out[mv_rows]).abs().max() > 1e-2


def test_a_camera_row_with_an_image_has_no_prior(paired):
    with pytest.raises(UserError) as err:
        paired.predict_noise(_z(1), torch.tensor([500]), [Condition(PROMPT, _image(1), 0.5, camera=(0.0, 0.0))])
    assert "\n" not in str(err.value) and "carries a camera and an image" in str(err.value)


def test_a_pair_on_other_latents_or_another_schedule_is_a_one_line_error(sd, mv, ckpt, monkeypatch):
    with pytest.raises(UserError) as err:
        PairedPrior(sd, _mvdream(ckpt, image_size=16))  # 16² renders: latents [4, 8, 8]
    assert "\n" not in str(err.value)
    assert ("the multi-view prior MVDreamPrior encodes a 32² image to latents [4, 8, 8], the base prior "
            "StableDiffusionPrior to [4, 16, 16]") in str(err.value)
    monkeypatch.setattr(mv, "_alphas_cumprod", mv.alphas_cumprod.sqrt())
    with pytest.raises(UserError) as err:
        PairedPrior(sd, mv)
    assert "\n" not in str(err.value) and "another noise schedule (alphas_cumprod)" in str(err.value)


def test_isd_on_the_pair_takes_g_mv_from_mvdream_and_g_isd_from_sd(paired, sd, mv, capsys):
    """Eq. 7-9 by hand from the two priors' own predictions: 4 views at 90° are one group at one t; g_MV's rows
    [ε̂(y, π), ε̂(∅, π)] are MVDream's (the group jointly), g_ISD's rows [ε̂(y, x_ref), ε̂(y), ε̂(∅)] SD's (row by
    row). The setup's note "g_MV is off" is not printed on the pair (it is on SD alone)."""
    ref = _image(42)
    ISD(reference=ref).setup(sd, PROMPT, seed=0)
    assert "g_MV (Eq. 8-9) is off" in capsys.readouterr().out
    method = ISD(reference=ref)
    method.setup(paired, PROMPT, seed=0)
    assert capsys.readouterr().out == ""
    g = torch.Generator().manual_seed(0)
    latents = sd.encode(torch.rand(4, 3, SIZE, SIZE, generator=g))
    inp = GuidanceInput(latents, torch.zeros(4, 3, SIZE, SIZE), Cameras.from_angles(list(AZ), 15.0), PROMPT,
                        step=25, total_steps=101)
    out = method(paired, inp, torch.Generator().manual_seed(6))
    replay = torch.Generator().manual_seed(6)  # the documented draw order: t, then ε
    t_drawn = ISDConfig().timesteps.sample(25, 101, 4, 1000, replay)
    eps = torch.randn(latents.shape, generator=replay)
    t = t_drawn[:1].expand(4).clone()  # one t for the group: the first view's
    assert torch.equal(out.t, t)
    a = sd.alphas_cumprod[t][:, None, None, None]
    z_t = a.sqrt() * latents + (1 - a).sqrt() * eps
    alpha, beta = 0.4 + 0.4 * 25 / 100, 0.6 - 0.58 * 25 / 100
    e_mv = mv.predict_noise(z_t, t, [Condition(PROMPT, camera=(az, 15.0), view_group=0) for az in AZ])
    e_mv0 = mv.predict_noise(z_t, t, [Condition("", camera=(az, 15.0), view_group=0) for az in AZ])
    for i, view in enumerate(["front", "side", "back", "side"]):
        y, zi, ti = f"{PROMPT}, {view} view", z_t[i:i + 1], t[i:i + 1]
        e_ip, e_y, e_0 = (sd.predict_noise(zi, ti, [c])[0] for c in (Condition(y, ref, 0.5), Condition(y),
                                                                       Condition("")))
        w = 1 - a[i]
        g_isd = w * ((e_0 + 7.5 * (e_ip - e_0)) - (e_0 + 7.5 * (e_y - e_0)))  # Eq. 7
        g_mv = w * ((e_mv0[i] + 50.0 * (e_mv[i] - e_mv0[i])) - eps[i])  # Eq. 8, the group denoised jointly
        torch.testing.assert_close(out.grad[i], alpha * g_isd + beta * g_mv, rtol=1e-4, atol=1e-4)  # Eq. 9


def test_load_prior_pairs_sd_with_mvdream_at_sds_image_size(dirs, ckpt, monkeypatch):
    """``--prior sd --mv-prior PATH``: the tiny tokenizer stands in for SD 2.1-base's, which is not cached here."""
    monkeypatch.setattr(mvdream, "MVDreamConfig", functools.partial(MVDreamConfig, tokenizer=str(ckpt.parent)))
    prior = load_prior(PriorSpec("sd", str(dirs.sd), mv_prior=str(ckpt)))
    assert isinstance(prior, PairedPrior) and isinstance(prior.multi_view, MVDreamPrior)
    assert prior.multi_view.image_size == prior.base.image_size == SIZE and views_of(prior).joint_views == 4


def test_mv_prior_pairs_sd_or_a_toy_prior_only():
    with pytest.raises(UserError) as err:
        load_prior(PriorSpec("mvdream", mv_prior="mvdream.pt"))
    assert "\n" not in str(err.value) and "--prior mvdream is neither" in str(err.value)
