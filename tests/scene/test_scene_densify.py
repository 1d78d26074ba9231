"""DensifyStrategy: clone, split, prune, opacity reset, schedule and Adam-state bookkeeping."""

from __future__ import annotations

import torch

from distill3d.core.cameras import Cameras
from distill3d.scene import (
    GAUSSIAN_DREAMER,
    LUCID_DREAMER,
    DensifyConfig,
    DensifyStrategy,
    GaussianModel,
    RenderOutput,
    render,
)

ALWAYS = DensifyConfig(densify_from=0, densify_until=100, interval=1, grad_threshold=0.01,
                       percent_dense=0.01, scene_extent=10.0, prune_opacity=0.005, opacity_reset_interval=None,
                       screen_size_from=None)


def model_of(scales, opacities=None):
    n = len(scales)
    pts = torch.stack([torch.linspace(-0.5, 0.5, n), torch.zeros(n), torch.zeros(n)], -1)
    model = GaussianModel.from_points(pts, torch.rand(n, 3, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        model.log_scales.copy_(torch.tensor(scales).log()[:, None].expand(n, 3))
        if opacities is not None:
            model.opacity_logits.copy_(torch.logit(torch.tensor(opacities)))
    return model


def fake_render(n, grads_px, radii, size=64):
    """A RenderOutput for one camera whose means2d gradient is ``grads_px`` (pixels)."""
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = torch.tensor(grads_px, dtype=torch.float32)[None]
    return RenderOutput(image=torch.zeros(1, 3, size, size), alpha=torch.zeros(1, 1, size, size),
                        depth=torch.zeros(1, 1, size, size), means2d=means2d, radii=torch.tensor([radii]))


def adam_with_state(model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    return opt


def test_update_accumulates_ndc_gradient_norms_of_visible_gaussians():
    strategy = DensifyStrategy(ALWAYS, 3)
    strategy.update(fake_render(3, [[3e-4, 4e-4], [1.0, 1.0], [0.0, 1e-4]], [5, 0, 7], size=64))
    # NDC gradient = pixel gradient * size / 2 = 32 x; the culled one (radius 0) is ignored
    torch.testing.assert_close(strategy.state.grad_accum, torch.tensor([5e-4 * 32, 0.0, 1e-4 * 32]))
    torch.testing.assert_close(strategy.state.count, torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(strategy.state.max_radii, torch.tensor([5.0, 0.0, 7.0]))


def test_clone_small_split_large_and_move_adam_state():
    model = model_of([0.01, 0.5, 0.01])  # small hot, large hot, small cold; 0.01 * extent 10 = 0.1 cut
    opt = adam_with_state(model)
    opt.state[model.means]["exp_avg"].copy_(torch.tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3]))
    old_means, old_scales = model.means.detach().clone(), model.scales().detach().clone()
    strategy = DensifyStrategy(ALWAYS, 3)
    strategy.update(fake_render(3, [[1e-3, 0.0], [1e-3, 0.0], [1e-5, 0.0]], [3, 3, 3]))
    report = strategy.step(model, opt, step=1)
    assert (report.cloned, report.split, report.pruned) == (1, 1, 0)
    assert len(model) == 2 + 1 + 2  # kept (0, 2), clone of 0, two halves of 1
    torch.testing.assert_close(model.means[:3].detach(), old_means[[0, 2, 0]])
    torch.testing.assert_close(model.scales()[3:].detach(), old_scales[[1, 1]] / 1.6)  # 1 / (0.8 * 2)
    assert all(opt.state[p]["exp_avg"].shape[0] == 5 for p in model.parameters())
    assert all(any(p is q for q in opt.param_groups[0]["params"]) for p in model.parameters())
    torch.testing.assert_close(opt.state[model.means]["exp_avg"][:, 0], torch.tensor([1.0, 3.0, 0, 0, 0]))
    assert strategy.state.count.shape == (5,) and strategy.state.count.sum() == 0
    model.means.grad = torch.ones_like(model.means)
    opt.step()  # the optimiser keeps working on the new tensors


def test_prune_transparent_and_screen_size_only_when_scheduled():
    cfg = DensifyConfig(densify_from=0, densify_until=100, interval=10, grad_threshold=1.0, scene_extent=10.0,
                        prune_opacity=0.05, opacity_reset_interval=None, screen_size_from=15, max_screen_size=20)
    model = model_of([0.01, 0.01, 0.01], opacities=[0.01, 0.5, 0.5])
    strategy = DensifyStrategy(cfg, 3)
    strategy.update(fake_render(3, [[0.0, 0.0]] * 3, [1, 30, 1]))
    assert strategy.step(model, None, step=5).pruned == 0  # not on the interval
    assert strategy.step(model, None, step=10).pruned == 1  # transparent only: screen size not yet
    assert len(model) == 2
    strategy.update(fake_render(2, [[0.0, 0.0]] * 2, [30, 1]))
    assert strategy.step(model, None, step=20).pruned == 1  # now the 30-px one goes too
    assert len(model) == 1 and strategy.step(model, None, step=200).pruned == 0  # past densify_until


def test_opacity_reset_caps_opacity_and_restarts_its_moments():
    cfg = DensifyConfig(densify_from=1000, densify_until=5000, opacity_reset_interval=300)
    model = model_of([0.01, 0.01], opacities=[0.9, 0.005])
    opt = adam_with_state(model)
    means_avg = opt.state[model.means]["exp_avg"].clone()
    report = DensifyStrategy(cfg, 2).step(model, opt, step=300)
    assert report.opacity_reset
    torch.testing.assert_close(model.opacities().detach(), torch.tensor([0.01, 0.005]))
    assert opt.state[model.opacity_logits]["exp_avg"].abs().sum() == 0
    torch.testing.assert_close(opt.state[model.means]["exp_avg"], means_avg)


def test_presets_drive_a_real_render_loop():
    for cfg in (GAUSSIAN_DREAMER, LUCID_DREAMER):
        assert cfg.densify_from < cfg.densify_until
    model = GaussianModel.random_in_sphere(100, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = DensifyConfig(densify_from=0, densify_until=10, interval=2, grad_threshold=1e-7,
                        opacity_reset_interval=None, screen_size_from=None)
    strategy = DensifyStrategy(cfg, len(model))
    cams = Cameras.from_angles([0.0, 90.0])
    for step in range(1, 5):
        out = render(model, cams, 16)
        (out.image - 0.2).square().mean().backward()
        strategy.update(out)
        opt.step()
        opt.zero_grad()
        strategy.step(model, opt, step)
    assert len(model) > 100


def test_the_gaussians_densifier_follows_the_run_config_and_its_state_round_trips():
    from distill3d.scene import DENSIFY_PRESETS, GaussianRunConfig

    model = model_of([0.001, 0.5])
    assert model.densifier(GaussianRunConfig()) is None  # "none"
    strategy = model.densifier(GaussianRunConfig(densify="toy"))
    assert strategy.config == DENSIFY_PRESETS["toy"] and strategy.state.count.shape == (2,)
    strategy.update(fake_render(2, [[3.0, 0.0], [0.0, 4.0]], [5, 6]))
    other = model.densifier(GaussianRunConfig(densify="toy"))
    other.load_state_dict({k: v.clone() for k, v in strategy.state_dict().items()})
    for name in ("grad_accum", "count", "max_radii"):
        assert torch.equal(getattr(other.state, name), getattr(strategy.state, name)), name
    assert other.state.count.tolist() == [1.0, 1.0]
