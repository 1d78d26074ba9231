"""The toy prior behind the Prior interface, with a tiny randomly initialised network (seconds on CPU)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.priors.base import Condition, Prior
from distill3d.priors.sampling import ddim_timesteps, sample
from distill3d.priors.toy.model import ToyUNet, ToyUNetConfig
from distill3d.priors.toy.prior import ToyPrior, config_path
from distill3d.priors.toy.text import BOS, PAD, UNK, Tokenizer

WORDS = ("a", "red", "blue", "gray", "cube", "sphere", "torus", "on", "top", "of", "next", "to", "front",
         "side", "back", "overhead", "view")


def tiny_config(**kw) -> ToyUNetConfig:
    base = ToyUNetConfig(vocabulary=WORDS, image_size=16, channels=(8, 16), attention=(True, True), heads=2,
                         emb_dim=16, text_dim=16, text_layers=1, max_text_len=12, image_dim=16, image_grid=2, groups=4)
    return replace(base, **kw)


def tiny_prior(seed: int = 0) -> ToyPrior:
    """Random weights everywhere (the zero-initialised output layers too), so every path matters."""
    torch.manual_seed(seed)
    model = ToyUNet(tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return ToyPrior(model)


@pytest.fixture(scope="module")
def prior() -> ToyPrior:
    return tiny_prior()


def _inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 1000, (n,), generator=g)


def _image(seed: int, size: int = 16) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def test_is_a_prior_with_pixel_space_latents(prior):
    assert isinstance(prior, Prior)
    assert prior.alphas_cumprod.shape == (1000,) and prior.num_timesteps == 1000
    x = torch.rand(2, 3, 16, 16)
    z = prior.encode(x)
    assert z.shape == x.shape and z.min() >= -1 and z.max() <= 1
    torch.testing.assert_close(prior.decode(z), x)


def test_predict_noise_shape(prior):
    z, t = _inputs(3)
    eps = prior.predict_noise(z, t, [Condition("a red cube")] * 3)
    assert eps.shape == (3, 3, 16, 16) and torch.isfinite(eps).all()


def test_mixed_batch_equals_separate_calls(prior):
    conditions = [
        Condition("a red cube"),
        Condition("a blue sphere on top of a gray cube", _image(0), 0.7),
        Condition("", _image(1), 1.0),  # image only
        Condition("a red cube, front view", camera=(30.0, 10.0)),
        Condition(""),  # nothing
        Condition("a gray torus", _image(2), 0.0),  # λ_ip = 0: no image
        Condition("", _image(3, size=24), 0.5, camera=(200.0, 45.0)),  # resized image + camera
    ]
    z, t = _inputs(len(conditions))
    with torch.no_grad():
        batched = prior.predict_noise(z, t, conditions)
        for i, c in enumerate(conditions):
            single = prior.predict_noise(z[i:i + 1], t[i:i + 1], [c])
            torch.testing.assert_close(batched[i:i + 1], single, atol=1e-5, rtol=0)


def test_image_scale_zero_is_exactly_no_image(prior):
    z, t = _inputs(2)
    with torch.no_grad():
        none = prior.predict_noise(z, t, [Condition("a red cube")] * 2)
        zero = prior.predict_noise(z, t, [Condition("a red cube", _image(0), 0.0)] * 2)
        some = prior.predict_noise(z, t, [Condition("a red cube", _image(0), 1.0)] * 2)
    assert torch.equal(none, zero)
    assert not torch.allclose(none, some, atol=1e-4)


def test_image_scale_is_applied_per_row(prior):
    z, t = _inputs(1)
    z, t = z.expand(2, -1, -1, -1), t.expand(2)
    with torch.no_grad():
        eps = prior.predict_noise(z, t, [Condition("", _image(0), 0.3), Condition("", _image(0), 1.0)])
    assert not torch.allclose(eps[0], eps[1], atol=1e-4)


def test_camera_changes_the_prediction(prior):
    z, t = _inputs(1)
    with torch.no_grad():
        none = prior.predict_noise(z, t, [Condition("a red cube")])
        front = prior.predict_noise(z, t, [Condition("a red cube", camera=(0.0, 0.0))])
        back = prior.predict_noise(z, t, [Condition("a red cube", camera=(180.0, 0.0))])
    assert not torch.allclose(none, front, atol=1e-4)
    assert not torch.allclose(front, back, atol=1e-4)


def test_text_changes_the_prediction(prior):
    z, t = _inputs(1)
    with torch.no_grad():
        a = prior.predict_noise(z, t, [Condition("a red cube")])
        b = prior.predict_noise(z, t, [Condition("a blue sphere")])
    assert not torch.allclose(a, b, atol=1e-4)


def test_deterministic_under_a_seed():
    z, t = _inputs(2)
    c = [Condition("a red cube", _image(0), 1.0), Condition("")]
    with torch.no_grad():
        a = tiny_prior(seed=3).predict_noise(z, t, c)
        b = tiny_prior(seed=3).predict_noise(z, t, c)
        other = tiny_prior(seed=4).predict_noise(z, t, c)
    assert torch.equal(a, b)
    assert not torch.allclose(a, other)


def test_adapter_layers_by_name(prior):
    names = list(prior.model.adapter_layers())
    assert names == ["down.0.attn.ip", "down.1.attn.ip", "mid.attn.ip", "up.0.attn.ip", "up.1.attn.ip"]
    default = prior.adapter_layer()
    assert default is prior.adapter_layer("up.1.attn.ip")  # the last up level's
    assert isinstance(default.to_k_ip, torch.nn.Linear) and isinstance(default.to_v_ip, torch.nn.Linear)
    with pytest.raises(KeyError, match="up.0.attn.ip"):
        prior.adapter_layer("up.7.attn.ip")


def test_adapter_layer_gets_gradients_from_the_image_path():
    """What AnchorDS' fine-tune variant relies on: the frozen prior, with only the adapter turned on."""
    p = tiny_prior()
    layer = p.adapter_layer().requires_grad_(True)
    z, t = _inputs(1)
    p.predict_noise(z, t, [Condition("", _image(0), 1.0)]).pow(2).mean().backward()
    assert layer.to_k_ip.weight.grad is not None and layer.to_k_ip.weight.grad.abs().sum() > 0
    assert all(q.grad is None for n, q in p.model.named_parameters() if ".ip." not in n)


