"""DDIM sampling (η = 0) from any ``Prior`` with classifier-free guidance on the text.

    ε̃  = ε̂(z_t; ∅) + s·(ε̂(z_t; y) − ε̂(z_t; ∅))                       (CFG, Ho & Salimans Eq. 6)
    x̂0 = (z_t − √(1−ᾱ_t) ε̃) / √ᾱ_t,  clipped to [-1, 1] for pixel-space priors, ε̃ recomputed from it
    z_{t'} = √ᾱ_{t'} x̂0 + √(1−ᾱ_{t'}) ε̃                                (DDIM Eq. 12, σ = 0)

Image and camera conditions, when given, are part of both the conditional and the unconditional
branch, so the guidance acts on the text alone. The latent shape comes from encoding a blank image, so
pixel-space and latent-space priors are sampled alike.

With ``views`` = N > 1 (a multi-view prior, ``joint_views`` = N) each sample is a group of N views of one
scene drawn jointly, as MVDream samples: the views' cameras 360°/N apart in azimuth from ``camera``, each
view its own noise, one timestep for all; the conditional and unconditional branches are separate groups.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill3d.priors.base import Condition, Prior, require_joint_views


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T−1 down to 0."""
    return torch.linspace(num_timesteps - 1, 0, steps).round().long().tolist()


@torch.no_grad()
def sample(prior: Prior, text: str, n: int = 4, cfg: float = 5.0, steps: int = 50, seed: int = 0,
           camera: tuple[float, float] | None = None, image: Tensor | None = None, image_scale: float = 0.0,
           clip_x0: bool | None = None, views: int = 1) -> Tensor:
    """``n`` images [n, 3, S, S] in [0, 1] for ``text``; ``image`` is [3, H, W] in [0, 1]. With ``views`` > 1:
    ``n`` groups of ``views`` views, [n·views, 3, S, S] group after group, ``camera`` (required) the first
    view's (azimuth, elevation).

    ``clip_x0`` clips x̂0 to [-1, 1] at every step (default: when latents have 3 channels, i.e. pixels).
    """
    if views > 1:
        require_joint_views(prior, f"sampling groups of {views} views", views)
        if camera is None:
            raise ValueError("groups of views need the first view's camera")
    g = torch.Generator().manual_seed(seed)
    s = prior.image_size
    shape = prior.encode(torch.ones(1, 3, s, s, device=prior.device)).shape[1:]
    clip = shape[0] == 3 if clip_x0 is None else clip_x0
    rows = n * views
    z = torch.randn(rows, *shape, generator=g).to(prior.device)
    if views == 1:
        conditions = [Condition(y, image, image_scale, camera) for y in (text, "") for _ in range(n)]
    else:
        az, el = camera  # type: ignore[misc]
        cams = [((az + 360.0 / views * k) % 360.0, el) for k in range(views)]
        conditions = [Condition(y, image, image_scale, cams[k], view_group=branch * n + i)
                      for branch, y in enumerate((text, "")) for i in range(n) for k in range(views)]
    ac = prior.alphas_cumprod
    ts = ddim_timesteps(prior.num_timesteps, steps)
    for i, t in enumerate(ts):
        eps_c, eps_u = prior.predict_noise(torch.cat([z, z]), torch.full((2 * rows,), t, device=prior.device),
                                           conditions).chunk(2)
        eps = eps_u + cfg * (eps_c - eps_u)
        a = ac[t]
        x0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (z - a.sqrt() * x0) / (1 - a).sqrt()
        a_next = ac[ts[i + 1]] if i + 1 < len(ts) else torch.ones((), device=ac.device)
        z = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return prior.decode(z).clamp(0, 1)
