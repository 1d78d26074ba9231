"""Training, resuming, exporting and the CLI of the toy prior, on a tiny random dataset (seconds on CPU)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from test_toy_prior import tiny_config

from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.priors.base import alphas_cumprod_cosine
from distill3d.priors.toy.prior import ToyPrior
from distill3d.priors.toy.train import (
    CHECKPOINT,
    TrainConfig,
    draw_batch,
    export_ema,
    load_checkpoint,
    loss_on_batch,
    new_state,
    train,
)

COLOURS = {"red": (1.0, 0.1, 0.1), "blue": (0.1, 0.2, 1.0), "gray": (0.5, 0.5, 0.5)}


@dataclass
class FakeData:
    images: torch.Tensor
    images2: torch.Tensor
    captions: list[str]
    cameras: torch.Tensor


def fake_data(n: int = 40, size: int = 16) -> FakeData:
    """White images with a coloured square whose colour the caption names, at a random place per view."""
    g = torch.Generator().manual_seed(0)
    names = list(COLOURS)
    views = torch.ones(2, n, 3, size, size)
    captions = []
    for i in range(n):
        name = names[i % len(names)]
        captions.append(f"a {name} cube")
        for v in range(2):
            r, c = torch.randint(0, size // 2, (2,), generator=g).tolist()
            views[v, i, :, r:r + size // 2, c:c + size // 2] = torch.tensor(COLOURS[name])[:, None, None]
    cameras = torch.rand(n, 2, 2, generator=g) * torch.tensor([360.0, 40.0])
    to_u8 = lambda x: (x * 255).round().to(torch.uint8)
    return FakeData(to_u8(views[0]), to_u8(views[1]), captions, cameras)


def _cfg(steps: int, **kw) -> TrainConfig:
    return replace(TrainConfig(steps=steps, batch=6, lr=2e-3, warmup=2, holdout=8, seed=0), **kw)


def small_config():
    """The tiny test network with attention only at the lower level: training tests stay at seconds."""
    return tiny_config(attention=(False, True))


def _fixed_loss(model, data, cfg) -> float:
    """Mean loss over the same 4 batches (same noise, t and dropout) for any model."""
    g = torch.Generator().manual_seed(123)
    ac = alphas_cumprod_cosine()
    with torch.no_grad():
        return sum(float(loss_on_batch(model, draw_batch(data, 32, cfg, g), ac, g)) for _ in range(4)) / 4


def test_training_decreases_the_loss(tmp_path):
    data, cfg = fake_data(), _cfg(30)
    before = _fixed_loss(new_state(small_config(), cfg, torch.device("cpu")).model, data, cfg)
    state = train(data, small_config(), cfg, tmp_path, progress=False, log=lambda s: None)
    assert state.step == 30 and (tmp_path / CHECKPOINT).is_file()
    after = _fixed_loss(state.model, data, cfg)
    assert after < 0.8 * before, (before, after)


def test_resume_is_bit_identical(tmp_path):
    data = fake_data()
    whole = train(data, small_config(), _cfg(30), tmp_path / "a", progress=False, log=lambda s: None)
    train(data, small_config(), _cfg(30), tmp_path / "b", progress=False, log=lambda s: None, stop_at=15)
    resumed = train(data, small_config(), _cfg(30), tmp_path / "b", resume=True, progress=False, log=lambda s: None)
    assert resumed.step == 30
    for a, b in ((whole.model, resumed.model), (whole.ema, resumed.ema)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), name
    assert torch.equal(whole.generator.get_state(), resumed.generator.get_state())
    # and the checkpoint on disk holds the same state
    reloaded = load_checkpoint(tmp_path / "b", _cfg(30), torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(reloaded.model.parameters(), whole.model.parameters()))
    opt_a, opt_b = whole.optimizer.state_dict()["state"], reloaded.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i])


def test_init_fine_tunes_from_given_weights(tmp_path):
    """A fine-tune starts where the given model is: its loss at step 0 is that model's, not a fresh one's."""
    data = fake_data()
    trained = train(data, small_config(), _cfg(30), tmp_path / "a", progress=False, log=lambda s: None).ema
    cfg = _cfg(1, lr=1e-12, warmup=1)  # one step that cannot move the weights
    tuned = train(data, tiny_config(), cfg, tmp_path / "b", progress=False, log=lambda s: None, init=trained)
    assert tuned.model.config == trained.config  # the given model's config, not the model_cfg passed
    for a, b in zip(tuned.model.parameters(), trained.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    fresh = new_state(small_config(), cfg, torch.device("cpu")).model
    assert _fixed_loss(tuned.model, data, cfg) < _fixed_loss(fresh, data, cfg)


def test_resume_without_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        train(fake_data(), small_config(), _cfg(2), tmp_path, resume=True, progress=False)


def test_batches_follow_the_dropout_and_view_rules():
    data = fake_data()
    g = torch.Generator().manual_seed(0)
    same = draw_batch(data, 32, _cfg(1, batch=256), g)
    rows = same.image_rows
    assert 0.35 < len(rows) / 256 < 0.65  # image kept with probability 0.5
    assert 0.2 < sum(c == "" for c in same.captions) / 256 < 0.4  # text dropped with probability 0.3
    assert torch.allclose(2 * same.cond_image - 1, same.x0[rows])  # "same": the denoised view itself
    with_view = [c for c in same.captions if c.endswith(" view")]
    assert 0.1 < len(with_view) / 256 < 0.4
    g = torch.Generator().manual_seed(0)
    other = draw_batch(data, 32, _cfg(1, batch=256, image_view="other"), g)
    assert not torch.allclose(2 * other.cond_image - 1, other.x0[other.image_rows])


def test_export_writes_loadable_ema_weights(tmp_path):
    state = train(fake_data(), small_config(), _cfg(3), tmp_path / "run", progress=False, log=lambda s: None)
    path = tmp_path / "weights" / "toy_prior.safetensors"
    export_ema(tmp_path / "run", path)
    prior = ToyPrior.load(path)
    for x, y in zip(prior.model.parameters(), state.ema.parameters(), strict=True):
        torch.testing.assert_close(x, y, atol=2e-3, rtol=2e-3)  # fp16 storage


def test_cli_missing_weights_is_one_line_exit_2(tmp_path, capsys):
    code = main(["toy", "sample", "a red cube", "--weights", str(tmp_path / "nope.safetensors"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: no toy prior weights") and err.count("\n") == 1


def test_cli_sample_writes_pngs_and_grid(tmp_path, capsys):
    from PIL import Image
    from test_toy_prior import tiny_prior

    weights = tmp_path / "toy_prior.safetensors"
    tiny_prior().save(weights)
    out = tmp_path / "out"
    code = main(["toy", "sample", "a red cube", "--weights", str(weights), "--out", str(out), "--n", "2",
                 "--steps", "3", "--camera", "30", "10"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "sample_00.png", "sample_01.png"]
    assert Image.open(out / "sample_00.png").size == (16, 16)


def test_cli_train_without_dataset_is_exit_2(tmp_path, capsys):
    code = main(["toy", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run")])
    assert code == 2 and "no toy dataset" in capsys.readouterr().err


def test_package_weights_path_is_inside_the_package():
    from distill3d.priors.toy.prior import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS.parent == Path(__import__("distill3d").__file__).parent / "weights"


def test_evaluate_is_deterministic_and_keeps_the_mode():
    from test_toy_prior import tiny_prior

    from distill3d.priors.toy.evaluate import evaluate

    model = tiny_prior().model.train()
    data = fake_data()
    a, b = evaluate(model, data, range(32, 40)), evaluate(model, data, range(32, 40))
    assert a == b and model.training
    assert 0 < a.rec < 1 and a.mse_none > 0 and a.text_steer > 0
    assert evaluate(model, data, range(32, 40), image_view="other").mse_image != a.mse_image
