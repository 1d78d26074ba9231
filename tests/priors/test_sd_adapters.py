"""IP-Adapter(-Plus) with per-row λ_ip, ControlNet maps, and the trainable adapter layer, on tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers", reason="the Stable Diffusion prior needs the 'sd' extra")

from sd_tiny import IP_WEIGHT, IP_WEIGHT_PLAIN

from distill3d.priors.base import Condition
from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior, clip_preprocess

# fixtures dirs, prior (the plain one), ip (with the IP-Adapter-Plus), pipe: conftest.py


@pytest.fixture(scope="module")
def cn(dirs):
    return StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), controlnet=str(dirs.controlnet)))


@pytest.fixture(scope="module")
def ref_ip_pipe(dirs, pipe):
    """diffusers' own IP-Adapter path: stock processors, per-layer scale. It loads the adapter into this
    module's ``pipe``, which no test here uses bare."""
    pipe.load_ip_adapter(str(dirs.ip_adapter), subfolder="models", weight_name=IP_WEIGHT, local_files_only=True)
    return pipe


def _latents(n, seed=0):
    return torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


def _image(seed, size=32):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def _ref_ip(pipe, prior, z, t, texts, images, scale):
    """The stock UNet call with IP image embeds computed as diffusers' pipeline does (from our pixels)."""
    pipe.set_ip_adapter_scale(scale)
    with torch.no_grad():
        pixels = clip_preprocess(images, pipe.image_encoder.config.image_size)  # [B, 3, 32, 32]
        feats = pipe.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
        return pipe.unet(z, t, encoder_hidden_states=prior.text_embeddings(texts),
                         added_cond_kwargs={"image_embeds": [feats[:, None]]}).sample


def test_ip_branch_equals_diffusers_ip_adapter(ip, ref_ip_pipe):
    texts, images = ["a red cube", ""], torch.stack([_image(1), _image(2)])
    z, t = _latents(2), torch.tensor([200, 700])
    got = ip.predict_noise(z, t, [Condition(s, im, 0.7) for s, im in zip(texts, images)])
    torch.testing.assert_close(got, _ref_ip(ref_ip_pipe, ip, z, t, texts, images, 0.7), rtol=1e-5, atol=1e-5)


