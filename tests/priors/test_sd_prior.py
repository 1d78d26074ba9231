"""StableDiffusionPrior against diffusers' own calls, on tiny random models saved in diffusers layout."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers", reason="the Stable Diffusion prior needs the 'sd' extra")

from distill3d.core.errors import UserError
from distill3d.priors.base import Condition, Prior
from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior

# fixtures dirs, prior, pipe: conftest.py


def _latents(n, seed=0):
    return torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_protocol_schedule_and_sizes(prior, pipe):
    assert isinstance(prior, Prior)
    assert prior.num_timesteps == 1000 and prior.image_size == 32
    assert torch.equal(prior.alphas_cumprod, pipe.scheduler.alphas_cumprod.float())
    assert not any(p.requires_grad for p in prior.parameters())


def test_batched_prediction_equals_diffusers_unet(prior, pipe):
    texts = ["a red cube", "", "a red cube, back view", "a yellow sphere"]
    z, t = _latents(4), torch.tensor([20, 500, 980, 500])
    got = prior.predict_noise(z, t, [Condition(s) for s in texts])
    with torch.no_grad():
        emb = torch.cat([pipe.encode_prompt(s, "cpu", 1, False)[0] for s in texts])
        want = pipe.unet(z, t, encoder_hidden_states=emb).sample
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got[0] - got[3]).abs().max() > 1e-3  # different prompts, different predictions


def test_channels_last_predicts_the_same_from_nhwc_weights(prior, dirs):
    fast = StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), channels_last=True))
    conv = next(m for m in fast.unet.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not next(m for m in prior.unet.modules() if isinstance(m, torch.nn.Conv2d)).weight.is_contiguous(
        memory_format=torch.channels_last)
    conds = [Condition("a red cube"), Condition("")]
    z, t = _latents(2, seed=3), torch.tensor([300, 700])
    torch.testing.assert_close(fast.predict_noise(z, t, conds), prior.predict_noise(z, t, conds),
                               rtol=1e-4, atol=1e-5)


def test_mixed_rows_equal_row_by_row(prior):
    conds = [Condition("a red cube"), Condition(""), Condition("a yellow sphere", camera=(90.0, 10.0))]
    z, t = _latents(3, seed=1), torch.tensor([100, 400, 900])
    batched = prior.predict_noise(z, t, conds)
    rows = torch.cat([prior.predict_noise(z[i:i + 1], t[i:i + 1], [c]) for i, c in enumerate(conds)])
    torch.testing.assert_close(batched, rows, rtol=1e-5, atol=1e-5)


def test_cfg_combination_equals_pipeline_step(prior, pipe, dirs):
    """ε̂(∅) + s(ε̂(y) − ε̂(∅)) from one batched call, stepped by DDIM, equals one pipeline step."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    ref = StableDiffusionPipeline(**{**pipe.components, "scheduler": DDIMScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing")})
    z, s = _latents(1, seed=2), 7.5
    want = ref("a red cube", negative_prompt="blurry", num_inference_steps=1, guidance_scale=s, height=32,
               width=32, latents=z.clone(), output_type="latent").images
    sched = DDIMScheduler.from_config(ref.scheduler.config)
    sched.set_timesteps(1)
    t = sched.timesteps[0]
    eps_neg, eps_txt = prior.predict_noise(z.repeat(2, 1, 1, 1), t.repeat(2),
                                           [Condition("blurry"), Condition("a red cube")])
    guided = eps_neg + s * (eps_txt - eps_neg)
    got = sched.step(guided[None], t, z).prev_sample
    torch.testing.assert_close(got, want, rtol=1e-3, atol=5e-4)


def test_text_cache_keyed_by_string(prior):
    a = prior.text_embeddings(["cache probe one", "cache probe two"])
    n = len(prior._text_cache)
    b = prior.text_embeddings(["cache probe two", "cache probe one"])
    assert len(prior._text_cache) == n
    assert torch.equal(a[0], b[1]) and not torch.equal(a[0], a[1])


