"""The prior's view capability (``ViewCapabilities``): the toy prior conditions on cameras and says so, Stable
Diffusion does not; ISD keeps its multi-view term on the one and turns it off (one printed line) on the other."""

from __future__ import annotations

import pytest
import torch
from tiny_toy import lively_prior

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.guidance.base import GuidanceInput, LinearRamp
from distill3d.guidance.isd import ISD, ISDConfig
from distill3d.priors.base import Condition, ViewCapabilities, views_of
from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior
from distill3d.priors.toy.prior import ToyPrior

PROMPT = "a red cube"


def _input(prior, step: int = 10) -> GuidanceInput:
    s = prior.image_size
    images = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    return GuidanceInput(prior.encode(images).detach(), images, Cameras.from_angles([0.0, 180.0], 15.0), PROMPT,
                         step=step, total_steps=100)


def test_the_declarations():
    assert views_of(ToyPrior).conditions_on_cameras
    assert not views_of(StableDiffusionPrior).conditions_on_cameras
    assert views_of(object()) == ViewCapabilities()  # undeclared: no camera conditioning


def test_the_toy_prior_does_condition_on_cameras():
    prior = lively_prior()
    z = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)).expand(2, -1, -1, -1)
    eps = prior.predict_noise(z, torch.tensor([500, 500]), [Condition(PROMPT, camera=(0.0, 15.0)),
                                                            Condition(PROMPT, camera=(180.0, 15.0))])
    assert (eps[0] - eps[1]).abs().max() > 1e-4


def test_isd_keeps_the_multi_view_term_on_the_toy_prior(capsys):
    prior = lively_prior()
    method = ISD(reference=torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2)))
    method.setup(prior, PROMPT, seed=0)
    assert capsys.readouterr().out == ""
    out = method(prior, _input(prior), torch.Generator().manual_seed(0))
    assert out.extras.beta > 0 and (out.extras.mv_norm > 0).all() and out.num_prior_evals == 5 * 2


@pytest.fixture(scope="module")
def sd_prior(tmp_path_factory):
    pytest.importorskip("diffusers", reason="the Stable Diffusion prior needs the 'sd' extra")
    from sd_tiny import tiny_dirs

    return StableDiffusionPrior(StableDiffusionConfig(model=str(tiny_dirs(tmp_path_factory).sd)))


def test_isd_on_stable_diffusion_says_the_term_is_off_and_refuses_an_explicit_beta(sd_prior, capsys):
    ref = torch.rand(3, sd_prior.image_size, sd_prior.image_size, generator=torch.Generator().manual_seed(3))
    method = ISD(ISDConfig(image_scale=0.0), reference=ref)  # the plain prior has no image adapter
    method.setup(sd_prior, PROMPT, seed=0)
    out = method(sd_prior, _input(sd_prior), torch.Generator().manual_seed(0))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "multi-view term g_MV" in lines[0] and "StableDiffusionPrior" in lines[0]
    assert out.extras.beta == 0.0 and out.num_prior_evals == 3 * 2
    with pytest.raises(UserError, match="multi-view term"):
        ISD(ISDConfig(beta=LinearRamp(0.6, 0.02)), reference=ref).setup(sd_prior, PROMPT, seed=0)
