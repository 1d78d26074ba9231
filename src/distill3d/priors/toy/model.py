"""The toy prior's network: a small pixel-space UNet predicting ε, conditioned on

- text: tokens from ``TextEncoder``, seen by cross-attention at the lower resolutions;
- an image: an IP-Adapter-like branch. A small CNN turns the image into a grid of LayerNorm'd tokens,
  and every transformer block adds a decoupled cross-attention with its own key/value projections
  (``ImageKV.to_k_ip`` / ``to_v_ip``, the "adapter layers", named like ``"up.1.attn.ip"``):
      out = Attn(q, K_txt, V_txt) + λ_ip · Attn(q, K_img, V_img)   (IP-Adapter's decoupled cross-attention)
  Rows with λ_ip = 0 skip the image attention entirely, so they equal the prediction without an image.
- a camera: (sin az, cos az, el / 90) embedded and added to the timestep embedding; a learned null
  embedding when a row has no camera. With ``ToyUNetConfig.camera_text`` the camera embedding also modulates
  the text tokens before every cross-attention, FiLM-style (Perez et al. 2018): tokens · (1 + γ(cam)) + β(cam).
  Added to the timestep embedding alone, the camera is a global signal, enough to show or hide a face's eyes
  but not to say which object stands on the left; a shift shared by all tokens cannot change which token a
  pixel attends to, the per-channel scale γ can. γ and β start at zero, so the layer loads any weights
  unchanged (:func:`with_camera_text`).

The multi-view variant (``ToyUNetConfig.views`` = N > 1, the prior ``toy-mv``) is MVDream's inflation of the
same network (Shi et al. 2024): the self-attention of every transformer block runs over the tokens
of the N views of a group concatenated (3D self-attention), everything else (cross-attention, residual
blocks, camera embedding) stays per view. It adds no parameter, so it loads the single-view weights
unchanged (:func:`with_views`), as MVDream starts from Stable Diffusion; a row in a group of one is computed
exactly as by the single-view network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill3d.priors.toy.attention import Attention, across_views, attend
from distill3d.priors.toy.text import ObjectEncoder, SceneTokenizer, TextEncoder, Tokenizer
from distill3d.toyworld.grammar import COLOR_NAMES, RELATIONS, SHAPES, VIEWS


@dataclass(frozen=True)
class ToyUNetConfig:
    """Architecture of the toy prior; stored as JSON beside its weights."""

    vocabulary: tuple[str, ...]  # every word a caption may contain (the tokenizer's vocabulary)
    image_size: int = 32
    channels: tuple[int, ...] = (32, 64, 128)  # per resolution level, from image_size down
    attention: tuple[bool, ...] = (False, True, True)  # transformer block at this level?
    res_blocks: int = 1  # residual blocks per level on the way down (one more on the way up)
    heads: int = 4
    emb_dim: int = 128  # timestep + camera embedding
    text_dim: int = 128
    text_layers: int = 2
    max_text_len: int = 20
    image_dim: int = 128  # width of the image tokens
    image_grid: int = 4  # image tokens form an image_grid x image_grid grid
    groups: int = 8  # GroupNorm groups
    #: "objects": one token per parsed object + relation + view (``ObjectEncoder``); "words": word tokens
    #: through a small transformer (``TextEncoder``, the first shipped prior's encoder).
    text_encoder: str = "objects"
    #: What the network outputs: "eps" (ε) or "v" (v = √ᾱ ε − √(1−ᾱ) x0, Salimans & Ho 2022); the prior
    #: always answers ε̂, converted from v̂ where needed.
    prediction: str = "eps"
    #: Views a group holds (MVDream's 3D self-attention across the group's tokens); 1: the single-view
    #: network, which ignores ``ModelConditions.groups``.
    views: int = 1
    #: Modulate the text tokens by the camera embedding (FiLM, zero-initialised; see the module docstring).
    camera_text: bool = False

    def __post_init__(self) -> None:
        if self.text_encoder not in ("objects", "words"):
            raise ValueError(f"text_encoder must be 'objects' or 'words', got {self.text_encoder!r}")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {self.prediction!r}")
        if self.views < 1:
            raise ValueError(f"views must be at least 1, got {self.views}")

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> ToyUNetConfig:
        # configs written before these fields existed are the first shipped prior's: word tokens, ε
        d = {"text_encoder": "words", "prediction": "eps", **d}
        return ToyUNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class ModelConditions:
    """The conditions of one batch, in tensors. Row i of every per-row field belongs to row i of x."""

    text: Tensor  # [B, L, text_dim] tokens from ToyUNet.encode_text
    text_mask: Tensor  # [B, L] bool, True for valid tokens
    camera: Tensor  # [B, 2] (azimuth, elevation) in degrees; ignored where camera_mask is False
    camera_mask: Tensor  # [B] bool
    image: Tensor  # [R, 3, S, S] in [0, 1]: the images of the rows that have one
    image_rows: Tensor  # [R] long: which rows of the batch those images belong to (unique)
    image_scale: Tensor  # [R] λ_ip per image row (non-zero)
    #: Sizes of the consecutive groups of rows denoised jointly (1 or ``config.views`` each, summing to B);
    #: () : every row alone.
    groups: tuple[int, ...] = ()


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer timesteps. t [B] -> [B, dim]"""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def camera_features(camera: Tensor) -> Tensor:
    """(azimuth, elevation) degrees [B, 2] -> (sin az, cos az, el / 90) [B, 3]"""
    az = torch.deg2rad(camera[:, 0])
    return torch.stack([torch.sin(az), torch.cos(az), camera[:, 1] / 90.0], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ImageKV(nn.Module):
    """The adapter layer of one transformer block: keys and values of the image tokens."""

    def __init__(self, image_dim: int, dim: int) -> None:
        super().__init__()
        self.to_k_ip = nn.Linear(image_dim, dim, bias=False)
        self.to_v_ip = nn.Linear(image_dim, dim, bias=False)


class SpatialTransformer(nn.Module):
    """Self-attention, decoupled text/image cross-attention and an MLP over the pixels of a feature map."""

    def __init__(self, channels: int, cfg: ToyUNetConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.views = cfg.views
        self.norm = nn.GroupNorm(cfg.groups, channels)
        self.proj_in = nn.Linear(channels, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.self_attn = Attention(channels, channels, cfg.heads)
        self.norm2 = nn.LayerNorm(channels)
        self.cross = Attention(channels, cfg.text_dim, cfg.heads)
        self.ip = ImageKV(cfg.image_dim, channels)
        self.norm3 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def cross_attention(self, x: Tensor, cond: ModelConditions, image_tokens: Tensor | None) -> Tensor:
        """x [B, N, C] -> [B, N, C]: Attn(q, K_txt, V_txt) + λ_ip·Attn(q, K_img, V_img), only for image rows."""
        q = self.cross.to_q(x)
        out = attend(q, self.cross.to_k(cond.text), self.cross.to_v(cond.text), self.heads, cond.text_mask)
        if image_tokens is not None:
            rows = cond.image_rows
            ip = attend(q[rows], self.ip.to_k_ip(image_tokens), self.ip.to_v_ip(image_tokens), self.heads)
            out = out.index_add(0, rows, cond.image_scale[:, None, None].to(ip.dtype) * ip)
        return self.cross.to_out(out)

    def forward(self, x: Tensor, cond: ModelConditions, image_tokens: Tensor | None) -> Tensor:
        b, c, hgt, wid = x.shape
        h = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # [B, HW, C]
        n = self.norm1(h)
        attn = lambda tokens: self.self_attn(tokens, tokens)
        h = h + (across_views(attn, n, cond.groups) if self.views > 1 and cond.groups else attn(n))  # 3D / 2D
        h = h + self.cross_attention(self.norm2(h), cond, image_tokens)
        h = h + self.mlp(self.norm3(h))
        return x + self.proj_out(h).transpose(1, 2).reshape(b, c, hgt, wid)


class ImageEncoder(nn.Module):
    """A small CNN: image [R, 3, S, S] in [0, 1] -> grid² LayerNorm'd tokens [R, grid², image_dim].

    The LayerNorm keeps the tokens of mostly-white renders from collapsing to a near-constant vector
    (a trial without it learned nothing in the image branch; see ENVIRONMENT.md)."""

    def __init__(self, cfg: ToyUNetConfig) -> None:
        super().__init__()
        d = cfg.image_dim
        self.grid = cfg.image_grid
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, d, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(d, d, 3, padding=1),
        )
        self.pos = nn.Parameter(torch.randn(cfg.image_grid**2, d) * 0.02)
        self.norm = nn.LayerNorm(d)

    def forward(self, image: Tensor) -> Tensor:
        h = F.adaptive_avg_pool2d(self.net(2.0 * image - 1.0), self.grid)  # [R, d, g, g]
        return self.norm(h.flatten(2).transpose(1, 2) + self.pos)


class Level(nn.Module):
    """One resolution level: residual blocks, an optional transformer block, a resampler."""

    def __init__(self, res: list[ResBlock], attn: SpatialTransformer | None, sample: nn.Module) -> None:
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = attn
        self.sample = sample


class ToyUNet(nn.Module):
    """The toy UNet. ``forward(z_t [B,3,S,S], t [B], ModelConditions)`` -> the raw output [B,3,S,S]: ε̂ or v̂
    by ``config.prediction``; ``eps`` turns it into ε̂ (what every caller outside training wants)."""

    def __init__(self, cfg: ToyUNetConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tokenizer: Tokenizer | SceneTokenizer
        self.text_encoder: TextEncoder | ObjectEncoder
        if cfg.text_encoder == "words":
            self.tokenizer = Tokenizer(cfg.vocabulary, cfg.max_text_len)
            self.text_encoder = TextEncoder(len(self.tokenizer), cfg.max_text_len, cfg.text_dim,
                                            cfg.text_layers, cfg.heads)
        else:
            self.tokenizer = SceneTokenizer()
            self.text_encoder = ObjectEncoder(len(COLOR_NAMES), len(SHAPES), len(RELATIONS), len(VIEWS),
                                              cfg.text_dim)
        self.image_encoder = ImageEncoder(cfg)
        e, g, ch = cfg.emb_dim, cfg.groups, cfg.channels
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.camera_mlp = nn.Sequential(nn.Linear(3, e), nn.SiLU(), nn.Linear(e, e))
        self.null_camera = nn.Parameter(torch.zeros(e))
        self.camera_text = nn.Linear(e, 2 * cfg.text_dim) if cfg.camera_text else None
        if self.camera_text is not None:
            nn.init.zeros_(self.camera_text.weight)
            nn.init.zeros_(self.camera_text.bias)
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)

        def attn(level: int) -> SpatialTransformer | None:
            return SpatialTransformer(ch[level], cfg) if cfg.attention[level] else None

        last = len(ch) - 1
        self.down = nn.ModuleList()
        c_prev = ch[0]
        for i, c in enumerate(ch):
            res = [ResBlock(c_prev if j == 0 else c, c, e, g) for j in range(cfg.res_blocks)]
            down = nn.Conv2d(c, c, 3, stride=2, padding=1) if i < last else nn.Identity()
            self.down.append(Level(res, attn(i), down))
            c_prev = c
        self.mid = Level([ResBlock(ch[-1], ch[-1], e, g), ResBlock(ch[-1], ch[-1], e, g)], attn(last),
                         nn.Identity())
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            res = [ResBlock(c_prev + ch[i] if j == 0 else ch[i], ch[i], e, g) for j in range(cfg.res_blocks + 1)]
            up = nn.Upsample(scale_factor=2, mode="nearest") if i > 0 else nn.Identity()
            self.up.append(Level(res, attn(i), up))
            c_prev = ch[i]
        self.norm_out = nn.GroupNorm(g, ch[0])
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def encode_text(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Captions -> tokens [B, L, text_dim] and mask [B, L]."""
        return self.text_encoder(self.tokenizer(texts).to(self.conv_in.weight.device))

    def eps(self, z_t: Tensor, t: Tensor, cond: ModelConditions, alphas_cumprod: Tensor) -> Tensor:
        """ε̂ [B,3,S,S] whatever the network predicts: for v, ε̂ = √ᾱ_t v̂ + √(1−ᾱ_t) z_t (Salimans & Ho
        2022, from v = √ᾱ ε − √(1−ᾱ) x0 and z_t = √ᾱ x0 + √(1−ᾱ) ε)."""
        out = self(z_t, t, cond)
        if self.config.prediction == "eps":
            return out
        a = alphas_cumprod[t].to(out.dtype)[:, None, None, None]
        return a.sqrt() * out + (1 - a).sqrt() * z_t

    def adapter_layers(self) -> dict[str, ImageKV]:
        """Every adapter layer (image K/V projections) by name, e.g. ``"up.1.attn.ip"``, in forward order."""
        return {name: m for name, m in self.named_modules() if isinstance(m, ImageKV)}

    def forward(self, x: Tensor, t: Tensor, cond: ModelConditions) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim))
        cam = torch.where(cond.camera_mask[:, None], self.camera_mlp(camera_features(cond.camera)),
                          self.null_camera)
        emb = emb + cam
        if self.camera_text is not None:  # FiLM of the text tokens by the camera
            gamma, beta = self.camera_text(F.silu(cam)).chunk(2, dim=-1)
            cond = replace(cond, text=cond.text * (1 + gamma[:, None]) + beta[:, None])
        image_tokens = self.image_encoder(cond.image) if cond.image_rows.numel() else None

        def run(level: Level, h: Tensor, skip: Tensor | None = None) -> Tensor:
            for k, block in enumerate(level.res):
                h = block(torch.cat([h, skip], dim=1) if k == 0 and skip is not None else h, emb)
            return level.attn(h, cond, image_tokens) if level.attn is not None else h

        h = self.conv_in(x)
        skips = []
        for level in self.down:
            h = run(level, h)
            skips.append(h)
            h = level.sample(h)
        h = run(self.mid, h)
        for level in self.up:
            h = level.sample(run(level, h, skips.pop()))
        return self.conv_out(F.silu(self.norm_out(h)))


def with_views(model: ToyUNet, views: int) -> ToyUNet:
    """A new network with ``model``'s weights, copied unchanged, and its self-attention inflated across groups
    of ``views`` views (``views`` = 1: the single-view network). Inflation adds no parameter, so every
    weight name matches (MVDream initialises from Stable Diffusion's weights the same way)."""
    return _rebuilt(model, frozenset(), views=views)


def with_camera_text(model: ToyUNet) -> ToyUNet:
    """A new network with ``model``'s weights and camera-modulated text tokens (``camera_text``): its one new
    layer starts at zero, so the new network computes exactly what ``model`` computes until it is trained."""
    if model.config.camera_text:
        return model
    return _rebuilt(model, frozenset({"camera_text.weight", "camera_text.bias"}), camera_text=True)


def _rebuilt(model: ToyUNet, added: frozenset[str], **changes) -> ToyUNet:
    """A new network of ``model``'s config with ``changes``, carrying every weight of ``model``; exactly the
    weights named in ``added`` are new (they keep their initialisation)."""
    new = ToyUNet(replace(model.config, **changes)).to(model.conv_in.weight.device)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or set(missing) != added:
        raise RuntimeError(f"rebuilding the toy UNet with {changes}: unexpected weights {unexpected}, "
                           f"missing {sorted(set(missing) - added)}, not new {sorted(added - set(missing))}")
    return new


__all__ = ["ImageKV", "ModelConditions", "ToyUNet", "ToyUNetConfig", "with_camera_text", "with_views"]
