from __future__ import annotations

import dataclasses
from itertools import pairwise

import torch

from distill3d.guidance import GENERATE_METHODS
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


class TestAnchorDSAuthorsFilterContract(GuidanceContract):
    def make_method(self):
        return AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry"), filter_threshold=10.0,
                                       filter_source="authors"))


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
    empty_neg = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="")))(prior, inp, torch.Generator().manual_seed(4))
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


# The authors' grid, written out: diffusers' DDIMScheduler.set_timesteps(50) with SD 1.5's scheduler config
# ("leading" spacing, steps_offset 1) gives timesteps 981, 961, ..., 21, 1.
AUTHORS_GRID = [981 - 20 * k for k in range(50)]


def _authors_t(t: int) -> int:
    """ip_adapter_guidance.py: the first grid step (descending) that is not greater than t."""
    return next(g for g in AUTHORS_GRID if not g > t)


def _authors_reconstructions(prior, method, inp, seed):
    """D(x̂0) read from the SOURCE row ε̂(z_t; y_neg, I) at the snapped t, per view, by hand."""
    t, eps = replay(prior, method.config.timesteps, inp, seed)
    recons, snapped = [], []
    for i in range(inp.latents.shape[0]):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        e_src = one(prior, z_t, ti, Condition("blurry", inp.images[i], 0.5))  # the source row
        snapped.append(_authors_t(ti))
        recons.append(prior.decode(x0(z_t, e_src, abar(prior, snapped[-1]))[None])[0])
    return torch.stack(recons), t, snapped


def test_authors_filter_reads_x0_from_the_source_row_at_the_snapped_t():
    prior = TinyPrior()
    inp = make_input(prior, batch=4)
    free = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry"), filter_source="authors"))
    out = free(prior, inp, torch.Generator().manual_seed(5))
    assert out.num_prior_evals == 8  # target and source rows only: no ε̂(∅, I) row
    recon, t, snapped = _authors_reconstructions(prior, free, inp, 5)
    assert any(s != int(ti) for s, ti in zip(snapped, t))  # the snap moved t here, so ᾱ differs
    torch.testing.assert_close(out.extras.reconstruction, recon, rtol=1e-5, atol=1e-5)
    l_rec = ((recon - inp.images) ** 2).flatten(1).mean(1)  # Eq. 13
    torch.testing.assert_close(out.extras.l_rec, l_rec, rtol=1e-5, atol=1e-6)
    paper = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry")))(prior, inp,
                                                                           torch.Generator().manual_seed(5))
    assert (paper.extras.l_rec - l_rec).abs().max() > 1e-4  # today's source is another estimate
    # the filter (Eq. 14) on the authors' L_rec, γ between the 2nd and 3rd smallest
    gamma = float(l_rec.sort().values[1:3].mean())
    method = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry"), filter_threshold=gamma,
                                     filter_source="authors"))
    kept = method(prior, inp, torch.Generator().manual_seed(5))
    assert torch.equal(kept.extras.keep, l_rec < gamma) and (kept.grad[l_rec >= gamma] == 0).all()
    scalars = kept.extras.scalars()
    assert scalars["keep_rate"] == scalars["keep_rate_authors"] == 0.5
    assert "keep_rate_paper" not in scalars  # y_neg ≠ "": the paper's ε̂(∅, I) row was not evaluated


def test_paper_filter_reports_the_authors_keep_rate_beside_its_own():
    prior = TinyPrior()
    inp = make_input(prior, batch=4)
    probe = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry")))
    recon, _, _ = _authors_reconstructions(prior, probe, inp, 6)
    l_authors = ((recon - inp.images) ** 2).flatten(1).mean(1)
    gamma = float(l_authors.sort().values[0:2].mean())  # the authors' filter keeps exactly one view
    method = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry"), filter_threshold=gamma))
    out = method(prior, inp, torch.Generator().manual_seed(6))
    assert out.num_prior_evals == 12  # target, source and the ε̂(∅, I) row of Eq. 12
    scalars = out.extras.scalars()
    assert scalars["keep_rate_authors"] == 0.25
    assert scalars["keep_rate_paper"] == scalars["keep_rate"] == float((out.extras.l_rec < gamma).float().mean())