def test_save_load_round_trip(tmp_path, prior):
    z, t = _inputs(2)
    c = [Condition("a red cube", _image(0), 1.0, (45.0, 20.0)), Condition("a blue sphere")]
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    prior.save(full, half=False)
    prior.save(half, half=True)
    assert config_path(full).is_file()
    assert not full.read_bytes().startswith(b"\x80")  # not a pickle
    with torch.no_grad():
        ref = prior.predict_noise(z, t, c)
        assert torch.equal(ToyPrior.load(full).predict_noise(z, t, c), ref)
        loaded_half = ToyPrior.load(half)
        assert all(p.dtype == torch.float32 for p in loaded_half.parameters())
        torch.testing.assert_close(loaded_half.predict_noise(z, t, c), ref, atol=5e-2, rtol=5e-2)


def test_missing_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no toy prior weights"):
        ToyPrior.load(tmp_path / "nope.safetensors")


def test_tokenizer():
    tok = Tokenizer(WORDS, max_len=8)
    ids = tok.encode("A Red cube, FRONT view!")
    assert ids[0] == BOS and ids[1:6] == [tok.words.index(w) for w in ("a", "red", "cube", "front", "view")]
    assert ids[6:] == [PAD, PAD]
    assert tok.encode("") == [BOS] + [PAD] * 7
    assert tok.encode("a green cube")[2] == UNK
    with pytest.raises(UserError, match="at most 7"):
        tok.encode("a red cube on top of a blue sphere")


def test_ddim_timesteps():
    ts = ddim_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True)


def test_sample_shapes_and_seed(prior):
    a = sample(prior, "a red cube", n=2, cfg=3.0, steps=4, seed=0)
    assert a.shape == (2, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, sample(prior, "a red cube", n=2, cfg=3.0, steps=4, seed=0))
    assert not torch.equal(a, sample(prior, "a red cube", n=2, cfg=3.0, steps=4, seed=1))


def test_cfg_zero_is_the_unconditional_sample(prior):
    """ε̂(∅) + 0·(ε̂(y) − ε̂(∅)) = ε̂(∅): guidance 0 on any text equals sampling the empty prompt."""
    uncond = sample(prior, "", n=2, cfg=1.0, steps=4, seed=0, camera=(90.0, 0.0))
    assert torch.equal(sample(prior, "a red cube", n=2, cfg=0.0, steps=4, seed=0, camera=(90.0, 0.0)), uncond)
    assert not torch.equal(sample(prior, "a red cube", n=2, cfg=5.0, steps=4, seed=0, camera=(90.0, 0.0)), uncond)