def test_plain_ip_adapter_equals_diffusers(dirs, ip):
    """Plain IP-Adapter (CLIP image embedding -> 4 tokens) through the same per-row processors."""
    from diffusers import StableDiffusionPipeline

    plain_ip = StableDiffusionPrior(StableDiffusionConfig(
        model=str(dirs.sd), ip_adapter=str(dirs.ip_adapter), ip_adapter_weight=IP_WEIGHT_PLAIN))
    pipe = StableDiffusionPipeline.from_pretrained(dirs.sd, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.load_ip_adapter(str(dirs.ip_adapter), subfolder="models", weight_name=IP_WEIGHT_PLAIN,
                         local_files_only=True)
    pipe.set_ip_adapter_scale(0.6)
    images, z, t = torch.stack([_image(20), _image(21)]), _latents(2, seed=22), torch.tensor([250, 750])
    got = plain_ip.predict_noise(z, t, [Condition("a red cube", im, 0.6) for im in images])
    with torch.no_grad():
        emb = pipe.image_encoder(clip_preprocess(images, 32)).image_embeds  # [2, 32]
        want = pipe.unet(z, t, encoder_hidden_states=plain_ip.text_embeddings(["a red cube"] * 2),
                         added_cond_kwargs={"image_embeds": [emb[:, None]]}).sample
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    plus = ip.predict_noise(z, t, [Condition("a red cube", im, 0.6) for im in images])
    assert (got - plus).abs().max() > 1e-3  # a different adapter really was loaded


def test_ip_branch_changes_prediction_and_zero_scale_removes_it_exactly(ip, prior):
    z, t, im = _latents(2, seed=3), torch.tensor([500, 500]), _image(4)
    none = prior.predict_noise(z, t, [Condition("a red cube")] * 2)
    with_image = ip.predict_noise(z, t, [Condition("a red cube", im, 0.5)] * 2)
    zero_scale = ip.predict_noise(z, t, [Condition("a red cube", im, 0.0)] * 2)
    no_image = ip.predict_noise(z, t, [Condition("a red cube")] * 2)
    assert (with_image - none).abs().max() > 1e-2
    assert torch.equal(zero_scale, none) and torch.equal(no_image, none)


def test_zero_image_embeddings_are_not_no_image(ip, prior, ref_ip_pipe):
    """Why λ_ip is per row: diffusers' null image (zero embeddings / a blank image) at scale 1 still
    moves the prediction, so it cannot stand in for "no image" in a mixed batch."""
    z, t = _latents(1, seed=5), torch.tensor([500])
    ref_ip_pipe.set_ip_adapter_scale(1.0)
    with torch.no_grad():
        zeros = torch.zeros(1, 1, 65, 32)  # [B, images, CLIP tokens, width] of the tiny encoder
        null = ref_ip_pipe.unet(z, t, encoder_hidden_states=ip.text_embeddings(["a red cube"]),
                                added_cond_kwargs={"image_embeds": [zeros]}).sample
    assert (null - prior.predict_noise(z, t, [Condition("a red cube")])).abs().max() > 1e-3


def test_mixed_ip_batch_equals_row_by_row(ip):
    conds = [Condition("a red cube"), Condition("", _image(6), 0.5), Condition("a red cube", _image(7), 1.0),
             Condition("", None, 0.5), Condition("a yellow sphere", _image(8), 0.25)]
    z, t = _latents(5, seed=9), torch.tensor([20, 300, 300, 600, 980])
    batched = ip.predict_noise(z, t, conds)
    rows = torch.cat([ip.predict_noise(z[i:i + 1], t[i:i + 1], [c]) for i, c in enumerate(conds)])
    torch.testing.assert_close(batched, rows, rtol=1e-5, atol=1e-5)


def test_clip_preprocess_matches_clip_image_processor():
    """The IP image path: bicubic resize to the encoder's size, centre crop, OpenAI CLIP mean/std."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    # a smooth image, so PIL's uint8 bicubic and torch's float bicubic agree up to rounding
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(6 * xx) * torch.cos(4 * yy)])  # [3, 48, 64]
    pil = Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy())
    want = CLIPImageProcessor(size=32, crop_size=32)(pil, return_tensors="pt").pixel_values
    got = clip_preprocess(img[None], 32)
    assert got.shape == want.shape == (1, 3, 32, 32)
    assert (got - want).abs().max() < 0.03  # 2 uint8 levels / CLIP's std; a wrong size or crop gives ~0.1


def _encoder_input(prior, images):
    """What the prior hands its CLIP image encoder for ``images`` [K, 3, H, W]."""
    seen = []
    handle = prior.image_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        prior.image_tokens(list(images))
    finally:
        handle.remove()
    return seen[0]


def test_raw_image_input_is_the_authors_bilinear_resize_without_normalisation(dirs, ip):
    """AnchorDS' code: F.interpolate(render, (224, 224), bilinear) straight into the encoder (224 is ViT-H/14's
    input size; the tiny encoder's is 32), no CLIP crop or mean/std; the default stays diffusers'."""
    raw = StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), ip_adapter=str(dirs.ip_adapter),
                                                     ip_adapter_weight=IP_WEIGHT, ip_image_input="raw"))
    images = torch.stack([_image(40, size=64), _image(41, size=64)])
    got = _encoder_input(raw, images)
    want = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(got, F.avg_pool2d(images, 2), rtol=0, atol=1e-6)  # halving bilinear: 2x2 means
    assert got.min() >= 0 and got.max() <= 1  # not normalised
    default = _encoder_input(ip, images)
    torch.testing.assert_close(default, clip_preprocess(images, 32))
    assert default.min() < 0 and (default - got).abs().max() > 0.5  # CLIP mean/std: another tensor
    z, t = _latents(2, seed=42), torch.tensor([300, 600])
    conds = [Condition("a red cube", im, 0.5) for im in images]
    assert (raw.predict_noise(z, t, conds) - ip.predict_noise(z, t, conds)).abs().max() > 1e-4


def test_adapter_layer_is_the_last_up_block_and_trains_through_image_rows(ip):
    layer = ip.adapter_layer()
    assert [p for p in ip.ip_layers if p.startswith("up_blocks.1.")]
    assert {id(m) for m in layer} == {id(m) for k, m in ip.ip_layers.items() if k.startswith("up_blocks.1.")}
    assert sum(p.numel() for p in layer.parameters()) == 2 * 2 * 32 * 32  # 2 layers x (K, V), 32 -> 32
    with pytest.raises(KeyError, match="valid names: \\['down_blocks.0', 'mid_block', 'up_blocks.1'\\]"):
        ip.adapter_layer("up_blocks.9")
    layer.requires_grad_(True)
    try:
        z, t = _latents(2, seed=10), torch.tensor([400, 400])
        ip.predict_noise(z, t, [Condition("a red cube"), Condition("", _image(11), 0.5)]).square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
        assert all(p.grad is None for n, p in ip.named_parameters() if not p.requires_grad)
        assert not ip.predict_noise(z[:1], t[:1], [Condition("a red cube")]).requires_grad  # text row: no path
    finally:
        layer.requires_grad_(False)
        for p in layer.parameters():
            p.grad = None


@pytest.fixture(scope="module")
def both(dirs):
    """IP-Adapter-Plus and ControlNet in one prior."""
    return StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), ip_adapter=str(dirs.ip_adapter),
                                                      ip_adapter_weight=IP_WEIGHT,
                                                      controlnet=str(dirs.controlnet)))


def test_control_kind_names_the_map_or_none(prior, ip, cn, both):
    assert prior.control_kind is None and ip.control_kind is None
    assert cn.control_kind == "normal" and both.control_kind == "normal"


def test_controlnet_map_changes_prediction_and_matches_diffusers(cn, prior):
    normal = _image(12)
    z, t = _latents(3, seed=13), torch.tensor([100, 500, 900])
    conds = [Condition("a red cube"), Condition("a red cube", control=normal, control_scale=0.8),
             Condition("", control=normal, control_scale=0.0)]
    got = cn.predict_noise(z, t, conds)
    none = prior.predict_noise(z, t, [Condition("a red cube"), Condition("a red cube"), Condition("")])
    assert torch.equal(got[0], none[0]) and torch.equal(got[2], none[2])  # no map / scale 0: exactly none
    assert (got[1] - none[1]).abs().max() > 1e-2
    with torch.no_grad():
        text = cn.text_embeddings(["a red cube"])
        down, mid = cn.controlnet(z[1:2], t[1:2], encoder_hidden_states=text, controlnet_cond=normal[None],
                                  conditioning_scale=0.8, return_dict=False)
        want = cn.unet(z[1:2], t[1:2], encoder_hidden_states=text, down_block_additional_residuals=down,
                       mid_block_additional_residual=mid).sample
    torch.testing.assert_close(got[1:2], want, rtol=1e-5, atol=1e-5)
    rows = torch.cat([cn.predict_noise(z[i:i + 1], t[i:i + 1], [c]) for i, c in enumerate(conds)])
    torch.testing.assert_close(got, rows, rtol=1e-5, atol=1e-5)


def test_depth_map_with_one_channel_is_repeated(dirs):
    depth = StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), controlnet=str(dirs.controlnet),
                                                       controlnet_kind="depth"))
    d = _image(14)[:1]
    z, t = _latents(1, seed=15), torch.tensor([300])
    assert depth.control_kind == "depth"
    one = depth.predict_noise(z, t, [Condition("a red cube", control=d, control_scale=1.0)])
    three = depth.predict_noise(z, t, [Condition("a red cube", control=d.expand(3, -1, -1),
                                                 control_scale=1.0)])
    assert torch.equal(one, three)


def test_control_rows_equal_controlnet_and_unet_called_by_hand(both):
    """A batch whose map rows have different maps, scales and texts; the image branch is on other rows."""
    maps = [_image(30), _image(31, size=24)]  # any size: resized to the prior's image size
    conds = [Condition("a red cube", control=maps[0], control_scale=0.6), Condition("", _image(32), 0.5),
             Condition("a yellow sphere", control=maps[1], control_scale=1.3)]
    z, t = _latents(3, seed=33), torch.tensor([150, 450, 850])
    got = both.predict_noise(z, t, conds)
    rows = [0, 2]
    with torch.no_grad():
        text = both.text_embeddings([conds[i].text for i in rows])
        cond = torch.stack([both._resize(m[None])[0] for m in maps])  # [2, 3, 32, 32]
        down, mid = both.controlnet(z[rows], t[rows], encoder_hidden_states=text, controlnet_cond=cond,
                                    conditioning_scale=1.0, return_dict=False)
        s = torch.tensor([0.6, 1.3])[:, None, None, None]
        want = both.unet(z[rows], t[rows], encoder_hidden_states=text,
                         down_block_additional_residuals=[s * r for r in down],
                         mid_block_additional_residual=s * mid).sample
    torch.testing.assert_close(got[rows], want, rtol=1e-5, atol=1e-5)


def test_control_scale_zero_is_exactly_no_control(both, ip):
    z, t, im, m = _latents(2, seed=34), torch.tensor([300, 700]), _image(35), _image(36)
    plain = [Condition("a red cube"), Condition("", im, 0.5)]
    zero = [Condition("a red cube", control=m, control_scale=0.0), Condition("", im, 0.5, control=m)]
    got = both.predict_noise(z, t, zero)
    assert torch.equal(got, both.predict_noise(z, t, plain))
    torch.testing.assert_close(got, ip.predict_noise(z, t, plain), atol=1e-5, rtol=1e-4)  # as without a ControlNet (other instance: float order may differ)
    on = both.predict_noise(z, t, [Condition("a red cube", control=m, control_scale=1.0), plain[1]])
    assert (on[0] - got[0]).abs().max() > 1e-2 and torch.equal(on[1], got[1])


def test_ip_adapter_and_controlnet_in_one_call_equal_row_by_row_and_diffusers(both, ref_ip_pipe):
    conds = [Condition("a red cube"), Condition("", _image(40), 0.5),
             Condition("a red cube", control=_image(41), control_scale=0.9),
             Condition("a yellow sphere", _image(42), 1.0, control=_image(43), control_scale=0.7),
             Condition("", _image(44), 0.0, control=_image(45), control_scale=0.0)]
    z, t = _latents(5, seed=46), torch.tensor([20, 300, 300, 600, 980])
    batched = both.predict_noise(z, t, conds)
    rows = torch.cat([both.predict_noise(z[i:i + 1], t[i:i + 1], [c]) for i, c in enumerate(conds)])
    torch.testing.assert_close(batched, rows, rtol=1e-5, atol=1e-5)
    # the row with both: diffusers' stock IP-Adapter UNet plus its ControlNet residuals (text-only ControlNet)
    c = conds[3]
    with torch.no_grad():
        text = both.text_embeddings([c.text])
        down, mid = both.controlnet(z[3:4], t[3:4], encoder_hidden_states=text,
                                    controlnet_cond=c.control[None], conditioning_scale=0.7, return_dict=False)
        ref_ip_pipe.set_ip_adapter_scale(1.0)
        feats = ref_ip_pipe.image_encoder(clip_preprocess(c.image[None], 32), output_hidden_states=True)
        want = ref_ip_pipe.unet(z[3:4], t[3:4], encoder_hidden_states=text,
                                added_cond_kwargs={"image_embeds": [feats.hidden_states[-2][:, None]]},
                                down_block_additional_residuals=down,
                                mid_block_additional_residual=mid).sample
    torch.testing.assert_close(batched[3:4], want, rtol=1e-5, atol=1e-5)


def test_image_and_map_without_their_networks_are_refused(ip, cn):
    from distill3d.core.errors import UserError

    z, t = _latents(1), torch.tensor([10])
    with pytest.raises(UserError, match="no ControlNet: configure --controlnet") as info:
        ip.predict_noise(z, t, [Condition("x", control=_image(50), control_scale=1.0)])
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no IP-Adapter: configure --ip-adapter") as info:
        cn.predict_noise(z, t, [Condition("x", _image(51), 0.5)])
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="must be \\[3, H, W\\]"):
        cn.predict_noise(z, t, [Condition("x", control=torch.rand(2, 32, 32), control_scale=1.0)])


def test_the_loop_anchors_anchords_on_exact_maps_through_the_controlnet(both, tmp_path, monkeypatch):
    """One step of `generate`'s loop on IP-Adapter + ControlNet: the source rows carry each render's map."""
    from distill3d.guidance.anchords import AnchorDS
    from distill3d.pipeline.config import resolve_run_config
    from distill3d.pipeline.loop import optimise

    seen, control_rows = [], []
    real = both._control_residuals

    def spy(z, t, text, rows, conditions):
        control_rows.append(rows)
        return real(z, t, text, rows, conditions)

    monkeypatch.setattr(both, "_control_residuals", spy)

    class Recording(AnchorDS):
        def __call__(self, prior, inp, generator):
            seen.append(inp)
            return super().__call__(prior, inp, generator)

    cfg, _ = resolve_run_config("anchords", {"steps": "1", "views_per_step": "2", "num_gaussians": "200",
                                             "checkpoint_every": "0", "preview_every": "0"})
    _, state = optimise("a red cube", cfg, Recording(), both, tmp_path)
    inp = seen[0]
    assert state.step == 1 and inp.control.shape == (2, 3, 32, 32)
    assert control_rows == [[2, 3]]  # paper form: rows 0-1 target y, rows 2-3 the anchored source
    background = (inp.images == 1).all(dim=1)  # white render background
    assert torch.equal(inp.control.permute(0, 2, 3, 1)[background],
                       torch.tensor([0.5, 0.5, 1.0]).expand(int(background.sum()), 3))  # NormalBAE flat


def test_cli_and_prior_spec_pass_the_controlnet_kind(dirs, monkeypatch):
    from click.testing import CliRunner

    from distill3d.cli.generate import generate
    from distill3d.core.errors import UserError
    from distill3d.pipeline import generate as pipeline_generate
    from distill3d.pipeline.priors import PriorSpec, load_prior

    depth = load_prior(PriorSpec("sd", str(dirs.sd), controlnet=str(dirs.controlnet), controlnet_kind="depth"))
    assert depth.control_kind == "depth"
    assert load_prior(PriorSpec("sd", str(dirs.sd))).control_kind is None  # no ControlNet: no maps
    with pytest.raises(UserError, match="unknown ControlNet kind 'canny'"):
        load_prior(PriorSpec("sd", str(dirs.sd), controlnet=str(dirs.controlnet), controlnet_kind="canny"))
    specs = []

    def fake_run(prompt, cfg, method_overrides, out_dir, spec, **kw):
        specs.append(spec)
        raise UserError("stop here")

    monkeypatch.setattr(pipeline_generate, "generate", fake_run)
    args = ["a cat", "--out", "unused", "--prior", "sd", "--controlnet", "cn-dir", "--controlnet-kind", "depth"]
    CliRunner().invoke(generate, args)
    assert specs == [PriorSpec("sd", None, None, "cn-dir", "depth")]
    CliRunner().invoke(generate, args[:-2])
    assert specs[-1].controlnet_kind == "normal"
    assert CliRunner().invoke(generate, [*args[:-1], "canny"]).exit_code == 2  # click's usage error


def test_anchords_on_a_controlnet_only_prior_anchors_with_the_map_alone(cn, prior):
    """No IP-Adapter: the source rows carry the control map and no image; no adapter at all is refused."""
    from distill3d.core.cameras import Cameras
    from distill3d.core.errors import UserError
    from distill3d.guidance import GuidanceInput
    from distill3d.guidance.anchords import AnchorDS

    assert cn.takes_images is False and prior.takes_images is False
    images = _image(3)[None].expand(2, -1, -1, -1)
    inp = GuidanceInput(cn.encode(images), images, Cameras.from_angles([0.0, 90.0], 15.0), "a dog",
                        control=_image(4)[None].expand(2, -1, -1, -1))
    rows = []
    real = cn.predict_noise

    def spy(z_t, t, conditions):
        rows.extend(conditions)
        return real(z_t, t, conditions)

    cn.predict_noise = spy
    try:
        out = AnchorDS()(cn, inp, torch.Generator().manual_seed(0))
    finally:
        del cn.predict_noise
    assert torch.isfinite(out.grad).all()
    assert [(r.image is None, r.control is not None) for r in rows] == [(True, False)] * 2 + [(True, True)] * 2
    inp.control = None
    with pytest.raises(UserError, match="image adapter"):
        AnchorDS()(prior, inp, torch.Generator().manual_seed(0))