def test_the_authors_grid_snaps_down():
    from distill3d.guidance.anchords import snap_to_ddim_grid

    t = torch.tensor([1, 20, 21, 22, 40, 41, 500, 980, 981, 999])
    assert snap_to_ddim_grid(t, 1000).tolist() == [_authors_t(int(v)) for v in t] == [
        1, 1, 21, 21, 21, 41, 481, 961, 981, 981]


# The registry's filter (γ = 0.03) keeping a perfect anchor and dropping a bad one: test_behaviour.py (this
# prior's random renders reconstruct badly, so here it would drop every view and pass for a zero gradient).


def test_plain_anchords_trains_nothing():
    prior = TinyPrior()
    method = AnchorDS()
    assert method.trainable_parameters(prior) == []
    inp = make_input(prior)
    out = method(prior, inp, torch.Generator().manual_seed(0))
    assert out.extras.finetune_loss is None
    assert method.inner_step(prior, inp, out, torch.Generator()) is None


def test_finetune_inner_step_updates_the_adapter_layer_only():
    prior = TinyPrior()
    method = GENERATE_METHODS["anchords-finetune"].build()
    params = method.trainable_parameters(prior)
    assert [p.shape for p in params] == [p.shape for p in prior.adapter.parameters()]
    before = [p.detach().clone() for p in params]
    mix_before = prior.mix.clone()
    inp = make_input(prior)
    out = method(prior, inp, torch.Generator().manual_seed(0))
    assert out.num_prior_calls == 1 and out.num_prior_evals == 6  # the same one call as plain AnchorDS
    calls = prior.calls
    step = method.inner_step(prior, inp, out, torch.Generator().manual_seed(1))
    assert prior.calls == calls and step.num_prior_calls == 0 and step.num_prior_evals == 0  # reuses the call
    torch.testing.assert_close(torch.tensor(step.loss), out.extras.l_rec.mean())  # the reported L_rec (Eq. 13)
    assert all(not torch.equal(b, p) for b, p in zip(before, params))
    assert torch.equal(prior.mix, mix_before)
    assert inp.latents.grad is None


def test_finetune_gradient_is_the_gradient_of_eq13_wrt_the_adapter_layer():
    """The pixel fine-tune's update direction is ∂L_rec/∂θ of the guidance step's own source rows."""
    prior = TinyPrior()
    method = AnchorDS(AnchorDSConfig(finetune=FinetuneConfig(lr=1e-3)))
    inp = make_input(prior)
    out = method(prior, inp, torch.Generator().manual_seed(3))
    out.extras.finetune_loss.backward(retain_graph=True)
    got = [p.grad.clone() for p in method.trainable_parameters(prior)]
    t, eps = replay(prior, AnchorDSConfig().timesteps, inp, 3)
    for p in method.trainable_parameters(prior):
        p.grad = None
    losses = []
    for i in range(3):
        a = abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        recon, _ = _reconstruction(prior, z_t, int(t[i]), a, inp.images[i])
        losses.append(((recon - inp.images[i]) ** 2).mean())
    torch.stack(losses).mean().backward()
    for g, p in zip(got, method.trainable_parameters(prior)):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


def test_latent_finetune_makes_one_fresh_noise_call():
    prior = TinyPrior()
    method = AnchorDS(AnchorDSConfig(finetune=FinetuneConfig(loss="latent")))
    inp = make_input(prior)
    out = method(prior, inp, torch.Generator().manual_seed(0))
    assert out.extras.finetune_loss is None
    calls = prior.calls
    step = method.inner_step(prior, inp, out, torch.Generator().manual_seed(1))
    assert prior.calls == calls + 1 and step.num_prior_calls == 1 and step.num_prior_evals == 3


