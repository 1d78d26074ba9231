"""MVDream (Shi et al. 2023) behind the ``Prior`` protocol: Stable Diffusion 2.1-base whose UNet also takes a camera
and attends across the 4 views of a group, loaded from ByteDance's released checkpoint ``sd-v2.1-base-4view.pt``
(huggingface.co/MVDream/MVDream) into diffusers/transformers parts; everything else is ``StableDiffusionPrior``'s
(text cache, encode/decode, ε output, the camera-conditioned LoRA of ``trainable_denoiser``).

Facts taken from MVDream's code, github.com/bytedance/MVDream at 618f84476c88e04adaf588133be2830142b9956d, and
threestudio-mvdream, github.com/bytedance/MVDream-threestudio at efcd6c32f3f98c156f64ba5537d8817c4a355aae:
- The checkpoint (``mvdream/model_zoo.py``: ``model.load_state_dict(torch.load(ckpt_path))``) is the flat state dict
  of an LDM: ``model.diffusion_model.*`` the UNet, ``first_stage_model.*`` the KL VAE, ``cond_stage_model.model.*``
  the OpenCLIP ViT-H/14 text encoder; no tokenizer, no config. Architecture (``mvdream/configs/sd-v2-base.yaml``):
  SD 2.1-base's UNet (model_channels 320, channel_mult 1 2 4 4, 64-channel heads, linear proj_in, context 1024),
  ``camera_dim: 16``, ε-parameterisation, the linear-in-√β schedule 0.00085 .. 0.012 over 1000 steps, latent
  scale 0.18215, text from the penultimate OpenCLIP layer then ``ln_final`` (``mvdream/ldm/modules/encoders/modules.py``). Widths and
  depths are read here from the tensors' shapes; head width (64) and heads of the text encoder (width / 64) are
  not in the shapes and are taken from that config.
- Camera (``mvdream/ldm/modules/diffusionmodules/openaimodel.py`` ``MultiViewUNetModel``): ``camera_embed`` = Linear(16, 4·320), SiLU, Linear, and
  ``emb = time_embed(t) + camera_embed(camera)``, skipped when ``camera`` is None. In diffusers that is the UNet's
  ``class_embed_type="projection"`` slot (``TimestepEmbedding``: linear_1, SiLU, linear_2, added to the timestep
  embedding); :class:`CameraEmbedding` wraps it so that a row without a camera gets no camera term (MVDream's
  ``camera=None``), which is what a row of ``Condition(camera=None)`` gets here.
- 3D self-attention (``mvdream/ldm/modules/attention.py`` ``BasicTransformerBlock3D``): attn1 runs on ``(b f) l c -> b (f l) c``, the
  tokens of the ``num_frames`` views of a group concatenated; attn2 (text) and the feed-forward stay per view. Here
  :class:`ViewGroupAttention` does that for the rows of one ``Condition.view_group`` (4 consecutive rows: the
  release is trained on 4 views, "4view"; the checkpoint does not record it), and attends an unmarked row alone.
- The camera vector (``mvdream/camera_utils.py``; threestudio-mvdream
  ``threestudio/models/guidance/multiview_diffusion_guidance.py`` ``get_camera_cond``): the 4×4 camera-to-world matrix, OpenGL camera axes (columns right, up, backward, then the
  position), in a z-up world, its translation normalised to the unit sphere (``normalize_camera``), flattened row
  by row to 16 numbers. threestudio hands over its own c2w, whose world is distill3d's (``distill3d.core.cameras``:
  z up, position ∝ (cos el cos az, cos el sin az, sin el)), so :func:`camera_vectors` builds exactly that for
  (azimuth, elevation). In MVDream's ``get_camera(elevation=el, azimuth=a, blender_coord=True)`` terms this is
  a = az + 90°: distill3d's front (azimuth 0, +x) is the first view of MVDream's own ``scripts/t2i.py``
  (``--camera_azim 90``).
- threestudio-mvdream renders at 256² (guidance ``image_size: 256``, 32² latents): ``MVDreamConfig.image_size``.

The tokenizer is OpenCLIP's BPE, which the checkpoint lacks; Stable Diffusion 2.1-base's ``tokenizer/`` is the same
one (pads with "!" = id 0, as OpenCLIP pads) and is read from a folder or the Hugging Face cache, never the network.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import torch
from torch import Tensor, nn

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.priors.base import Condition, ViewCapabilities, view_groups
from distill3d.priors.sd import SD21, StableDiffusionConfig, StableDiffusionPrior, _pick_device, _pick_dtype
from distill3d.priors.weights import MVDREAM_TOKENIZER, import_diffusers, load_local

RELEASE = "MVDream's sd-v2.1-base-4view.pt (or a .safetensors of it) from huggingface.co/MVDream/MVDream"
UNET = "model.diffusion_model."
VAE = "first_stage_model."
TEXT = "cond_stage_model.model."  # OpenCLIP's text tower
CAMERA_DIM = 16  # sd-v2-base.yaml camera_dim: a flattened 4x4 camera-to-world matrix
VIEWS = 4  # views per group the release is trained on
HEAD_CHANNELS = 64  # sd-v2-base.yaml num_head_channels; OpenCLIP's text heads are 64 wide too
LATENT_SCALE = 0.18215  # sd-v2-base.yaml scale_factor


@dataclass(frozen=True)
class MVDreamConfig:
    """What to load and how to run it."""

    #: MVDream's checkpoint: ``sd-v2.1-base-4view.pt`` (read with ``weights_only=True``) or a ``.safetensors``.
    model: str | None = None
    #: A folder or a cached Hugging Face id whose ``tokenizer/`` is OpenCLIP's BPE (Stable Diffusion 2.1-base's).
    tokenizer: str = SD21
    #: Side of the renders the prior encodes; MVDream is trained and used (threestudio-mvdream) at 256.
    image_size: int = 256
    #: "auto": float16 on CUDA, float32 on CPU.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    #: "auto": CUDA when available, else CPU.
    device: str = "auto"


def camera_vectors(cameras: Sequence[tuple[float, float]]) -> Tensor:
    """MVDream's camera input for (azimuth, elevation) pairs in degrees (``distill3d.core.cameras``): the
    camera-to-world matrix with OpenGL camera axes at distance 1, flattened row-major. [N, 16]"""
    az, el = zip(*cameras) if cameras else ((), ())
    cams = Cameras.from_angles(list(az), list(el), distance=1.0)
    rot = cams.rotations()  # [N, 3, 3] world-to-camera, rows: right, down, forward (OpenCV)
    c2w = torch.zeros(len(cameras), 4, 4)
    c2w[:, :3, 0] = rot[:, 0]  # right
    c2w[:, :3, 1] = -rot[:, 1]  # up
    c2w[:, :3, 2] = -rot[:, 2]  # backward: OpenGL cameras look along -z
    c2w[:, :3, 3] = cams.positions()  # on the unit sphere (camera_utils.normalize_camera)
    c2w[:, 3, 3] = 1.0
    return c2w.reshape(len(cameras), CAMERA_DIM)


class CameraEmbedding(nn.Module):
    """MVDream's ``camera_embed`` (``mlp``: Linear, SiLU, Linear) in the UNet's class-embedding slot. Its input per
    row is the 16-d camera and a flag, 1 for a camera and 0 for none (MVDream's ``camera=None``: no term)."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, labels: Tensor) -> Tensor:
        """[N, 17] -> [N, D]"""
        return self.mlp(labels[:, :CAMERA_DIM]) * labels[:, CAMERA_DIM:]


class ViewGroupAttention:
    """A diffusers attention processor for every attention of the UNet. Self-attention (attn1) attends over the
    tokens of all views of a group at once, MVDream's ``(b f) l c -> b (f l) c``; cross-attention and rows alone
    are diffusers' plain attention. ``view_groups`` (a ``cross_attention_kwargs`` entry) are the consecutive group
    sizes of the batch (``distill3d.priors.base.view_groups``)."""

    def __init__(self) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.plain = AttnProcessor2_0()

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None,
                 view_groups: Sequence[int] = ()) -> Tensor:
        if encoder_hidden_states is not None or all(n == 1 for n in view_groups):
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        length, width = hidden_states.shape[1:]  # [N, L, C]
        starts = torch.tensor([0, *view_groups]).cumsum(0)[:-1].tolist()
        out = torch.zeros_like(hidden_states)
        for n in sorted(set(view_groups)):
            idx = torch.tensor([s + k for s, m in zip(starts, view_groups) if m == n for k in range(n)],
                               device=hidden_states.device)
            joint = hidden_states[idx].reshape(-1, n * length, width)  # [G, n·L, C]: a group's views side by side
            y = self.plain(attn, joint, None, attention_mask, temb)
            out = out.index_copy(0, idx, y.reshape(-1, length, width))
        return out


