"""The Stable Diffusion prior's trainable copy (VSD's camera-conditioned LoRA) on the tiny random SD model."""

import pytest
import torch

pytest.importorskip("diffusers", reason="the Stable Diffusion prior needs the 'sd' extra")

from distill3d.core.cameras import Cameras
from distill3d.guidance import GuidanceInput
from distill3d.guidance.vsd import VSD
from distill3d.priors.base import Condition, TrainableDenoiserPrior

# fixtures dirs, prior: conftest.py


def _rows(prior, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = prior.image_size // 8
    z = torch.randn(n, 4, s, s, generator=g)
    t = torch.tensor([100, 500, 900][:n])
    conds = [Condition("a dog", camera=(30.0 * i, 10.0)) for i in range(n - 1)] + [Condition("a dog")]
    return z, t, conds


def test_lora_starts_equal_and_never_changes_the_frozen_prior(prior):
    assert isinstance(prior, TrainableDenoiserPrior)
    lora = prior.trainable_denoiser(rank=2)
    z, t, conds = _rows(prior)
    frozen = prior.predict_noise(z, t, conds).detach()
    with torch.no_grad():
        torch.testing.assert_close(lora.predict_noise(z, t, conds), frozen)
        for p in lora.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        changed = lora.predict_noise(z, t, conds)
        assert (changed - frozen).abs().max() > 1e-4
        assert torch.equal(prior.predict_noise(z, t, conds), frozen)  # the hooks act only inside the copy
        # the camera embedding reaches the rows with a camera: two cameras, two predictions
        same_z = z[:1].expand(2, -1, -1, -1)
        two = lora.predict_noise(same_z, t[:1].expand(2), [Condition("a dog", camera=(0.0, 0.0)),
                                                          Condition("a dog", camera=(180.0, 0.0))])
        assert (two[0] - two[1]).abs().max() > 1e-5
    lora.remove()
    with torch.no_grad():
        torch.testing.assert_close(lora.predict_noise(z, t, conds), frozen)


def test_lora_adapts_every_attention_projection_and_only_its_parameters_get_gradients(prior):
    lora = prior.trainable_denoiser(rank=2)
    n_proj = sum(1 for name, m in prior.unet.named_modules() if isinstance(m, torch.nn.Linear)
                 and name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0")))
    assert len(lora.lora) == n_proj > 0
    z, t, conds = _rows(prior)
    lora.predict_noise(z, t, conds).square().mean().backward()
    assert all(p.grad is not None for p in lora.lora.parameters())
    assert all(p.grad is None for p in prior.unet.parameters())
    lora.remove()


def test_vsd_steps_and_resumes_on_stable_diffusion(prior):
    method = VSD()
    method.setup(prior, "a dog", 0)
    g = torch.Generator().manual_seed(0)
    s = prior.image_size
    images = torch.rand(2, 3, s, s, generator=g)
    inp = GuidanceInput(prior.encode(images).detach(), images, Cameras.from_angles([0.0, 90.0], 15.0), "a dog")
    before = [p.detach().clone() for p in method.trainable_parameters(prior)]
    out = method(prior, inp, g)
    inner = method.inner_step(prior, inp, out, g)
    assert torch.isfinite(out.grad).all() and inner.num_prior_calls == 1
    after = method.trainable_parameters(prior)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    resumed = VSD()
    resumed.load_state_dict(prior, method.state_dict(prior))
    for a, b in zip(method.trainable_parameters(prior), resumed.trainable_parameters(prior)):
        assert torch.equal(a, b)