def test_encode_is_the_posterior_mean_and_decode_inverts_shapes(prior):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    z = prior.encode(images)
    with torch.no_grad():
        want = prior.vae.encode(2 * images - 1).latent_dist.mean * prior.vae.config.scaling_factor
    assert z.shape == (2, 4, 16, 16) and z.dtype == torch.float32
    torch.testing.assert_close(z, want)
    torch.testing.assert_close(prior.encode(images), z, rtol=0, atol=0)  # deterministic
    x = prior.decode(z)
    assert x.shape == (2, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    assert prior.encode(torch.rand(1, 3, 48, 48)).shape == (1, 4, 16, 16)  # resized to image_size


def test_encode_is_differentiable(prior):
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    prior.encode(images).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_v_prediction_is_converted_to_epsilon(dirs):
    """Tweedie x̂0 from the returned ε equals the x̂0 DDIM derives from the raw v-prediction."""
    from diffusers import DDIMScheduler

    vprior = StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd_v)))
    assert vprior.prediction_type == "v_prediction"
    z, t = _latents(2, seed=4), torch.tensor([300, 300])
    eps = vprior.predict_noise(z, t, [Condition("a red cube")] * 2)
    with torch.no_grad():
        v = vprior.unet(z, t, encoder_hidden_states=vprior.text_embeddings(["a red cube"] * 2)).sample
    sched = DDIMScheduler.from_config(vprior.scheduler.config)
    sched.set_timesteps(10)
    x0_ddim = sched.step(v, 300, z).pred_original_sample
    a = vprior.alphas_cumprod[300]
    x0_eps = (z - (1 - a).sqrt() * eps) / a.sqrt()
    torch.testing.assert_close(x0_eps, x0_ddim, rtol=1e-4, atol=1e-4)
    assert (eps - v).abs().max() > 1e-2  # the conversion did something


def test_image_without_an_adapter_is_refused(prior):
    with pytest.raises(UserError, match="no IP-Adapter"):
        prior.predict_noise(_latents(1), torch.tensor([10]), [Condition("x", torch.rand(3, 32, 32), 0.5)])
    with pytest.raises(KeyError, match="no IP-Adapter loaded"):
        prior.adapter_layer()


def _one_line_user_error(config):
    with pytest.raises(UserError) as info:
        StableDiffusionPrior(config)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_missing_model_names_what_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = _one_line_user_error(StableDiffusionConfig(model="nobody-here/no-such-model-d3d"))
    assert msg.startswith("Stable Diffusion weights not found at 'nobody-here/no-such-model-d3d'")
    assert "huggingface-cli download nobody-here/no-such-model-d3d" in msg and "--model" in msg
    assert "unet/" in msg


def test_missing_local_folder_and_adapters(dirs, tmp_path):
    msg = _one_line_user_error(StableDiffusionConfig(model=str(tmp_path / "nope")))
    assert "check the path" in msg and "huggingface-cli" not in msg
    msg = _one_line_user_error(StableDiffusionConfig(model=str(dirs.sd), ip_adapter=str(tmp_path)))
    assert msg.startswith("IP-Adapter weights not found") and "--ip-adapter" in msg
    msg = _one_line_user_error(StableDiffusionConfig(model=str(dirs.sd), controlnet="nobody-here/no-cn-d3d"))
    assert "huggingface-cli download nobody-here/no-cn-d3d" in msg and "--controlnet" in msg



def test_model_id_is_found_in_the_hugging_face_cache(dirs, tmp_path, monkeypatch):
    """An id resolves through the local HF cache layout (models--org--name/snapshots/<rev>/), offline."""
    import shutil

    import huggingface_hub.constants

    rev = "0" * 40
    repo = tmp_path / "hub" / "models--distill3d-test--tiny-sd"
    shutil.copytree(dirs.sd, repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prior = StableDiffusionPrior(StableDiffusionConfig(model="distill3d-test/tiny-sd"))
    assert prior.image_size == 32
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="huggingface-cli download distill3d-test/tiny-sd"):
        StableDiffusionPrior(StableDiffusionConfig(model="distill3d-test/tiny-sd"))
