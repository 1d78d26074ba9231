"""A tiny random MVDream checkpoint written key by key in MVDream's own layout (github.com/bytedance/MVDream,
``mvdream/ldm/modules/diffusionmodules/openaimodel.py`` MultiViewUNetModel, ``ldm/modules/attention.py``
SpatialTransformer3D, ``ldm/modules/diffusionmodules/model.py`` Encoder/Decoder, OpenCLIP's text tower), with no
diffusers involved, so that loading it checks distill3d's conversion.

``build_mvdream_checkpoint(path)`` writes the flat state dict (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.model.*``) to ``path`` and a CLIP BPE tokenizer to ``path.parent / "tokenizer"`` (pass
``tokenizer=str(path.parent)``). The UNet is MVDream's with model_channels 64, channel_mult (1, 2), one ResBlock
per level, 3D transformers at level 0 and in the middle (64-channel heads: 1 and 2 heads), context 64, camera_dim
16. The VAE has ch 32, ch_mult (1, 2) (latents at half the image side), the text tower 3 blocks of width 64.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

MODEL_CHANNELS = 64
TIME_DIM = 4 * MODEL_CHANNELS  # MultiViewUNetModel's time_embed_dim
CONTEXT = 64  # text width = cross-attention context
CAMERA_DIM = 16
VAE_CH = 32
TEXT_LAYERS = 3
IMAGE_SIZE = 16  # renders 16², latents 8²


class _Writer:
    """Random tensors under MVDream's key names: weights ~ N(0, 1/fan_in), norm scales near 1."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def randn(self, *shape: int, std: float) -> torch.Tensor:
        return std * torch.randn(*shape, generator=self.g)

    def linear(self, key: str, out: int, inp: int, bias: bool = True) -> None:
        self.state[key + ".weight"] = self.randn(out, inp, std=inp ** -0.5)
        if bias:
            self.state[key + ".bias"] = self.randn(out, std=0.1)

    def conv(self, key: str, out: int, inp: int, k: int) -> None:
        self.state[key + ".weight"] = self.randn(out, inp, k, k, std=(inp * k * k) ** -0.5)
        self.state[key + ".bias"] = self.randn(out, std=0.1)

    def norm(self, key: str, ch: int) -> None:
        self.state[key + ".weight"] = 1 + self.randn(ch, std=0.1)
        self.state[key + ".bias"] = self.randn(ch, std=0.1)

    # ---- MultiViewUNetModel --------------------------------------------------------------------

    def resblock(self, key: str, ch: int, out: int) -> None:
        self.norm(f"{key}.in_layers.0", ch)
        self.conv(f"{key}.in_layers.2", out, ch, 3)
        self.linear(f"{key}.emb_layers.1", out, TIME_DIM)
        self.norm(f"{key}.out_layers.0", out)
        self.conv(f"{key}.out_layers.3", out, out, 3)
        if ch != out:
            self.conv(f"{key}.skip_connection", out, ch, 1)

    def transformer3d(self, key: str, ch: int) -> None:
        """SpatialTransformer3D with use_linear, depth 1: norm, proj_in, BasicTransformerBlock3D, proj_out."""
        self.norm(f"{key}.norm", ch)
        self.linear(f"{key}.proj_in", ch, ch)
        b = f"{key}.transformer_blocks.0"
        for attn, ctx in (("attn1", ch), ("attn2", CONTEXT)):
            self.linear(f"{b}.{attn}.to_q", ch, ch, bias=False)
            self.linear(f"{b}.{attn}.to_k", ch, ctx, bias=False)
            self.linear(f"{b}.{attn}.to_v", ch, ctx, bias=False)
            self.linear(f"{b}.{attn}.to_out.0", ch, ch)
        self.linear(f"{b}.ff.net.0.proj", 2 * 4 * ch, ch)  # GEGLU
        self.linear(f"{b}.ff.net.2", ch, 4 * ch)
        for n in (1, 2, 3):
            self.norm(f"{b}.norm{n}", ch)
        self.linear(f"{key}.proj_out", ch, ch)

    def unet(self, p: str) -> None:
        c = MODEL_CHANNELS
        self.linear(p + "time_embed.0", TIME_DIM, c)
        self.linear(p + "time_embed.2", TIME_DIM, TIME_DIM)
        self.linear(p + "camera_embed.0", TIME_DIM, CAMERA_DIM)
        self.linear(p + "camera_embed.2", TIME_DIM, TIME_DIM)
        self.conv(p + "input_blocks.0.0", c, 4, 3)
        self.resblock(p + "input_blocks.1.0", c, c)  # level 0 (ds 1): ResBlock + 3D transformer
        self.transformer3d(p + "input_blocks.1.1", c)
        self.conv(p + "input_blocks.2.0.op", c, c, 3)  # Downsample
        self.resblock(p + "input_blocks.3.0", c, 2 * c)  # level 1 (ds 2): no attention
        self.resblock(p + "middle_block.0", 2 * c, 2 * c)
        self.transformer3d(p + "middle_block.1", 2 * c)
        self.resblock(p + "middle_block.2", 2 * c, 2 * c)
        self.resblock(p + "output_blocks.0.0", 4 * c, 2 * c)  # skips: 128 (input 3), 64 (input 2), 64, 64
        self.resblock(p + "output_blocks.1.0", 3 * c, 2 * c)
        self.conv(p + "output_blocks.1.1.conv", 2 * c, 2 * c, 3)  # Upsample
        self.resblock(p + "output_blocks.2.0", 3 * c, c)
        self.transformer3d(p + "output_blocks.2.1", c)
        self.resblock(p + "output_blocks.3.0", 2 * c, c)
        self.transformer3d(p + "output_blocks.3.1", c)
        self.norm(p + "out.0", c)
        self.conv(p + "out.2", 4, c, 3)  # zero-initialised in MVDream; random here so that ε̂ depends on the input

    # ---- AutoencoderKL (ldm) -------------------------------------------------------------------

    def vae_block(self, key: str, ch: int, out: int) -> None:
        self.norm(f"{key}.norm1", ch)
        self.conv(f"{key}.conv1", out, ch, 3)
        self.norm(f"{key}.norm2", out)
        self.conv(f"{key}.conv2", out, out, 3)
        if ch != out:
            self.conv(f"{key}.nin_shortcut", out, ch, 1)

    def vae_mid(self, key: str, ch: int) -> None:
        self.vae_block(f"{key}.block_1", ch, ch)
        self.norm(f"{key}.attn_1.norm", ch)
        for name in ("q", "k", "v", "proj_out"):
            self.conv(f"{key}.attn_1.{name}", ch, ch, 1)
        self.vae_block(f"{key}.block_2", ch, ch)

    def vae(self, p: str) -> None:
        a, b, z = VAE_CH, 2 * VAE_CH, 4
        self.conv(p + "encoder.conv_in", a, 3, 3)
        self.vae_block(p + "encoder.down.0.block.0", a, a)
        self.conv(p + "encoder.down.0.downsample.conv", a, a, 3)
        self.vae_block(p + "encoder.down.1.block.0", a, b)
        self.vae_mid(p + "encoder.mid", b)
        self.norm(p + "encoder.norm_out", b)
        self.conv(p + "encoder.conv_out", 2 * z, b, 3)  # double_z
        self.conv(p + "quant_conv", 2 * z, 2 * z, 1)
        self.conv(p + "post_quant_conv", z, z, 1)
        self.conv(p + "decoder.conv_in", b, z, 3)
        self.vae_mid(p + "decoder.mid", b)
        self.vae_block(p + "decoder.up.1.block.0", b, b)  # levels run from the last (widest) down to 0
        self.vae_block(p + "decoder.up.1.block.1", b, b)
        self.conv(p + "decoder.up.1.upsample.conv", b, b, 3)
        self.vae_block(p + "decoder.up.0.block.0", b, a)
        self.vae_block(p + "decoder.up.0.block.1", a, a)
        self.norm(p + "decoder.norm_out", a)
        self.conv(p + "decoder.conv_out", 3, a, 3)

    # ---- OpenCLIP text tower -------------------------------------------------------------------

    def text(self, p: str, vocab: int) -> None:
        w = CONTEXT
        self.state[p + "token_embedding.weight"] = self.randn(vocab, w, std=0.5)
        self.state[p + "positional_embedding"] = self.randn(77, w, std=0.1)
        for i in range(TEXT_LAYERS):
            r = f"{p}transformer.resblocks.{i}"
            self.norm(f"{r}.ln_1", w)
            self.state[f"{r}.attn.in_proj_weight"] = self.randn(3 * w, w, std=w ** -0.5)
            self.state[f"{r}.attn.in_proj_bias"] = self.randn(3 * w, std=0.1)
            self.linear(f"{r}.attn.out_proj", w, w)
            self.norm(f"{r}.ln_2", w)
            self.linear(f"{r}.mlp.c_fc", 4 * w, w)
            self.linear(f"{r}.mlp.c_proj", w, 4 * w)
        self.norm(p + "ln_final", w)
        self.state[p + "text_projection"] = self.randn(w, w, std=w ** -0.5)
        self.state[p + "logit_scale"] = torch.tensor(4.6052)


def _tokenizer(dir: Path) -> int:
    """CLIP's BPE with a byte-level vocabulary and no merges (one token per character); "!" is id 0, OpenCLIP's
    padding, as in Stable Diffusion 2's tokenizer. Saved to ``dir`` as transformers saves it. Returns the size."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]  # printable ASCII: these bytes map to themselves in CLIP's BPE
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    raw = dir / "_bpe"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), pad_token="!",
                  model_max_length=77).save_pretrained(dir / "tokenizer")
    return len(vocab)


def mvdream_state(seed: int = 0, vocab: int = 190) -> dict[str, torch.Tensor]:
    """The tiny checkpoint's flat state dict in MVDream's key layout."""
    w = _Writer(seed)
    w.unet("model.diffusion_model.")
    w.vae("first_stage_model.")
    w.text("cond_stage_model.model.", vocab)
    return w.state


def build_mvdream_checkpoint(path: Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint to ``path`` (``.pt``, or ``.safetensors``) and its tokenizer beside it."""
    path = Path(path)
    vocab = _tokenizer(path.parent)
    state = mvdream_state(seed, vocab)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path
