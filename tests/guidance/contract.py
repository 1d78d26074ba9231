"""The contract every guidance method passes; each method's test file subclasses :class:`GuidanceContract`."""

from __future__ import annotations

import torch

from distill3d.core.cameras import Cameras
from distill3d.guidance.base import GuidanceInput, GuidanceMethod, surrogate_loss

from .tiny_prior import RowwisePrior, TinyPrior

PROMPT = "a red cube"
SOURCE_PROMPT = "a blue cube"  # y_src of the editing methods' inputs


def make_input(prior: TinyPrior, batch: int = 3, seed: int = 7, step: int = 10, total_steps: int = 100,
               with_source: bool = False) -> GuidanceInput:
    """Views at azimuth 0, 90, 180, ... with random renders; latents require grad like the loop's."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, prior.image_size, prior.image_size, generator=g)
    latents = prior.encode(images).detach().requires_grad_(True)
    cams = Cameras.from_angles([90.0 * i for i in range(batch)], 15.0)
    source = None
    if with_source:
        src_images = torch.rand(batch, 3, prior.image_size, prior.image_size, generator=g)
        source = prior.encode(src_images)
    return GuidanceInput(latents, images, cams, PROMPT, step, total_steps, source,
                         source_prompt=SOURCE_PROMPT if with_source else None)


class GuidanceContract:
    """Subclasses set ``make_method`` (and ``with_source`` for editing methods; ``make_prior`` and ``batch`` for a
    method that needs another prior, e.g. a multi-view one and its groups of 4 views)."""

    with_source = False
    batch = 3  # views of the inputs, at azimuths 0, 90, 180, ...

    def make_method(self) -> GuidanceMethod:
        raise NotImplementedError

    def make_prior(self) -> TinyPrior:
        return TinyPrior()

    def _run(self, prior, method=None, seed: int = 0, inp: GuidanceInput | None = None):
        method = method or self.make_method()
        inp = inp or make_input(prior, batch=self.batch, with_source=self.with_source)
        return method(prior, inp, torch.Generator().manual_seed(seed)), inp

    def test_shape_and_finite(self):
        out, inp = self._run(self.make_prior())
        assert out.grad.shape == inp.latents.shape
        assert torch.isfinite(out.grad).all()
        assert out.t.shape == (inp.latents.shape[0],) and out.t.dtype == torch.long
        assert ((out.t >= 0) & (out.t < 1000)).all()
        assert torch.allclose(out.grad_norm, out.grad.flatten(1).norm(dim=1))
        assert out.grad.abs().sum() > 0, "a zero gradient would make every other check vacuous"

    def test_does_not_backprop_into_latents(self):
        out, inp = self._run(self.make_prior())
        assert not out.grad.requires_grad
        assert inp.latents.grad is None

    def test_seed_determinism(self):
        prior = self.make_prior()
        a, _ = self._run(prior, seed=3)
        b, _ = self._run(prior, seed=3)
        c, _ = self._run(prior, seed=4)
        assert torch.equal(a.grad, b.grad) and torch.equal(a.t, b.t)
        assert not torch.equal(a.grad, c.grad)

    def test_surrogate_loss_gradient_is_the_guidance(self):
        out, inp = self._run(self.make_prior())
        loss = surrogate_loss(inp.latents, out.grad)
        (dz,) = torch.autograd.grad(loss, inp.latents)
        torch.testing.assert_close(dz, out.grad, rtol=1e-6, atol=1e-6)

    def test_counts_its_prior_calls(self):
        prior = self.make_prior()
        method = self.make_method()
        out, _ = self._run(prior, method)
        assert prior.calls == out.num_prior_calls <= method.prior_calls_per_step  # at most (ISM: fewer strides)
        assert prior.rows == out.num_prior_evals

    def test_declares_every_text_besides_the_prompts(self):
        """A prior that reads only its grammar checks ``extra_texts()`` before a run: it must be complete."""
        prior = self.make_prior()
        method = self.make_method()
        self._run(prior, method)
        prompts = (PROMPT, SOURCE_PROMPT) if self.with_source else (PROMPT,)
        undeclared = {t for t in prior.texts if t and not t.startswith(prompts)} - set(method.extra_texts())
        assert not undeclared

    def test_batched_equals_row_by_row(self):
        prior = self.make_prior()
        inp = make_input(prior, batch=self.batch, with_source=self.with_source)
        batched, _ = self._run(prior, seed=5, inp=inp)
        rowwise, _ = self._run(RowwisePrior(prior), seed=5, inp=inp)
        assert torch.equal(batched.t, rowwise.t)
        # float32 rounding of the rows is amplified by the method's own arithmetic (CFG 100, Perp-Neg's
        # projections), so the absolute tolerance is relative to the gradient's scale
        scale = max(1.0, float(batched.grad.abs().max()))
        torch.testing.assert_close(batched.grad, rowwise.grad, rtol=1e-5, atol=1e-6 * scale)