def _finetune_curve(loss: str) -> list[float]:
    """Fine-tune steps on a fixed batch (fixed noise: the same generator seed each time)."""
    prior = TinyPrior()
    method = AnchorDS(AnchorDSConfig(finetune=FinetuneConfig(lr=0.1, loss=loss)))
    inp = make_input(prior)
    losses = []
    for _ in range(6):
        out = method(prior, inp, torch.Generator().manual_seed(0))
        losses.append(method.inner_step(prior, inp, out, torch.Generator().manual_seed(0)).loss)
    out = method(prior, inp, torch.Generator().manual_seed(0))
    if loss == "pixel":
        losses.append(float(out.extras.l_rec.mean()))
    else:
        with torch.no_grad():
            losses.append(float(method.finetune_loss(prior, inp, out.t, torch.Generator().manual_seed(0))))
    return losses


def test_finetune_decreases_pixel_l_rec_on_a_fixed_batch():
    losses = _finetune_curve("pixel")
    assert losses[-1] < 0.97 * losses[0], losses
    assert all(b < a for a, b in pairwise(losses)), losses


def test_finetune_decreases_latent_mse_on_a_fixed_batch():
    losses = _finetune_curve("latent")
    assert losses[-1] < 0.97 * losses[0], losses


def test_finetune_keeps_one_optimizer_when_the_prior_hands_out_fresh_layer_containers():
    """StableDiffusionPrior.adapter_layer builds a new ModuleList each call: Adam's state must survive."""

    class FreshContainers(TinyPrior):
        def adapter_layer(self, name=None):
            return torch.nn.ModuleList([self.adapter])

    prior = FreshContainers()
    method = GENERATE_METHODS["anchords-finetune"].build()
    inp = make_input(prior)
    for seed in range(3):
        out = method(prior, inp, torch.Generator().manual_seed(seed))
        method.inner_step(prior, inp, out, torch.Generator())
    states = method.state_dict(prior)["optimizer"]["state"]
    assert states and all(int(s["step"]) == 3 for s in states.values())


# ---- ControlNet anchors: the render's control map joins the image on the anchored branches ----------------


class _RecordingPrior(TinyPrior):
    """TinyPrior with a "ControlNet" that keeps the conditions of every call."""

    def __init__(self) -> None:
        super().__init__(control_kind="normal")
        self.seen: list[list[Condition]] = []

    def predict_noise(self, z_t, t, conditions):
        self.seen.append(list(conditions))
        return super().predict_noise(z_t, t, conditions)


def _with_maps(prior: TinyPrior) -> tuple:
    inp = make_input(prior)
    maps = torch.rand(3, 3, prior.image_size, prior.image_size, generator=torch.Generator().manual_seed(11))
    return dataclasses.replace(inp, control=maps), maps


def test_paper_form_anchors_only_the_source_on_the_control_map():
    prior = _RecordingPrior()
    inp, maps = _with_maps(prior)
    out = AnchorDS(AnchorDSConfig(control_scale=0.8))(prior, inp, torch.Generator().manual_seed(2))
    target, source = prior.seen[-1][:3], prior.seen[-1][3:]
    assert all(c.control is None and c.control_scale == 0 for c in target)  # Eq. 11: ε̂(z_t; t, y)
    assert all(torch.equal(c.control, m) and c.control_scale == 0.8 and c.image_scale == 0.5
               for c, m in zip(source, maps))
    t, eps = replay(prior, AnchorDSConfig().timesteps, inp, 2)
    for i in range(3):
        ti, a = int(t[i]), abar(prior, int(t[i]))
        z_t = noised(inp.latents[i].detach(), eps[i], a)
        e_tgt = one(prior, z_t, ti, Condition(f"{PROMPT}, {VIEW_NAMES[i]} view"))
        e_src = one(prior, z_t, ti, Condition("", inp.images[i], 0.5, control=maps[i], control_scale=0.8))
        torch.testing.assert_close(out.grad[i], (1 - a) * (e_tgt - e_src), rtol=1e-5, atol=1e-6)
        recon = prior.decode(x0(z_t, e_src, a)[None])[0]  # Eq. 12 from the map-anchored source
        torch.testing.assert_close(out.extras.reconstruction[i], recon, rtol=1e-5, atol=1e-5)
    without = AnchorDS(AnchorDSConfig(control_scale=0.8))(prior, make_input(prior),
                                                         torch.Generator().manual_seed(2))
    assert (without.grad - out.grad).abs().max() > 1e-4  # the maps did change the source