class MVDreamPrior(StableDiffusionPrior):
    """MVDream's released checkpoint as a multi-view ``Prior`` (see the module docstring for every choice made)."""

    #: The protocol's optional ``view_capabilities``: ε̂ depends on the camera, and the rows of one view group (4)
    #: are denoised jointly.
    view_capabilities = ViewCapabilities(conditions_on_cameras=True, joint_views=VIEWS)

    def __init__(self, config: MVDreamConfig) -> None:
        """Read ``config.model`` and build the UNet, VAE and text encoder from it; the tokenizer from
        ``config.tokenizer`` (a local folder or the Hugging Face cache)."""
        nn.Module.__init__(self)
        path = checkpoint_path(config.model)  # what the user gave is checked before the optional packages
        diffusers, transformers = import_diffusers()
        state = read_checkpoint(path)
        tokenizer = load_local(MVDREAM_TOKENIZER, config.tokenizer, lambda src: transformers.CLIPTokenizer
                               .from_pretrained(src, subfolder="tokenizer", local_files_only=True))
        vae = _vae(state, path, diffusers)
        unet = _unet(state, path, config.image_size // 2 ** (len(vae.config.block_out_channels) - 1), diffusers)
        text_encoder = _text_encoder(state, path, tokenizer, transformers)
        scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                            beta_schedule="scaled_linear", prediction_type="epsilon",
                                            clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        parts = SimpleNamespace(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                scheduler=scheduler)
        device = _pick_device(config.device)
        self._setup(parts, None, StableDiffusionConfig(model=str(path), dtype=config.dtype, device=config.device),
                    device, _pick_dtype(config.dtype, device))

    def _unet_inputs(self, conditions: Sequence[Condition]) -> dict:
        """Each row's camera (and whether it has one) for :class:`CameraEmbedding`, and the batch's view groups
        for :class:`ViewGroupAttention`."""
        cams = camera_vectors([c.camera if c.camera is not None else (0.0, 0.0) for c in conditions])
        has = torch.tensor([[float(c.camera is not None)] for c in conditions]).reshape(len(conditions), 1)
        labels = torch.cat([cams, has], dim=1).to(self._device, self.dtype)  # [N, 17]
        groups = view_groups(conditions, self.view_capabilities.joint_views)
        return {"class_labels": labels, "cross_attention_kwargs": {"view_groups": groups}}


def checkpoint_path(model: str | None) -> Path:
    """The checkpoint file ``--model`` names, or a one-line ``UserError`` saying what is expected."""
    if model is None:
        raise UserError(f"--prior mvdream needs --model PATH: {RELEASE}; got no --model")
    path = Path(model).expanduser()
    if not path.is_file():
        raise UserError(f"--prior mvdream needs --model PATH: {RELEASE}; got '{model}', which is not a file",
                        exit_code=1)
    return path


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """The state dict of an MVDream checkpoint (``.safetensors``, else a torch file read with
    ``weights_only=True``; a Lightning ``state_dict`` wrapper is unwrapped), or a one-line ``UserError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as e:
        raise UserError(f"{path} could not be read as a checkpoint ({type(e).__name__}); --prior mvdream needs "
                        f"{RELEASE}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(str(k).startswith(UNET + "camera_embed.") for k in state):
        raise UserError(f"{path} is not an MVDream checkpoint: no camera_embed ({UNET}camera_embed.*); "
                        f"--prior mvdream needs {RELEASE}")
    for prefix, what in ((VAE, "VAE"), (TEXT, "OpenCLIP text encoder")):
        if not any(k.startswith(prefix) for k in state):
            raise UserError(f"{path} has no {what} ({prefix}*): only MVDream's SD 2.1-base checkpoint is "
                            f"supported; --prior mvdream needs {RELEASE}")
    return state


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _count(keys: Sequence[str], prefix: str) -> int:
    """How many numbered children ``prefix`` has (``prefix`` + "0.", "1.", ...)."""
    return 1 + max((int(k[len(prefix):].split(".")[0]) for k in keys if k.startswith(prefix)), default=-1)


def _load(module: nn.Module, weights: dict[str, Tensor], what: str, path: Path) -> None:
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise UserError(f"the {what} in {path} does not have MVDream's layout ({first[:200]}); --prior mvdream "
                        f"needs {RELEASE}") from None


def _unet(state: dict[str, Tensor], path: Path, sample_size: int, diffusers) -> nn.Module:
    """The diffusers UNet of the checkpoint's ``MultiViewUNetModel``, its ``camera_embed`` in a
    :class:`CameraEmbedding` and :class:`ViewGroupAttention` on every attention."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    sd = _strip(state, UNET)
    keys = list(sd)
    levels: list[list[tuple[int, bool]]] = [[]]  # per resolution: (out channels, has a transformer) per ResBlock
    for i in range(1, _count(keys, "input_blocks.")):
        if f"input_blocks.{i}.0.op.weight" in sd:  # a Downsample ends the level
            levels.append([])
        else:
            levels[-1].append((sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0],
                               f"input_blocks.{i}.1.proj_in.weight" in sd))
    attn = [any(a for _, a in level) for level in levels]
    widths = [level[0][0] for level in levels]
    proj_in = next(v for k, v in sd.items() if k.endswith(".proj_in.weight"))
    first_transformer = next(k for k in keys if ".transformer_blocks." in k).split(".transformer_blocks.")[0]
    config = {
        "sample_size": sample_size, "in_channels": sd["input_blocks.0.0.weight"].shape[1],
        "out_channels": sd["out.2.weight"].shape[0], "block_out_channels": widths,
        "layers_per_block": len(levels[0]),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "cross_attention_dim": next(v for k, v in sd.items() if k.endswith("attn2.to_k.weight")).shape[1],
        "attention_head_dim": [w // HEAD_CHANNELS for w in widths],  # diffusers' SD 2 configs: heads per level
        "use_linear_projection": proj_in.ndim == 2,
        "transformer_layers_per_block": _count(keys, first_transformer + ".transformer_blocks."),
        "class_embed_type": "projection",
        "projection_class_embeddings_input_dim": sd["camera_embed.0.weight"].shape[1]}
    weights = convert_ldm_unet_checkpoint(state, {**config, "class_embed_type": None})  # no label_emb to map
    for mine, theirs in (("linear_1", "0"), ("linear_2", "2")):  # camera_embed = Linear, SiLU, Linear
        for p in ("weight", "bias"):
            weights[f"class_embedding.{mine}.{p}"] = sd[f"camera_embed.{theirs}.{p}"]
    unet = diffusers.UNet2DConditionModel(**config)
    _load(unet, weights, "UNet", path)
    unet.class_embedding = CameraEmbedding(unet.class_embedding)
    unet.set_attn_processor(ViewGroupAttention())
    return unet


def _vae(state: dict[str, Tensor], path: Path, diffusers) -> nn.Module:
    """The diffusers AutoencoderKL of the checkpoint's ``first_stage_model``."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    sd = _strip(state, VAE)
    keys = list(sd)
    levels = _count(keys, "encoder.down.")
    config = {
        "in_channels": sd["encoder.conv_in.weight"].shape[1], "out_channels": sd["decoder.conv_out.weight"].shape[0],
        "block_out_channels": [sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in range(levels)],
        "down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels,
        "layers_per_block": _count(keys, "encoder.down.0.block."),
        "latent_channels": sd["decoder.conv_in.weight"].shape[1], "scaling_factor": LATENT_SCALE}
    vae = diffusers.AutoencoderKL(**config)
    _load(vae, convert_ldm_vae_checkpoint(state, config), "VAE", path)
    return vae


def _text_encoder(state: dict[str, Tensor], path: Path, tokenizer, transformers) -> nn.Module:
    """transformers' CLIPTextModel of the checkpoint's OpenCLIP text tower, without its last block: MVDream reads
    the penultimate layer, then ``ln_final`` (what CLIPTextModel's last hidden state is)."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    sd = _strip(state, TEXT)
    layers = _count(list(sd), "transformer.resblocks.")
    last = f"{TEXT}transformer.resblocks.{layers - 1}."
    kept = {k: v for k, v in state.items() if k.startswith(TEXT) and not k.startswith(last)
            and k != TEXT + "text_projection"}  # the pooled projection is unused
    width = sd["token_embedding.weight"].shape[1]
    config = transformers.CLIPTextConfig(
        vocab_size=sd["token_embedding.weight"].shape[0], hidden_size=width,
        intermediate_size=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_attention_heads=width // HEAD_CHANNELS, num_hidden_layers=layers - 1,
        max_position_embeddings=sd["positional_embedding"].shape[0], hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = transformers.CLIPTextModel(config)
    weights = convert_open_clip_checkpoint(model, kept, prefix=TEXT)  # keys "text_model.*", transformers 4's
    inner = "" if hasattr(model, "text_model") else "text_model."  # transformers 5 has no text_model level
    _load(model, {k.removeprefix(inner): v for k, v in weights.items()}, "text encoder", path)
    return model
