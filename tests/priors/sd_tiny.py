"""Tiny random Stable Diffusion parts saved in the layouts the real downloads have, built without any network.

``build_sd(dir)``          a diffusers folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)
``build_ip_adapter(dir)``  an h94/IP-Adapter-like folder: models/<weight>.safetensors + models/image_encoder/
``build_controlnet(dir)``  a ControlNet folder whose zero-initialised output convolutions are made non-zero

Every builder seeds torch itself, so the same call gives the same weights. The tokenizer is CLIP's BPE with
a byte-level vocabulary and no merges (one token per character), enough for distinct prompts to give
distinct embeddings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

CROSS_DIM = 32  # text/image token width seen by the UNet's cross-attention
IP_WEIGHT = "ip-adapter-plus_tiny.safetensors"
IP_WEIGHT_PLAIN = "ip-adapter_tiny.safetensors"
IP_SUBFOLDER = "models"


def _tokenizer(dir: Path):
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]  # printable ASCII: these bytes map to themselves in CLIP's BPE
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "vocab.json").write_text(json.dumps(vocab))
    (dir / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(dir / "vocab.json"), str(dir / "merges.txt"), model_max_length=77), len(vocab)


def build_sd(dir: Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """A whole tiny SD folder: 32 px images, 16x16x4 latents, 32-wide cross-attention."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    dir = Path(dir)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=CROSS_DIM,
        attention_head_dim=4, norm_num_groups=32)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size=32, norm_num_groups=32)
    tokenizer, vocab_size = _tokenizer(dir / "_tok")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=CROSS_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=vocab_size, max_position_embeddings=77, projection_dim=CROSS_DIM,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(dir)
    return dir


def _resampler_state(embed_dim: int, hidden: int, out_dim: int, queries: int, depth: int = 4) -> dict:
    """Random weights of IP-Adapter-Plus' Resampler under the key names of the original checkpoints."""
    r = lambda *s: 0.1 * torch.randn(*s)
    sd = {"latents": r(1, queries, hidden), "proj_in.weight": r(hidden, embed_dim), "proj_in.bias": r(hidden),
          "proj_out.weight": r(out_dim, hidden), "proj_out.bias": r(out_dim),
          "norm_out.weight": 1 + r(out_dim), "norm_out.bias": r(out_dim)}
    for i in range(depth):
        p = f"layers.{i}."
        sd |= {p + "0.norm1.weight": 1 + r(hidden), p + "0.norm1.bias": r(hidden),
               p + "0.norm2.weight": 1 + r(hidden), p + "0.norm2.bias": r(hidden),
               p + "0.to_q.weight": r(hidden, hidden), p + "0.to_kv.weight": r(2 * hidden, hidden),
               p + "0.to_out.weight": r(hidden, hidden),
               p + "1.0.weight": 1 + r(hidden), p + "1.0.bias": r(hidden),
               p + "1.1.weight": r(4 * hidden, hidden), p + "1.3.weight": r(hidden, 4 * hidden)}
    return sd


def build_ip_adapter(dir: Path, sd_dir: Path, seed: int = 1) -> Path:
    """A tiny IP-Adapter-Plus for the UNet in ``sd_dir``: random CLIP vision encoder (32 px, 65 tokens),
    random Resampler (4 image tokens) and random to_k_ip / to_v_ip for every cross-attention layer.
    Beside it, ``IP_WEIGHT_PLAIN``: a plain IP-Adapter (linear projection of CLIP's image embedding)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    dir = Path(dir)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, projection_dim=32, num_attention_heads=4, num_hidden_layers=2,
        image_size=32, patch_size=4))
    encoder.save_pretrained(dir / IP_SUBFOLDER / "image_encoder")
    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet", local_files_only=True)
    state = {f"image_proj.{k}": v for k, v in _resampler_state(32, 64, CROSS_DIM, 4).items()}
    key_id = 1
    for name in unet.attn_processors:  # the original checkpoints number cross-attention layers 1, 3, 5, ...
        if name.endswith("attn2.processor"):
            width = unet.get_submodule(name[: -len(".processor")]).to_q.out_features
            state[f"ip_adapter.{key_id}.to_k_ip.weight"] = 0.2 * torch.randn(width, CROSS_DIM)
            state[f"ip_adapter.{key_id}.to_v_ip.weight"] = 0.2 * torch.randn(width, CROSS_DIM)
            key_id += 2
    save_file({k: v.contiguous() for k, v in state.items()}, str(dir / IP_SUBFOLDER / IP_WEIGHT))
    state = {k: v for k, v in state.items() if k.startswith("ip_adapter.")}
    state |= {"image_proj.proj.weight": 0.2 * torch.randn(4 * CROSS_DIM, 32),
              "image_proj.proj.bias": 0.1 * torch.randn(4 * CROSS_DIM),
              "image_proj.norm.weight": torch.ones(CROSS_DIM), "image_proj.norm.bias": torch.zeros(CROSS_DIM)}
    save_file({k: v.contiguous() for k, v in state.items()}, str(dir / IP_SUBFOLDER / IP_WEIGHT_PLAIN))
    return dir


def build_controlnet(dir: Path, sd_dir: Path, seed: int = 2) -> Path:
    """A tiny ControlNet copied from the UNet in ``sd_dir``, with random (not zero) output convolutions."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet", local_files_only=True)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block,
                       net.controlnet_cond_embedding.conv_out]:
            for p in module.parameters():
                p.copy_(0.1 * torch.randn_like(p))
    net.save_pretrained(dir)
    return Path(dir)


@dataclass(frozen=True)
class TinyDirs:
    sd: Path  # ε-prediction SD folder
    sd_v: Path  # the same architecture with a v-prediction scheduler
    ip_adapter: Path
    controlnet: Path


_BUILT: list[TinyDirs] = []


def tiny_dirs(tmp_path_factory) -> TinyDirs:
    """All tiny models, built once per test session under pytest's ``tmp_path_factory``."""
    if not _BUILT:
        root = tmp_path_factory.mktemp("sd_tiny")
        sd = build_sd(root / "sd")
        _BUILT.append(TinyDirs(sd, build_sd(root / "sd_v", prediction_type="v_prediction"),
                               build_ip_adapter(root / "ip", sd), build_controlnet(root / "cn", sd)))
    return _BUILT[0]