def test_code_form_anchors_both_branches_and_the_reconstruction_row_on_the_map():
    prior = _RecordingPrior()
    inp, maps = _with_maps(prior)
    method = AnchorDS(AnchorDSConfig(form=CodeForm(negative_prompt="blurry")))
    method(prior, inp, torch.Generator().manual_seed(4))
    rows = prior.seen[-1]
    assert len(rows) == 9
    for group in (rows[:3], rows[3:6], rows[6:]):  # target y, source y_neg, ε̂(∅, I) for Eq. 12
        assert all(torch.equal(c.control, m) and c.control_scale == 1.0 and c.image_scale == 0.5
                   for c, m in zip(group, maps))


def test_control_scale_zero_is_exactly_no_maps():
    prior = TinyPrior(control_kind="depth")
    inp, _ = _with_maps(prior)
    method = AnchorDS(AnchorDSConfig(control_scale=0.0))
    got = method(prior, inp, torch.Generator().manual_seed(3))
    want = method(prior, dataclasses.replace(inp, control=None), torch.Generator().manual_seed(3))
    assert torch.equal(got.grad, want.grad)


def test_the_loop_hands_the_method_the_renders_maps_of_the_priors_kind(tmp_path, monkeypatch):
    from distill3d.pipeline import loop
    from distill3d.pipeline.config import resolve_run_config

    calls, inputs = [], []
    real = loop.control_maps

    def recording_maps(out, cams, kind):
        calls.append((out, cams, kind, real(out, cams, kind)))
        return calls[-1][3]

    class Recording(AnchorDS):
        def __call__(self, prior, inp, generator):
            inputs.append(inp)
            return super().__call__(prior, inp, generator)

    monkeypatch.setattr(loop, "control_maps", recording_maps)
    cfg, _ = resolve_run_config("anchords", {"steps": "1", "views_per_step": "2", "num_gaussians": "100",
                                             "checkpoint_every": "0", "preview_every": "0"})
    loop.optimise(PROMPT, cfg, Recording(), TinyPrior(control_kind="depth"), tmp_path / "maps")
    (out, cams, kind, maps), inp = calls[0], inputs[0]
    assert kind == "depth" and cams is inp.cameras and inp.control is maps
    assert torch.equal(out.image.detach(), inp.images)
    assert maps.shape == (2, 3, 16, 16) and not maps.requires_grad
    loop.optimise(PROMPT, cfg, Recording(), TinyPrior(), tmp_path / "plain")  # no ControlNet: no maps
    assert len(calls) == 1 and inputs[1].control is None


def test_plain_anchords_decodes_only_when_its_diagnostics_are_read():
    """D(ẑ_src) is a 512 px VAE decode on Stable Diffusion: the step must not pay it unless asked."""
    prior = TinyPrior()
    decodes = []
    real = prior.decode
    prior.decode = lambda z: decodes.append(1) or real(z)
    out = AnchorDS()(prior, make_input(prior), torch.Generator().manual_seed(0))
    assert decodes == []
    l_rec, recon = out.extras.l_rec, out.extras.reconstruction
    assert len(decodes) == 1 and l_rec.shape == (3,) and recon.shape[0] == 3
    GENERATE_METHODS["anchords-filter"].build()(prior, make_input(prior), torch.Generator().manual_seed(0))
    assert len(decodes) == 2  # the filter needs L_rec: decoded at once
