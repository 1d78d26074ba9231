"""A tiny analytic prior implementing ``distill3d.priors.base.Prior`` for guidance tests.

    ε̂(z_t; t, text, I, λ, π, M, κ) = tanh(A z_t + e(text) + (t/T)·τ + K·cam(π) + λ·Adapter(pool(I))
                                          + κ·G pool(M))

A mixes channels per pixel, e(text) is a fixed embedding seeded by the SHA-256 of the text (so ∅ = "" has
its own), cam(π) = (cos az, sin az, el/90), pool(I) average-pools the image to the latent grid and
Adapter is a real ``nn.Linear(3, C)`` applied per pixel (the layer AnchorDS' fine-tune trains). M is a
control map at ControlNet scale κ (G a fixed [C, 3] matrix), accepted only when ``control_kind`` is set.
Deterministic, row-independent, and counts its calls and rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.priors.base import Condition, ViewCapabilities, alphas_cumprod_scaled_linear, view_groups


class TinyPrior:
    num_timesteps = 1000
    image_size = 16
    view_capabilities = ViewCapabilities(conditions_on_cameras=True)  # K·cam(π)

    def __init__(self, channels: int = 4, seed: int = 0, control_kind: str | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        c = channels
        self.channels = c
        self.mix = torch.randn(c, c, generator=g) * (0.6 / math.sqrt(c))  # A
        self.enc = torch.randn(c, 3, generator=g) * 0.7
        self.dec = torch.randn(3, c, generator=g) * 0.7
        self.time_vec = torch.randn(c, generator=g) * 0.5  # τ
        self.cam_mat = torch.randn(c, 3, generator=g) * 0.3  # K
        self.adapter = nn.Linear(3, c)
        with torch.no_grad():
            self.adapter.weight.copy_(torch.randn(c, 3, generator=g) * 0.5)
            self.adapter.bias.copy_(torch.randn(c, generator=g) * 0.1)
        self.adapter.requires_grad_(False)  # a frozen prior; fine-tuning switches it on
        self.control_kind = control_kind  # None: no "ControlNet", control maps are refused
        self.control_mat = torch.randn(c, 3, generator=g) * 0.5  # G (drawn last: earlier draws unchanged)
        self._abar = alphas_cumprod_scaled_linear(self.num_timesteps)
        self.calls = 0
        self.rows = 0
        self.texts: set[str] = set()  # every text a condition carried

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._abar

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def encode(self, images: Tensor) -> Tensor:
        x = F.avg_pool2d(images * 2.0 - 1.0, 2)  # [B, 3, 8, 8]
        return torch.einsum("cd,bdhw->bchw", self.enc, x)

    def decode(self, latents: Tensor) -> Tensor:
        x = torch.sigmoid(torch.einsum("dc,bchw->bdhw", self.dec, latents))
        return F.interpolate(x, scale_factor=2, mode="nearest")  # [B, 3, 16, 16]

    def text_embedding(self, text: str) -> Tensor:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return torch.randn(self.channels, generator=torch.Generator().manual_seed(seed)) * 0.5  # [C]

    def _condition_term(self, cond: Condition, h: int, w: int) -> Tensor:
        term = self.text_embedding(cond.text)[:, None, None].expand(-1, h, w)
        if cond.camera is not None:
            az, el = (math.radians(v) for v in cond.camera)
            term = term + (self.cam_mat @ torch.tensor([math.cos(az), math.sin(az), el / (math.pi / 2)]))[:, None, None]
        if cond.image is not None and cond.image_scale != 0.0:
            feat = F.adaptive_avg_pool2d(cond.image[None], (h, w))[0]  # [3, h, w]
            term = term + cond.image_scale * self.adapter(feat.permute(1, 2, 0)).permute(2, 0, 1)
        if cond.control is not None and cond.control_scale != 0.0:
            if self.control_kind is None:
                raise UserError("a condition carries a control map but this prior has no ControlNet")
            feat = F.adaptive_avg_pool2d(cond.control[None], (h, w))[0]  # [3, h, w]
            term = term + cond.control_scale * torch.einsum("cd,dhw->chw", self.control_mat, feat)
        return term  # [C, h, w]

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        n, _, h, w = z_t.shape
        assert t.shape == (n,) and len(conditions) == n, "one timestep and one condition per row"
        self.calls += 1
        self.rows += n
        self.texts.update(c.text for c in conditions)
        cond = torch.stack([self._condition_term(c, h, w) for c in conditions])  # [N, C, h, w]
        time = (t.float() / self.num_timesteps)[:, None, None, None] * self.time_vec[None, :, None, None]
        return torch.tanh(torch.einsum("cd,bdhw->bchw", self.mix, z_t) + cond + time)

    def adapter_layer(self, name: str | None = None) -> nn.Module:
        if name not in (None, "adapter"):
            raise KeyError(f"unknown adapter layer {name!r}; valid: 'adapter'")
        return self.adapter

    def trainable_denoiser(self, rank: int = 4) -> TinyDenoiser:
        """The trainable-parts capability (VSD's ε̂_φ); ``rank`` is ignored."""
        return TinyDenoiser(self, self.channels)


class TinyDenoiser(nn.Module):
    """The tiny prior's trainable copy (its ``trainable_denoiser``, VSD's ε̂_φ): the frozen prediction plus a
    zero-initialised per-pixel linear map of z_t and of the camera features, so it starts equal to the prior."""

    def __init__(self, prior: TinyPrior | RowwisePrior, channels: int) -> None:
        super().__init__()
        self.prior = [prior]  # not a submodule: the prior is not trained
        self.mix = nn.Linear(channels, channels, bias=False)
        self.cam = nn.Linear(3, channels)
        for p in self.parameters():
            nn.init.zeros_(p)

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        base = self.prior[0].predict_noise(z_t, t, conditions)
        feats = torch.tensor([[math.cos(math.radians(c.camera[0])), math.sin(math.radians(c.camera[0])),
                               c.camera[1] / 90.0] if c.camera is not None else [0.0, 0.0, 0.0] for c in conditions])
        delta = self.mix(z_t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + self.cam(feats)[:, :, None, None]
        return base + delta


class RowwisePrior:
    """The same prior, evaluated one row at a time, or one group at a time for the rows of a ``view_group`` on
    a multi-view prior (the slow twin of a batched call)."""

    def __init__(self, prior: TinyPrior) -> None:
        self.inner = prior
        self.num_timesteps = prior.num_timesteps
        self.image_size = prior.image_size
        self.view_capabilities = prior.view_capabilities

    alphas_cumprod = property(lambda self: self.inner.alphas_cumprod)
    device = property(lambda self: self.inner.device)

    def encode(self, images: Tensor) -> Tensor:
        return self.inner.encode(images)

    def decode(self, latents: Tensor) -> Tensor:
        return self.inner.decode(latents)

    def adapter_layer(self, name: str | None = None) -> nn.Module:
        return self.inner.adapter_layer(name)

    def trainable_denoiser(self, rank: int = 4) -> TinyDenoiser:
        return TinyDenoiser(self, self.inner.channels)

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        parts, i = [], 0
        for n in view_groups(conditions, self.view_capabilities.joint_views):
            parts.append(self.inner.predict_noise(z_t[i : i + n], t[i : i + n], list(conditions[i : i + n])))
            i += n
        return torch.cat(parts)
