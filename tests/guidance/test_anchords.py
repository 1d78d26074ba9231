from __future__ import annotations

from itertools import pairwise

import torch

from distill3d.guidance import METHODS
from distill3d.guidance.anchords import AnchorDS, AnchorDSConfig, CodeForm, FinetuneConfig
from distill3d.priors.base import Condition

from .contract import PROMPT, GuidanceContract, make_input
from .helpers import VIEW_NAMES, abar, noised, one, replay, x0
from .tiny_prior import TinyPrior


class TestAnchorDSContract(GuidanceContract):
    def make_method(self):
        return AnchorDS()


class TestAnchorDSCodeFormContract(GuidanceContract):
    def make_method(self):
        return AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry")))


class TestAnchorDSFilterContract(GuidanceContract):
    def make_method(self):
        return AnchorDS(AnchorDSConfig(filter_threshold=10.0))  # keeps every view: a non-zero gradient


class TestAnchorDSFinetuneContract(GuidanceContract):
    def make_method(self):
        return AnchorDS(AnchorDSConfig(finetune=FinetuneConfig()))


def _reconstruction(prior, z_t, ti, a, image):
    e_anchor = one(prior, z_t, ti, Condition("", image, 0.5))  # ε̂(z_t; ∅, I)
    return prior.decode(x0(z_t, e_anchor, a)[None])[0], e_anchor


def test_paper_form_is_eq11_and_its_source_gives_eq12_13():
    prior = TinyPrior()
    inp = make_input(prior)
    out = AnchorDS()(prior, inp, torch.Generator().manual_seed(2))
    t, eps = replay(prior, AnchorDSConfig().timesteps, inp, 2)
    assert torch.equal(out.t, t) and out.num_prior_evals == 6  # the reconstruction costs no extra row
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        e_tgt = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))  # ε̂(z_t; t, y)
        recon, e_src = _reconstruction(prior, z_t, ti, a, inp.images[i])
        torch.testing.assert_close(out.grad[i], (1 - a) * (e_tgt - e_src), rtol=1e-5, atol=1e-6)  # Eq. 11
        torch.testing.assert_close(out.extras.reconstruction[i], recon, rtol=1e-5, atol=1e-5)  # Eq. 12
        l_rec = ((recon - inp.images[i]) ** 2).mean()  # Eq. 13
        torch.testing.assert_close(out.extras.l_rec[i], l_rec, rtol=1e-5, atol=1e-6)
    assert out.extras.keep.all()


def test_code_form_is_the_authors_cfg_with_clamp():
    prior = TinyPrior()
    inp = make_input(prior, step=10)
    method = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry")))
    out = method(prior, inp, torch.Generator().manual_seed(4))
    t, eps = replay(prior, method.config.timesteps, inp, 4)
    limit = 1.5 + 0.5 * 10 / 1000
    assert out.num_prior_evals == 9  # target, source and the ε̂(∅, I) reconstruction row
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        img = inp.images[i]
        e_tgt = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view", img, 0.5))
        e_src = one(prior, z_t, ti, Condition("blurry", img, 0.5))
        expected = ((1 - a) * (e_tgt + 100.0 * (e_tgt - e_src) - eps[i])).clamp(-limit, limit)
        torch.testing.assert_close(out.grad[i], expected, rtol=1e-5, atol=1e-5)
        recon, _ = _reconstruction(prior, z_t, ti, a, img)
        torch.testing.assert_close(out.extras.reconstruction[i], recon, rtol=1e-5, atol=1e-5)
    assert out.grad.abs().max() <= limit
    empty_neg = AnchorDS(AnchorDSConfig(form=CodeForm()))(prior, inp, torch.Generator().manual_seed(4))
    assert empty_neg.num_prior_evals == 6  # y_neg = "": the source row is the reconstruction row


def test_filter_zeroes_views_with_high_l_rec():
    prior = TinyPrior()
    inp = make_input(prior, batch=4)
    free = AnchorDS()(prior, inp, torch.Generator().manual_seed(9))
    l_rec = free.extras.l_rec
    assert l_rec.max() > l_rec.min()
    gamma = float(l_rec.sort().values[1:3].mean())  # between the 2nd and 3rd smallest
    out = AnchorDS(AnchorDSConfig(filter_threshold=gamma))(prior, inp, torch.Generator().manual_seed(9))
    high = l_rec >= gamma
    assert high.sum() == 2 and torch.equal(out.extras.keep, ~high)
    assert (out.grad[high] == 0).all()
    torch.testing.assert_close(out.grad[~high], free.grad[~high])
    assert (out.grad[~high].flatten(1).abs().sum(1) > 0).all()


def test_registry_filter_uses_gamma_003():
    prior = TinyPrior()
    inp = make_input(prior, batch=4)
    out = METHODS["anchords-filter"].factory()(prior, inp, torch.Generator().manual_seed(1))
    assert torch.equal(out.extras.keep, out.extras.l_rec < 0.03)
    assert (out.grad[~out.extras.keep] == 0).all()


def test_plain_anchords_trains_nothing():
    prior = TinyPrior()
    method = AnchorDS()
    assert method.trainable_parameters(prior) == []
    assert method.inner_step(prior, make_input(prior), torch.tensor([100, 100, 100]), torch.Generator()) is None


def test_finetune_inner_step_updates_the_adapter_layer_only():
    prior = TinyPrior()
    method = METHODS["anchords-finetune"].factory()
    params = method.trainable_parameters(prior)
    assert [p.shape for p in params] == [p.shape for p in prior.adapter.parameters()]
    before = [p.detach().clone() for p in params]
    mix_before = prior.mix.clone()
    inp = make_input(prior)
    out = method(prior, inp, torch.Generator().manual_seed(0))
    calls = prior.calls
    step = method.inner_step(prior, inp, out.t, torch.Generator().manual_seed(1))
    assert prior.calls == calls + 1 and step.num_prior_calls == 1 and step.num_prior_evals == 3
    assert all(not torch.equal(b, p) for b, p in zip(before, params))
    assert torch.equal(prior.mix, mix_before)
    assert inp.latents.grad is None


def _finetune_curve(loss: str) -> list[float]:
    prior = TinyPrior()
    method = AnchorDS(AnchorDSConfig(finetune=FinetuneConfig(lr=0.1, loss=loss)))
    inp = make_input(prior)
    t = torch.tensor([150, 300, 450])
    losses = []
    for _ in range(6):
        losses.append(method.inner_step(prior, inp, t, torch.Generator().manual_seed(0)).loss)  # fixed batch
    with torch.no_grad():
        losses.append(float(method.finetune_loss(prior, inp, t, torch.Generator().manual_seed(0))))
    return losses


def test_finetune_decreases_pixel_l_rec_on_a_fixed_batch():
    losses = _finetune_curve("pixel")
    assert losses[-1] < 0.97 * losses[0], losses
    assert all(b < a for a, b in pairwise(losses)), losses


def test_finetune_decreases_latent_mse_on_a_fixed_batch():
    losses = _finetune_curve("latent")
    assert losses[-1] < 0.97 * losses[0], losses
