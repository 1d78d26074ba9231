"""The MVDream prior on a tiny random checkpoint written in MVDream's own key layout (``mvdream_tiny``): it loads,
a view of a group depends on its group-mates and on nothing else, unmarked rows are the rows alone, the camera
enters as MVDream's ``camera_embed(camera)`` added to the timestep embedding (checked against the checkpoint's
tensors), the 3D self-attention is attention over the group's tokens concatenated (checked likewise), the camera
vector is MVDream's ``get_camera`` matrix, and a missing or foreign checkpoint is a one-line error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers", reason="the MVDream prior needs the 'sd' extra")

from mvdream_tiny import IMAGE_SIZE, MODEL_CHANNELS, build_mvdream_checkpoint, mvdream_state

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.guidance import METHODS, GuidanceInput, surrogate_loss
from distill3d.priors.base import Condition, views_of
from distill3d.priors.mvdream import MVDreamConfig, MVDreamPrior, camera_vectors

UNET = "model.diffusion_model."
AZ = (0.0, 90.0, 180.0, 270.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_mvdream_checkpoint(tmp_path_factory.mktemp("mvdream") / "tiny-4view.pt")


def _load(path, **kw) -> MVDreamPrior:
    return MVDreamPrior(MVDreamConfig(model=str(path), tokenizer=str(path.parent), image_size=IMAGE_SIZE, **kw))


@pytest.fixture(scope="module")
def prior(ckpt):
    return _load(ckpt)


@pytest.fixture(scope="module")
def state():
    return mvdream_state()  # the same tensors the checkpoint holds (same seed)


def _group(text: str, group: int, elevation: float = 15.0) -> list[Condition]:
    return [Condition(text, camera=(a, elevation), view_group=group) for a in AZ]


def _z(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, IMAGE_SIZE // 2, IMAGE_SIZE // 2, generator=torch.Generator().manual_seed(seed))


def _t(n: int, t: int = 500) -> torch.Tensor:
    return torch.full((n,), t, dtype=torch.long)


def test_loads_as_a_multi_view_prior_with_cameras(prior):
    caps = views_of(prior)
    assert caps.conditions_on_cameras and caps.joint_views == 4
    assert prior.image_size == IMAGE_SIZE and prior.num_timesteps == 1000
    assert prior.encode(torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE)).shape == (2, 4, IMAGE_SIZE // 2, IMAGE_SIZE // 2)
    eps = prior.predict_noise(_z(5), _t(5), [*_group("a cat", 0), Condition("a dog", camera=(30.0, 10.0))])
    assert eps.shape == (5, 4, IMAGE_SIZE // 2, IMAGE_SIZE // 2) and torch.isfinite(eps).all()
    assert eps.std() > 0.1


def test_a_view_depends_on_its_group_mates_and_only_on_them(prior):
    conds = [*_group("a cat", 0), *_group("a cat", 1)]
    z = _z(8)
    base = prior.predict_noise(z, _t(8), conds)
    mate = z.clone()
    mate[5] += 0.5 * torch.randn(mate[5].shape, generator=torch.Generator().manual_seed(1))  # a view of group 1
    moved = prior.predict_noise(mate, _t(8), conds)
    torch.testing.assert_close(moved[:4], base[:4], atol=1e-5, rtol=1e-5)  # group 0: unchanged
    for i in (4, 6, 7):  # group 1's other views see the change through the 3D self-attention
        assert (moved[i] - base[i]).abs().max() > 1e-3


def test_batch_equals_group_by_group_and_unmarked_rows_equal_rows_alone(prior):
    conds = [Condition("a dog", camera=(45.0, 5.0)), *_group("a cat", 7), Condition("a dog"), Condition("", (0.0, 0.0))]
    z, t = _z(7, seed=2), torch.tensor([100, 500, 500, 500, 500, 900, 300])
    batched = prior.predict_noise(z, t, conds)
    torch.testing.assert_close(batched[1:5], prior.predict_noise(z[1:5], t[1:5], conds[1:5]), atol=1e-5, rtol=1e-5)
    for i in (0, 5, 6):
        alone = prior.predict_noise(z[i:i + 1], t[i:i + 1], conds[i:i + 1])
        torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-5, rtol=1e-5)
    # a marked view is not the view alone (it sees its group), which is why rows alone must be unmarked
    assert (batched[1] - prior.predict_noise(z[1:2], t[1:2], [Condition("a cat", camera=(0.0, 15.0))])).abs().max() > 1e-3


def test_the_camera_changes_the_prediction(prior):
    z, t = _z(1).expand(3, -1, -1, -1), _t(3)
    eps = prior.predict_noise(z, t, [Condition("a cat", camera=(0.0, 15.0)), Condition("a cat", camera=(90.0, 15.0)),
                                     Condition("a cat")])
    assert (eps[0] - eps[1]).abs().max() > 1e-3 and (eps[0] - eps[2]).abs().max() > 1e-3


def _mvdream_get_camera(elevation: float, azimuth: float) -> np.ndarray:
    """MVDream's camera_utils.get_camera for one view, written out: create_camera_to_world_matrix (y up, OpenGL
    axes), then convert_opengl_to_blender (flip_yz), flattened."""
    el, az = np.radians(elevation), np.radians(azimuth)
    pos = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    forward = -pos / np.linalg.norm(pos)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    m = np.eye(4)
    m[:3, :3] = np.stack([right, up, -forward]).T
    m[:3, 3] = pos
    flip_yz = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    return (flip_yz @ m).reshape(16)


@pytest.mark.parametrize("az, el", [(0.0, 15.0), (90.0, 0.0), (200.0, 30.0), (-45.0, -10.0)])
def test_camera_vector_is_mvdreams_get_camera_turned_by_90_degrees(az, el):
    """distill3d's azimuth a is MVDream's a + 90° (threestudio's c2w, which threestudio-mvdream hands over)."""
    ours = camera_vectors([(az, el)])[0].double().numpy()
    np.testing.assert_allclose(ours, _mvdream_get_camera(el, az + 90.0), atol=1e-6)


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """LDM's timestep_embedding (diffusionmodules/util.py): [cos, sin] of t·10000^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _mlp(state, key: str, x: torch.Tensor) -> torch.Tensor:
    """MVDream's Linear, SiLU, Linear under ``key`` (``time_embed`` or ``camera_embed``)."""
    h = F.silu(F.linear(x, state[f"{UNET}{key}.0.weight"], state[f"{UNET}{key}.0.bias"]))
    return F.linear(h, state[f"{UNET}{key}.2.weight"], state[f"{UNET}{key}.2.bias"])


def test_embedding_is_time_embed_plus_camera_embed_of_the_camera(prior, state):
    """MultiViewUNetModel.forward: emb = time_embed(t_emb) + camera_embed(camera), no camera term without a
    camera; every ResBlock reads SiLU(emb) (emb_layers = SiLU, Linear): seen at the first ResBlock's Linear."""
    seen = []
    hook = prior.unet.down_blocks[0].resnets[0].time_emb_proj.register_forward_hook(
        lambda m, args, out: seen.append(args[0].detach()))
    conds = [*_group("a cat", 0), Condition("a cat")]
    t = torch.tensor([10, 250, 500, 999, 600])
    try:
        prior.predict_noise(_z(5), t, conds)
    finally:
        hook.remove()
    cams = torch.from_numpy(np.stack([_mvdream_get_camera(15.0, a + 90.0) for a in AZ])).float()
    emb = _mlp(state, "time_embed", _timestep_embedding(t, MODEL_CHANNELS))
    emb[:4] += _mlp(state, "camera_embed", cams)
    torch.testing.assert_close(seen[0], F.silu(emb), atol=1e-4, rtol=1e-4)


def test_zeroed_camera_embed_makes_cameras_irrelevant(prior):
    """With camera_embed's last Linear zeroed, a camera adds nothing: the camera reaches ε̂ only through it."""
    last = prior.unet.class_embedding.mlp.linear_2
    saved = [p.detach().clone() for p in last.parameters()]
    z, t = _z(1).expand(2, -1, -1, -1), _t(2)
    conds = [Condition("a cat", camera=(0.0, 15.0)), Condition("a cat", camera=(120.0, 40.0))]
    try:
        with torch.no_grad():
            for p in last.parameters():
                p.zero_()
        eps = prior.predict_noise(z, t, conds)
        no_camera = prior.predict_noise(z[:1], t[:1], [Condition("a cat")])
    finally:
        with torch.no_grad():
            for p, s in zip(last.parameters(), saved):
                p.copy_(s)
    torch.testing.assert_close(eps[0], eps[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps[:1], no_camera, atol=1e-5, rtol=1e-5)


def test_self_attention_of_a_group_is_attention_over_its_views_tokens(prior, state):
    """BasicTransformerBlock3D's attn1, written from the checkpoint's tensors (the middle block's, 2 heads of 64):
    ``(b f) l c -> b (f l) c``, multi-head softmax attention, out projection; rows alone attend to themselves."""
    attn = prior.unet.mid_block.attentions[0].transformer_blocks[0].attn1
    key = f"{UNET}middle_block.1.transformer_blocks.0.attn1."
    x = torch.randn(5, 6, 2 * MODEL_CHANNELS, generator=torch.Generator().manual_seed(4))  # [N, L, C]

    def reference(rows: torch.Tensor) -> torch.Tensor:  # [b, T, C]
        q, k, v = (F.linear(rows, state[key + f"to_{n}.weight"]) for n in "qkv")
        heads = lambda a: a.reshape(a.shape[0], a.shape[1], 2, 64).transpose(1, 2)
        w = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 8.0, dim=-1)
        o = (w @ heads(v)).transpose(1, 2).reshape(rows.shape)
        return F.linear(o, state[key + "to_out.0.weight"], state[key + "to_out.0.bias"])

    with torch.no_grad():
        out = attn(x, view_groups=(4, 1))
        expect = torch.cat([reference(x[:4].reshape(1, 4 * 6, -1)).reshape(4, 6, -1), reference(x[4:])])
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-5)


