from __future__ import annotations

import math

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.core.state import load_state, save_state
from distill3d.guidance.base import camera_tuples
from distill3d.guidance.vsd import VSD, VSDConfig
from distill3d.priors.base import Condition

from .contract import PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar, noised, one, replay
from .tiny_prior import TinyPrior


class TestVSDContract(GuidanceContract):
    def make_method(self):
        method = VSD()
        method.setup(TinyPrior(), PROMPT, seed=0)
        return method


class PriorWithoutTrainableParts:
    """The tiny prior minus ``trainable_denoiser``."""

    def __init__(self) -> None:
        self.inner = TinyPrior()
        self.num_timesteps, self.image_size = self.inner.num_timesteps, self.inner.image_size

    alphas_cumprod = property(lambda self: self.inner.alphas_cumprod)
    device = property(lambda self: self.inner.device)

    def __getattr__(self, name):
        if name == "trainable_denoiser":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_prior_without_trainable_parts_fails_at_setup_and_on_resume():
    prior = PriorWithoutTrainableParts()
    with pytest.raises(UserError, match="VSD .*no trainable parts"):
        VSD().setup(prior, PROMPT, 0)
    with pytest.raises(UserError, match="no trainable parts"):
        VSD().load_state_dict(prior, {})


def test_gradient_matches_hand_computation():
    """Eq. 9: w(t)(ε̂(∅) + s(ε̂(y_v) − ε̂(∅)) − ε̂_φ(z_t; y, π)): the frozen prior sees the view prompt y_v, the
    LoRA ε̂_φ the plain prompt y (threestudio's view_dependent_prompting=False for the LoRA)."""
    prior = TinyPrior()
    inp = make_input(prior)
    method = VSD()
    method.setup(prior, PROMPT, 0)
    with torch.no_grad():  # a trained-looking copy, so that ε̂_φ is not the prior itself
        for p in method.trainable_parameters(prior):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.2)
    denoiser = method._denoiser_for(prior)
    out = method(prior, inp, torch.Generator().manual_seed(5))
    t, eps = replay(prior, method.config.timesteps, inp, 5)
    cams = camera_tuples(inp.cameras)
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents.detach()[i], eps[i], a)
        y = f"{PROMPT}, {VIEW_NAMES[i]} view"
        e_cfg = one(prior, z_t, ti, Condition("")) + 7.5 * (one(prior, z_t, ti, Condition(y))
                                                            - one(prior, z_t, ti, Condition("")))
        with torch.no_grad():
            e_phi = denoiser.predict_noise(z_t[None], torch.tensor([ti]), [Condition(PROMPT, camera=cams[i])])[0]
        torch.testing.assert_close(out.grad[i], (1 - a) * (e_cfg - e_phi), rtol=1e-5, atol=1e-6)


def test_inner_step_trains_the_copy_on_the_renders():
    prior = TinyPrior()
    inp = make_input(prior, batch=4)
    method = VSD(VSDConfig(lora_lr=1e-2))
    method.setup(prior, PROMPT, 0)
    before = [p.detach().clone() for p in method.trainable_parameters(prior)]

    def loss() -> float:  # Eq. 8 at fixed draws
        return float(method.lora_loss(prior, inp, torch.Generator().manual_seed(11)).detach())

    first = loss()
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        out = method(prior, inp, g)
        step = method.inner_step(prior, inp, out, g)
        assert step.num_prior_calls == 1 and step.num_prior_evals == 4 and math.isfinite(step.loss)
    assert loss() < 0.9 * first
    after = method.trainable_parameters(prior)
    assert all(not torch.equal(a, b) for a, b in zip(after, before))
    assert not any(p.requires_grad for p in prior.adapter.parameters())  # the frozen prior stays frozen


def test_the_lora_is_trained_on_the_plain_prompt():
    """threestudio's train_lora gets the view-independent text embeddings: no view suffix in Eq. 8 either."""
    prior = TinyPrior()
    inp = make_input(prior)
    method = VSD()
    method.setup(prior, PROMPT, 0)
    g = torch.Generator().manual_seed(0)
    out = method(prior, inp, g)
    prior.texts.clear()
    method.inner_step(prior, inp, out, g)  # only ε̂_φ runs here
    assert prior.texts == {PROMPT}


def test_the_lora_lr_and_t_schedule_are_prolificdreamer_yaml():
    """configs/prolificdreamer.yaml: guidance lr 0.0001; max_step_percent [5000, 0.98, 0.5, 5001]."""
    c = VSDConfig()
    assert c.lora_lr == 1e-4 and (c.timesteps.t_min, c.timesteps.t_max, c.timesteps.t_max_after) == (0.02, 0.98, 0.5)
    assert c.timesteps.switch_step == 5000


def test_state_dict_resumes_the_copy_and_its_optimizer_exactly(tmp_path):
    """Through a real checkpoint file (``core.state``), as the loop saves and resumes it."""
    prior = TinyPrior()
    inp = make_input(prior)
    a = VSD(VSDConfig(lora_lr=1e-2))
    a.setup(prior, PROMPT, 0)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        a.inner_step(prior, inp, a(prior, inp, g), g)
    state = a.state_dict(prior)
    assert set(state) == {"lora", "optimizer"} and state["optimizer"]["state"]
    save_state(tmp_path / "ck.safetensors", {"method": state})
    state = load_state(tmp_path / "ck.safetensors")["method"]
    b = VSD(VSDConfig(lora_lr=1e-2))
    b.load_state_dict(prior, state)
    for pa, pb in zip(a.trainable_parameters(prior), b.trainable_parameters(prior)):
        assert torch.equal(pa, pb)
    ga, gb = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    a.inner_step(prior, inp, a(prior, inp, ga), ga)
    b.inner_step(prior, inp, b(prior, inp, gb), gb)
    for pa, pb in zip(a.trainable_parameters(prior), b.trainable_parameters(prior)):
        assert torch.equal(pa, pb)  # the Adam moments came back too
