"""Every guidance method takes one step on a (tiny, random) Stable Diffusion prior with an IP-Adapter."""

import pytest
import torch

pytest.importorskip("diffusers", reason="the Stable Diffusion prior needs the 'sd' extra")

from sd_tiny import IP_SUBFOLDER, IP_WEIGHT

from distill3d.core.cameras import Cameras
from distill3d.guidance import METHODS, GuidanceInput, surrogate_loss
from distill3d.priors.sampling import sample
from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior

# fixtures dirs, ...: conftest.py


@pytest.fixture(scope="module")
def prior(dirs):
    return StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), ip_adapter=str(dirs.ip_adapter),
                                                      ip_adapter_subfolder=IP_SUBFOLDER, ip_adapter_weight=IP_WEIGHT))


@pytest.mark.parametrize("entry", METHODS, ids=lambda e: f"{e.kind}:{e.name}")
def test_one_step_on_stable_diffusion(entry, prior):
    g = torch.Generator().manual_seed(0)
    s = prior.image_size
    images = torch.rand(2, 3, s, s, generator=g).requires_grad_(True)
    latents = prior.encode(images)
    name, edit = entry.name, entry.kind == "edit"
    if getattr(entry.cls, "joint_views", 1) > 1:
        pytest.skip("guides groups of views jointly: needs a multi-view prior, which plain Stable Diffusion is not")
    method = entry.build()
    if name == "isd":
        method.set_reference(sample(prior, "a dog", n=1, steps=2, seed=0)[0])
    source = prior.encode(torch.rand(2, 3, s, s, generator=g)).detach() if edit else None
    inp = GuidanceInput(latents.detach(), images.detach(), Cameras.from_angles([0.0, 90.0], 15.0), "a dog",
                        step=0, total_steps=10, source_latents=source, source_prompt="a cat" if edit else None)
    out = method(prior, inp, g)
    assert out.grad.shape == latents.shape and torch.isfinite(out.grad).all()
    surrogate_loss(latents, out.grad).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    if name == "anchords-filter":  # random renders reconstruct badly: the filter may drop views (Eq. 14)
        assert (out.grad.flatten(1).abs().sum(1) > 0).tolist() == out.extras.keep.tolist()
    else:
        assert images.grad.abs().sum() > 0
    inner = method.inner_step(prior, inp, out, g)
    assert (inner is not None) == bool(method.trainable_parameters(prior))  # AnchorDS' fine-tune, VSD's LoRA