def test_safetensors_gives_the_same_prior(prior, ckpt):
    other = _load(build_mvdream_checkpoint(ckpt.parent / "tiny-4view.safetensors"))
    conds = _group("a cat", 0)
    torch.testing.assert_close(other.predict_noise(_z(4), _t(4), conds), prior.predict_noise(_z(4), _t(4), conds))


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_or_foreign_checkpoints_are_one_line_errors(ckpt, tmp_path):
    with pytest.raises(UserError) as err:
        MVDreamPrior(MVDreamConfig())
    assert "--prior mvdream needs --model PATH: MVDream's sd-v2.1-base-4view.pt" in _one_line(err)
    with pytest.raises(UserError) as err:
        _load(tmp_path / "nowhere.pt")
    assert "which is not a file" in _one_line(err) and err.value.exit_code == 1
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(UserError) as err:
        _load(junk)
    assert "could not be read as a checkpoint" in _one_line(err)
    plain = tmp_path / "sd21.pt"
    torch.save({k: v for k, v in mvdream_state().items() if ".camera_embed." not in k}, plain)
    with pytest.raises(UserError) as err:
        _load(plain)
    assert "is not an MVDream checkpoint: no camera_embed" in _one_line(err)
    wrong = tmp_path / "wrong.pt"
    state = mvdream_state()
    state[f"{UNET}input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"] = torch.zeros(3, 3)
    torch.save(state, wrong)
    with pytest.raises(UserError) as err:
        _load(wrong)
    assert "does not have MVDream's layout" in _one_line(err)


def test_vsd_lora_copy_starts_equal_to_the_prior(prior):
    lora = prior.trainable_denoiser(rank=2)
    try:
        conds = [*_group("a cat", 0), Condition("a dog", camera=(10.0, 5.0))]
        torch.testing.assert_close(lora.predict_noise(_z(5), _t(5), conds), prior.predict_noise(_z(5), _t(5), conds))
    finally:
        lora.remove()


@pytest.mark.parametrize("name", ["mvdream-sds", "sds"])
def test_one_guidance_step_on_mvdream(name, prior):
    entry = next(e for e in METHODS if e.kind == "generate" and e.name == name)
    method = entry.build()
    method.setup(prior, "a cat", seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g).requires_grad_(True)
    latents = prior.encode(images)
    inp = GuidanceInput(latents.detach(), images.detach(), Cameras.from_angles(list(AZ), 15.0), "a cat",
                        step=0, total_steps=10)
    out = method(prior, inp, g)
    assert out.grad.shape == latents.shape and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    surrogate_loss(latents, out.grad).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()

