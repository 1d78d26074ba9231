"""Camera-modulated text tokens (``ToyUNetConfig.camera_text``): FiLM of the caption's tokens by the camera
embedding, zero-initialised so that any weights load unchanged. Tiny random networks, seconds on CPU."""

from __future__ import annotations

import json

import pytest
import torch
from test_toy_prior import tiny_prior

from distill3d.cli.main import main
from distill3d.priors.base import Condition
from distill3d.priors.toy.model import with_camera_text, with_views
from distill3d.priors.toy.prior import ToyPrior
from distill3d.toyworld.dataset import DatasetConfig, build_dataset

PROMPT = "a red cube"


def _rows(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[Condition]]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4, 3, 16, 16, generator=g)
    image = torch.rand(3, 16, 16, generator=g)
    conds = [Condition(PROMPT, camera=(0.0, 20.0)), Condition(PROMPT, camera=(180.0, 20.0)),
             Condition(PROMPT, image, 0.5, camera=(90.0, 10.0)), Condition("", camera=None)]
    return z, torch.tensor([100, 400, 700, 900]), conds


def _randomise(layer: torch.nn.Linear, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(0.5 * torch.randn(layer.weight.shape, generator=g))
        layer.bias.copy_(0.5 * torch.randn(layer.bias.shape, generator=g))


def _tokens_seen(model, conds: list[Condition]) -> torch.Tensor:
    """The text tokens the first cross-attention's key projection receives."""
    seen = []
    block = next(m for m in model.modules() if type(m).__name__ == "SpatialTransformer")
    handle = block.cross.to_k.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    z, t, _ = _rows()
    with torch.no_grad():
        ToyPrior(model).predict_noise(z[:len(conds)], t[:len(conds)], conds)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("views", [1, 4])
def test_the_new_layer_starts_at_zero_so_the_network_computes_what_it_extends(views):
    model = tiny_prior().model if views == 1 else with_views(tiny_prior().model, views)
    new = with_camera_text(model)
    assert new.config.camera_text and not model.config.camera_text and new.config.views == views
    old, extended = model.state_dict(), new.state_dict()
    assert set(extended) - set(old) == {"camera_text.weight", "camera_text.bias"}
    assert all(torch.equal(old[k], extended[k]) for k in old)
    z, t, conds = _rows()
    with torch.no_grad():
        assert torch.equal(ToyPrior(new).predict_noise(z, t, conds), ToyPrior(model).predict_noise(z, t, conds))
    assert with_camera_text(new) is new


def test_once_trained_the_tokens_each_pixel_attends_to_depend_on_the_camera():
    front, back = [Condition(PROMPT, camera=(0.0, 20.0))], [Condition(PROMPT, camera=(180.0, 20.0))]
    plain = tiny_prior().model
    assert torch.equal(_tokens_seen(plain, front), _tokens_seen(plain, back))  # the camera never reaches them
    modulated = with_camera_text(plain)
    _randomise(modulated.camera_text)
    a, b = _tokens_seen(modulated, front), _tokens_seen(modulated, back)
    assert not torch.allclose(a, b)
    # a per-channel scale, not only a shift shared by every token: the tokens' differences change with the camera
    assert not torch.allclose(a[0, 1:] - a[0, :-1], b[0, 1:] - b[0, :-1])
    z, t, _ = _rows()
    with torch.no_grad():
        out_front = ToyPrior(modulated).predict_noise(z[:1], t[:1], front)
        out_back = ToyPrior(modulated).predict_noise(z[:1], t[:1], back)
    assert not torch.allclose(out_front, out_back)


def test_weights_with_the_layer_save_and_load_with_it(tmp_path):
    model = with_camera_text(tiny_prior().model)
    _randomise(model.camera_text)
    ToyPrior(model).save(tmp_path / "p.safetensors", half=False)
    loaded = ToyPrior.load(tmp_path / "p.safetensors")
    assert loaded.model.config.camera_text
    z, t, conds = _rows()
    with torch.no_grad():
        assert torch.equal(loaded.predict_noise(z, t, conds), ToyPrior(model).predict_noise(z, t, conds))


def test_cli_fine_tunes_with_the_layer_added(tmp_path, capsys):
    data_dir = build_dataset(tmp_path / "data", DatasetConfig(count=72, size=16, seed=0), progress=False)
    init = tmp_path / "init.safetensors"
    tiny_prior().save(init, half=False)
    rc = main(["toy", "train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--init", str(init),
               "--camera-text", "--steps", "3", "--stop-at", "2", "--batch", "4", "--eval-captions", "0",
               "--export", str(tmp_path / "out.safetensors")])
    assert rc == 0
    assert "with camera-modulated text tokens" in capsys.readouterr().out
    assert ToyPrior.load(tmp_path / "out.safetensors").model.config.camera_text
    state = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert state["step"] == 2  # --stop-at: stopped before the schedule's end
