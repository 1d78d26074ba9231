"""Two priors on one latent space behind one ``Prior``: a base prior (Stable Diffusion with its IP-Adapter) for
the rows that see no camera, and a multi-view prior (MVDream) for the rows that do. ModeDreamer's ISD takes
g_ISD from the first and g_MV (Eq. 8) from the second (papers/modedreamer_isd.txt, Sec. 5); with this pair a
method still calls ONE prior and never asks which one answers a row. The toy world has the same split:
``--prior toy --mv-prior toy-mv`` (``bench run --priors toy+toy-mv``), the single-view toy prior for the text and
image rows, the multi-view one for the camera rows.

Which rows go where, in one place:
- A row with a ``camera`` or a ``view_group`` goes to the multi-view prior: a group's rows jointly (MVDream's 3D
  self-attention), a camera row outside a group alone (the multi-view prior's single-view network, with its
  camera). The pair declares the multi-view prior's ``view_capabilities`` (it conditions on cameras), so a method
  keeps its camera-conditioned term on; only the multi-view prior can honour that camera, and sending the row to
  the base would silently make the term view-agnostic, the very thing ISD refuses on Stable Diffusion alone.
- Every other row (text, text + image, text + control map) goes to the base, which holds the image adapter and
  the ControlNet. A row carrying a camera and an image (or a control map) has no prior that takes both: a
  ``UserError``.
- ISD on a pair at 4 views of 90° (``views_per_step=4, view_azimuths=even``): its g_MV rows (camera + group) are
  MVDream's, its g_ISD rows (text, image) Stable Diffusion's, as in the paper.
- VSD's ε̂_φ is the base's ``trainable_denoiser`` (its camera-conditioned LoRA copy): its camera rows go to that
  copy, not to the multi-view prior.

Each prior gets one ``predict_noise`` call with its rows in batch order; the predictions are put back in the
batch's order. Encode/decode, ``image_size``, ``device``, the adapter layer, ``control_kind``, ``takes_images`` and
``trainable_denoiser`` are the base's, so the multi-view prior sees the base's latents: the two must share the
latent space and the noise schedule, which the pair checks when it is built (the same ᾱ_t, and the same latent
shape for a blank image at the base's ``image_size``). That the two encoders agree beyond the shape (MVDream's VAE
is Stable Diffusion's) is the pairing's promise, not checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.priors.base import Condition, Prior, TrainableDenoiserPrior, view_groups, views_of


def _sees_views(c: Condition) -> bool:
    """Is ``c`` the multi-view prior's row (a camera or a view group)?"""
    return c.camera is not None or c.view_group is not None


def _carries_input(c: Condition) -> bool:
    """Does ``c`` carry an adapter image or a control map that counts?"""
    return (c.image is not None and c.image_scale != 0) or (c.control is not None and c.control_scale != 0)


class PairedPrior:
    """A base prior and a multi-view prior sharing one latent space, as one ``Prior`` (see the module docstring
    for which rows go where)."""

    def __init__(self, base: Prior, multi_view: Prior) -> None:
        """A ``UserError`` naming what differs unless the two share the noise schedule and the latent shape."""
        name = type(multi_view).__name__
        a, b = base.alphas_cumprod.cpu(), multi_view.alphas_cumprod.cpu()  # ᾱ_t [T] each
        if a.shape != b.shape or not torch.allclose(a, b, rtol=0, atol=1e-6):
            raise UserError(f"the multi-view prior {name} has another noise schedule (alphas_cumprod) than the base "
                            f"prior {type(base).__name__}; --mv-prior needs one on the same schedule")
        s = base.image_size
        with torch.no_grad():
            shapes = [tuple(p.encode(torch.ones(1, 3, s, s, device=p.device)).shape[1:]) for p in (base, multi_view)]
        if shapes[0] != shapes[1]:
            raise UserError(f"the multi-view prior {name} encodes a {s}² image to latents {list(shapes[1])}, the base "
                            f"prior {type(base).__name__} to {list(shapes[0])}; --mv-prior needs one latent space")
        self.base, self.multi_view = base, multi_view
        self.num_timesteps: int = base.num_timesteps
        self.image_size: int = base.image_size
        #: The protocol's optional capabilities: views as the multi-view prior sees them, images and control maps
        #: as the base takes them.
        self.view_capabilities = views_of(multi_view)
        self.takes_images: bool = getattr(base, "takes_images", True)
        self.control_kind: str | None = getattr(base, "control_kind", None)
        if isinstance(base, TrainableDenoiserPrior):  # the capability "has trainable parts" is the base's
            self.trainable_denoiser = base.trainable_denoiser

    @property
    def alphas_cumprod(self) -> Tensor:
        return self.base.alphas_cumprod  # [T]

    @property
    def device(self) -> torch.device:
        return self.base.device

    def encode(self, images: Tensor) -> Tensor:
        """Images [B, 3, S, S] -> the base's latents [B, C, h, w]."""
        return self.base.encode(images)

    def decode(self, latents: Tensor) -> Tensor:
        """Latents [B, C, h, w] -> the base's images [B, 3, S, S]."""
        return self.base.decode(latents)

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        """ε̂ [N, C, h, w]: the multi-view prior's for the rows with a camera or a view group, the base's for the
        others, one call each, in the batch's order."""
        n = z_t.shape[0]
        if len(conditions) != n or t.shape != (n,):
            raise ValueError(f"need one condition and one timestep per row: {n} rows, "
                             f"{len(conditions)} conditions, t of shape {tuple(t.shape)}")
        view_groups(conditions, self.view_capabilities.joint_views)  # groups are consecutive in the whole batch
        if any(_sees_views(c) and _carries_input(c) for c in conditions):
            raise UserError(f"a condition carries a camera and an image or control map: the multi-view prior "
                            f"{type(self.multi_view).__name__} takes no image or map and the base prior "
                            f"{type(self.base).__name__} no camera")
        rows = [(prior, [i for i, c in enumerate(conditions) if _sees_views(c) == multi])
                for prior, multi in ((self.base, False), (self.multi_view, True))]
        parts = [prior.predict_noise(z_t[idx], t[idx], [conditions[i] for i in idx]).to(self.device)
                 for prior, idx in rows if idx]
        order = torch.tensor([i for _, idx in rows for i in idx], device=self.device)
        return torch.cat(parts)[order.argsort()]  # [N, C, h, w] back in the batch's order

    def adapter_layer(self, name: str | None = None) -> nn.Module:
        """The base's image-adapter layer (the multi-view prior has none)."""
        return self.base.adapter_layer(name)
