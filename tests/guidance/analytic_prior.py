"""An analytic prior whose exact score is known: a Gaussian mixture of constant-colour images.

Latents are images in [-1, 1] (``encode`` x ↦ 2x − 1), [C=3, S, S]. The data distribution is a mixture of K
Gaussians N(μ_k, s² I), μ_k a constant-colour image, one per colour word; the condition selects a mode:

    text naming colour k ("a red cube, front view")   p(x | y_k) = N(μ_k, s² I)
    any other text (∅ = "", negative prompts)         p(x) = (1/K) Σ_k N(μ_k, s² I)

Forward noising z_t = √ᾱ x + √(1−ᾱ) ε keeps each Gaussian Gaussian, N(√ᾱ μ, v_t I) with v_t = ᾱ s² + 1 − ᾱ, so
the exact ε-prediction ε̂ = −√(1−ᾱ) ∇ log p_t(z_t) is closed-form:

    Gaussian N(m, r²):  ε̂(z_t) = √(1−ᾱ) (z_t − √ᾱ m) / (ᾱ r² + 1 − ᾱ)
    mixture:            ε̂(z_t) = Σ_k π_k(z_t) ε̂_k(z_t),   π_k ∝ exp(−‖z_t − √ᾱ μ_k‖² / (2 v_t))

The image adapter sees a global embedding of the image, e(I) = A · (per-channel mean of encode(I)) (A, the
"adapter layer", a 3×3 linear map, identity), and is an expert N(e(I), s_I² / λ) at strength λ: with a colour
text the row's distribution is the product of the two Gaussians, with ∅ the image expert alone. So a
constant-colour render is reconstructed exactly (a perfect anchor) and a render with detail is not. Cameras
are ignored. ``trainable_denoiser`` gives a Gaussian-family copy (trainable mean and log-std per element) —
the exact family of the particles VSD trains it on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distill3d.priors.base import Condition, alphas_cumprod_scaled_linear

#: Image colours in [0, 1] of each mode; the latent mean is 2·colour − 1 in every pixel.
COLOURS = {"red": (0.9, 0.2, 0.2), "green": (0.2, 0.9, 0.2), "blue": (0.2, 0.2, 0.9)}


def gaussian_eps(z_t: Tensor, mean: Tensor, var: Tensor | float, abar: Tensor) -> Tensor:
    """Exact ε̂ of N(mean, var) data at ᾱ [N]: √(1−ᾱ)(z_t − √ᾱ m)/(ᾱ var + 1 − ᾱ). [N, C, h, w]"""
    a = abar[:, None, None, None]
    return (1 - a).sqrt() * (z_t - a.sqrt() * mean) / (a * var + 1 - a)


class AnalyticPrior:
    num_timesteps = 1000

    def __init__(self, image_size: int = 4, std: float = 0.1, image_std: float = 0.02) -> None:
        self.image_size = image_size
        self.std = std  # s
        self.image_std = image_std  # s_I
        self.names = list(COLOURS)
        self.means = torch.stack([(2 * torch.tensor(c) - 1)[:, None, None].expand(3, image_size, image_size)
                                  for c in COLOURS.values()])  # [K, 3, S, S]
        self.adapter = nn.Linear(3, 3, bias=False)  # A, the layer AnchorDS' fine-tune trains
        with torch.no_grad():
            self.adapter.weight.copy_(torch.eye(3))
        self.adapter.requires_grad_(False)
        self._abar = alphas_cumprod_scaled_linear(self.num_timesteps)
        self.calls = 0

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._abar

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def encode(self, images: Tensor) -> Tensor:
        return 2.0 * images - 1.0

    def decode(self, latents: Tensor) -> Tensor:
        return ((latents + 1.0) / 2.0).clamp(0.0, 1.0)

    def mode_of(self, text: str) -> int | None:
        """The colour a text names (its first colour word), None for ∅ and other texts."""
        for word in re.findall(r"[a-z]+", text.lower()):
            if word in COLOURS:
                return self.names.index(word)
        return None

    def mean(self, name: str) -> Tensor:
        return self.means[self.names.index(name)]  # [3, S, S]

    def image_embedding(self, image: Tensor) -> Tensor:
        """e(I) = A · mean colour of encode(I), broadcast over the latent grid. [3, S, S]"""
        m = self.encode(image).mean(dim=(1, 2))  # [3]
        return self.adapter(m)[:, None, None].expand(3, self.image_size, self.image_size)

    def mixture_eps(self, z_t: Tensor, abar: Tensor) -> Tensor:
        """Exact ε̂ of the unconditional mixture. [N, C, h, w]"""
        a = abar[:, None, None, None]
        v = a * self.std**2 + 1 - a
        d2 = ((z_t[:, None] - a[:, None].sqrt() * self.means[None]) ** 2).flatten(2).sum(-1)  # [N, K]
        resp = torch.softmax(-d2 / (2 * v.flatten()[:, None]), dim=1)  # π_k(z_t)
        eps_k = torch.stack([gaussian_eps(z_t, self.means[k], self.std**2, abar) for k in range(len(self.names))],
                            dim=1)  # [N, K, C, h, w]
        return (resp[:, :, None, None, None] * eps_k).sum(1)

    def _gaussian(self, cond: Condition) -> tuple[Tensor, Tensor] | None:
        """(mean [3, S, S], variance) of a row's Gaussian, None for the unconditional mixture."""
        k = self.mode_of(cond.text)
        if cond.image is not None and cond.image_scale != 0:
            e, prec_i = self.image_embedding(cond.image), cond.image_scale / self.image_std**2
            if k is None:
                return e, torch.tensor(1.0 / prec_i)
            prec_y = 1.0 / self.std**2
            var = 1.0 / (prec_y + prec_i)
            return (self.means[k] * prec_y + e * prec_i) * var, torch.tensor(var)  # product of experts
        if k is None:
            return None
        return self.means[k], torch.tensor(self.std**2)

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        assert t.shape == (z_t.shape[0],) and len(conditions) == z_t.shape[0]
        self.calls += 1
        abar = self._abar[t]
        params = [self._gaussian(c) for c in conditions]
        out = torch.empty_like(z_t)
        rows = [i for i, p in enumerate(params) if p is not None]
        if rows:
            idx = torch.tensor(rows)
            mean = torch.stack([params[i][0] for i in rows])
            var = torch.stack([params[i][1] for i in rows])[:, None, None, None]
            out[idx] = gaussian_eps(z_t[idx], mean, var, abar[idx])
        mix = [i for i, p in enumerate(params) if p is None]
        if mix:
            idx = torch.tensor(mix)
            out[idx] = self.mixture_eps(z_t[idx], abar[idx])
        return out

    def adapter_layer(self, name: str | None = None) -> nn.Module:
        return self.adapter

    def trainable_denoiser(self, rank: int = 4) -> GaussianDenoiser:
        return GaussianDenoiser(self)

    # ---- what the derivations predict ---------------------------------------------------------------

    def posterior(self, x: Tensor) -> Tensor:
        """p(mode k | clean x) under the mixture, for x [N, 3, S, S]. [N, K]"""
        d2 = ((x[:, None] - self.means[None]) ** 2).flatten(2).sum(-1)
        return torch.softmax(-d2 / (2 * self.std**2), dim=1)


class GaussianDenoiser(nn.Module):
    """A trainable Gaussian-family denoiser: exact ε̂ of N(m, exp(2ρ)) per element, m and ρ trainable,
    starting at the unconditional mixture's mean and variance; text and camera are ignored (it is trained for
    one prompt)."""

    def __init__(self, prior: AnalyticPrior) -> None:
        super().__init__()
        self.prior = [prior]
        mix_mean = prior.means.mean(0)
        mix_var = prior.std**2 + ((prior.means - mix_mean) ** 2).mean(0)
        self.m = nn.Parameter(mix_mean.clone())  # starts at the unconditional prior's moments
        self.log_std = nn.Parameter(0.5 * torch.log(mix_var))

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        self.prior[0].calls += 1
        abar = self.prior[0].alphas_cumprod[t]
        return gaussian_eps(z_t, self.m, torch.exp(2 * self.log_std), abar)
