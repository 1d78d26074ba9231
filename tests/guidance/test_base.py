"""The shared math of distill3d.guidance.base and the registry."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.guidance import EDIT_METHODS, GENERATE_METHODS, KINDS, METHODS, find_method
from distill3d.guidance.base import (
    AnnealedTimesteps,
    Constant,
    LinearRamp,
    MaxSwitchTimesteps,
    UniformTimesteps,
    add_noise,
    cfg,
    clamp_grad,
    ddim_step,
    predict_x0,
    stack_rows,
    surrogate_loss,
    view_prompts,
    weighting,
)
from distill3d.priors.base import Condition, alphas_cumprod_scaled_linear

ABAR = alphas_cumprod_scaled_linear()


def test_linear_ramp_and_constant():
    r = LinearRamp(1.5, 2.0, 0, 1000)
    assert r(0, 5000) == 1.5 and r(500, 5000) == pytest.approx(1.75) and r(1000, 5000) == 2.0
    assert r(4000, 5000) == 2.0
    over_training = LinearRamp(0.4, 0.8)  # end_step None: the last step
    assert over_training(0, 101) == 0.4 and over_training(50, 101) == pytest.approx(0.6)
    assert over_training(100, 101) == pytest.approx(0.8)
    delayed = LinearRamp(0.0, 1.0, 10, 20)
    assert delayed(5, 100) == 0.0 and delayed(15, 100) == pytest.approx(0.5)
    assert Constant(3.0)(7, 10) == 3.0


def test_uniform_timesteps_cover_the_range_and_nothing_else():
    g = torch.Generator().manual_seed(0)
    t = UniformTimesteps(0.02, 0.98).sample(0, 10, 20000, 1000, g)
    assert t.dtype == torch.long and t.min() == 20 and t.max() == 980


def test_max_switch_lowers_the_maximum_at_the_switch_step():
    s = MaxSwitchTimesteps(0.02, 0.98, 0.55, switch_step=500)
    before = s.sample(499, 1000, 5000, 1000, torch.Generator().manual_seed(0))
    after = s.sample(500, 1000, 5000, 1000, torch.Generator().manual_seed(0))
    assert before.max() > 900 and after.max() == 550 and after.min() >= 20


@pytest.mark.parametrize("curve,mid", [("linear", 500), ("sqrt", round(980 - 960 * math.sqrt(0.5)))])
def test_annealed_timesteps_decrease_deterministically(curve, mid):
    s = AnnealedTimesteps(0.02, 0.98, curve)
    ts = [int(s.sample(k, 101, 2, 1000, torch.Generator().manual_seed(k))[0]) for k in range(101)]
    assert ts[0] == 980 and ts[-1] == 20 and ts[50] == mid
    assert all(a >= b for a, b in pairwise(ts))
    assert torch.equal(s.sample(3, 101, 4, 1000, torch.Generator()), torch.full((4,), ts[3]))


def test_weightings():
    a = torch.tensor([0.25, 0.81])
    assert torch.allclose(weighting("sds", a), torch.tensor([0.75, 0.19]))
    assert torch.equal(weighting("uniform", a), torch.ones(2))
    assert torch.allclose(weighting("fantasia3d", a), torch.tensor([0.5 * 0.75, 0.9 * 0.19]))
    with pytest.raises(ValueError):
        weighting("nope", a)  # type: ignore[arg-type]


def test_cfg_standard_form_is_threestudio_plus_one():
    g = torch.Generator().manual_seed(0)
    e_null, e_y = torch.randn(5, generator=g), torch.randn(5, generator=g)
    threestudio_100 = e_y + 100.0 * (e_y - e_null)
    torch.testing.assert_close(cfg(e_null, e_y, 101.0), threestudio_100)
    torch.testing.assert_close(cfg(e_null, e_y, 1.0), e_y)


def test_tweedie_inverts_forward_noising_with_the_true_noise():
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    a = ABAR[torch.tensor([100, 900])]
    z_t = add_noise(z, eps, a)
    torch.testing.assert_close(z_t[1], math.sqrt(a[1]) * z[1] + math.sqrt(1 - a[1]) * eps[1])
    torch.testing.assert_close(predict_x0(z_t, eps, a), z, rtol=1e-4, atol=1e-4)


def test_ddim_step_with_the_true_noise_lands_on_the_forward_process():
    g = torch.Generator().manual_seed(1)
    z, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    a_from, a_to = ABAR[torch.tensor([50, 300])], ABAR[torch.tensor([250, 700])]
    moved = ddim_step(add_noise(z, eps, a_from), eps, a_from, a_to)
    torch.testing.assert_close(moved, add_noise(z, eps, a_to), rtol=1e-5, atol=1e-5)


def test_surrogate_loss_gradient_and_value():
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    grad = torch.randn(2, 4, 3, 3)
    loss = surrogate_loss(z, grad)
    assert loss.item() == pytest.approx(0.5 * (grad**2).sum().item(), rel=1e-5)
    loss.backward()
    torch.testing.assert_close(z.grad, grad)


def test_clamp_grad():
    g = torch.tensor([-3.0, -0.5, 0.2, 2.5])
    assert torch.equal(clamp_grad(g, 1.0), torch.tensor([-1.0, -0.5, 0.2, 1.0]))
    assert clamp_grad(g, None) is g


def test_view_prompts_follow_the_convention():
    cams = Cameras.from_angles([0.0, 90.0, 180.0, 270.0, 10.0], [0.0, 0.0, 0.0, 0.0, 70.0])
    assert view_prompts("a cat", cams, True) == ["a cat, front view", "a cat, side view", "a cat, back view",
                                                  "a cat, side view", "a cat, overhead view"]
    assert view_prompts("a cat", cams, False) == ["a cat"] * 5


def test_stack_rows_rejects_mismatched_groups():
    z, t = torch.zeros(2, 4, 8, 8), torch.zeros(2, dtype=torch.long)
    rows = stack_rows([(z, t, [Condition("a")] * 2), (z + 1, t + 3, [Condition("")] * 2)])
    assert rows.z.shape[0] == 4 and rows.t.tolist() == [0, 0, 3, 3] and rows.conditions[2].text == ""
    with pytest.raises(ValueError):
        stack_rows([(z, t, [Condition("a")])])


def test_registry_names_kinds_and_presets():
    assert {"sds", "anchords", "anchords-filter", "anchords-finetune", "isd", "uds"} <= set(GENERATE_METHODS)
    assert {"uds", "dds", "pds"} <= set(EDIT_METHODS)
    assert len({(e.kind, e.name) for e in METHODS}) == len(METHODS)  # a name is unique within its kind
    for e in METHODS:
        assert e.kind in KINDS and e.description and "\n" not in e.description, e.name
        method = e.build()
        assert isinstance(method, e.cls) and isinstance(method.config, e.config_type), e.name
    assert GENERATE_METHODS["anchords-filter"].build().config.filter_threshold == 0.03
    assert GENERATE_METHODS["anchords-finetune"].build().config.finetune.lr == 1e-4
    assert GENERATE_METHODS["sds"].build(guidance_scale=7.5).config.guidance_scale == 7.5
    assert find_method("uds", "edit").cls is not find_method("uds", "generate").cls
    with pytest.raises(UserError, match="'dds' is an edit method"):
        find_method("dds", "generate")
    with pytest.raises(UserError, match=f"unknown edit method 'magic'; choose one of {', '.join(EDIT_METHODS)}$"):
        find_method("magic", "edit")
