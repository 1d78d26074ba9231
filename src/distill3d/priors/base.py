"""The one interface through which guidance methods see a diffusion prior.

Notation follows ``shared/METHODS.md``: a prior predicts noise ``ε̂(z_t; t, c)`` for latents ``z_t``
at integer timesteps ``t`` with a condition ``c`` made of text, an optional image seen through the
image adapter with strength ``λ_ip``, and an optional camera. Timesteps follow the diffusers
convention: ``t`` is an integer in ``[0, T)`` indexing ``alphas_cumprod`` (T = 1000); the papers'
``t = 0.02T`` is ``t = 20``.

Guidance methods never branch on which prior they talk to or on its prediction type: every prior
returns ε-predictions, converting internally if its network predicts something else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from distill3d.core.errors import UserError


@dataclass(frozen=True)
class Condition:
    """One condition for one row of a batched noise prediction.

    ``text`` is the prompt; ``""`` is the empty prompt ∅ (a negative prompt is just another text).
    ``image`` is an RGB image [3, H, W] in [0, 1] seen through the image adapter; it only counts when
    ``image_scale`` (λ_ip) is non-zero, and ``image_scale == 0`` must give exactly the prediction
    without an image. ``camera`` is (azimuth, elevation) in degrees, in the conventions of
    ``distill3d.core.cameras``; priors without camera conditioning ignore it.
    ``control`` is a ControlNet map [3, H, W] in [0, 1] of the kind the prior's ``control_kind`` names
    (``distill3d.scene.control`` makes them from a render); it only counts when ``control_scale`` (the
    ControlNet conditioning scale) is non-zero, and ``control_scale == 0`` must give exactly the
    prediction without control. Image and control are independent: a row may carry either, both or none.
    ``view_group`` asks a multi-view prior (``ViewCapabilities.joint_views`` = N > 1) to denoise this row
    jointly with the other rows of the same id: N consecutive rows, the views of one scene, each with its
    camera. None (the default): the row is denoised alone. A prior that denoises each view alone ignores it.
    """

    text: str = ""
    image: Tensor | None = None  # [3, H, W] in [0, 1]
    image_scale: float = 0.0
    camera: tuple[float, float] | None = None
    control: Tensor | None = None  # [3, H, W] in [0, 1]
    control_scale: float = 0.0
    view_group: int | None = None  # rows sharing an id: one group of views denoised jointly

    def with_image(self, image: Tensor | None, scale: float) -> Condition:
        """The same condition with another adapter image and λ_ip (text, camera and control kept)."""
        return replace(self, image=image, image_scale=scale)


@runtime_checkable
class Prior(Protocol):
    """A diffusion prior as guidance methods see it.

    Optional attribute, outside the protocol's required members (read it with
    ``getattr(prior, "control_kind", None)``): ``control_kind: str | None``, the kind of ``Condition.control``
    map the prior's ControlNet takes, "normal" or "depth" (in the conventions of
    ``distill3d.scene.control``). None or absent: the prior takes no control maps and refuses a row whose
    ``control_scale`` is non-zero. Likewise ``takes_images: bool`` (``getattr(prior, "takes_images",
    True)``): False when the prior has no image adapter and refuses rows carrying an image. And
    ``view_capabilities: ViewCapabilities`` (read it with :func:`views_of`): what the prior does with the
    views of a batch; absent, it conditions on no camera.
    """

    #: Number of training timesteps T; valid ``t`` are ``0 .. T-1``.
    num_timesteps: int
    #: Side of the square RGB images ``encode`` expects (renders are resized to it by the caller).
    image_size: int

    @property
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_t for t = 0..T-1, float32, on the prior's device. [T]"""
        ...

    @property
    def device(self) -> torch.device: ...

    def encode(self, images: Tensor) -> Tensor:
        """Images [B, 3, S, S] in [0, 1] (S = image_size) -> latents [B, C, h, w]; differentiable."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """Latents [B, C, h, w] -> images [B, 3, S, S] in [0, 1]."""
        ...

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        """ONE batched noise prediction: row i of ``z_t`` [N, C, h, w] at timestep ``t[i]`` ([N], long)
        under ``conditions[i]`` (``len(conditions) == N``). Returns ε̂ [N, C, h, w].

        Rows with different kinds of condition (text only, text + image, image only, camera) may be
        mixed freely in one call; the result must equal separate calls row by row (group by group for the
        rows of one ``view_group`` on a multi-view prior, see :func:`view_groups`).
        """
        ...

    def adapter_layer(self, name: str | None = None) -> nn.Module:
        """The image-adapter layer AnchorDS' fine-tune variant trains (``None``: the prior's default).

        Raises ``KeyError`` listing the valid names when ``name`` is unknown.
        """
        ...


class TrainableDenoiser(Protocol):
    """A trainable copy of a prior's denoiser, ε̂_φ(z_t; t, y, π): VSD's camera-conditioned LoRA
    (ProlificDreamer). It starts equal (or close) to the frozen prior and is trained by the method that asked
    for it; the prior's own ``predict_noise`` is never changed by it.

    ``predict_noise`` has the prior's signature and batching rules; ``Condition.camera`` (azimuth, elevation)
    conditions it even where the frozen prior ignores cameras. It is differentiable w.r.t. ``parameters()``.
    ``state_dict``/``load_state_dict`` hold exactly those parameters (a checkpoint's part)."""

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@runtime_checkable
class TrainableDenoiserPrior(Protocol):
    """The capability "has trainable parts": a prior that can hand out a :class:`TrainableDenoiser`.

    A method that needs it (VSD) checks it with :func:`require_trainable_denoiser` when it is set up, so
    a prior without it fails at start-up with a ``UserError``, not in the middle of a run."""

    def trainable_denoiser(self, rank: int) -> TrainableDenoiser:
        """A fresh trainable copy of the denoiser. ``rank`` is the LoRA rank; a prior whose trainable copy is
        not a LoRA (an analytic test prior) may ignore it. Each call makes a new, independent copy."""
        ...


def require_trainable_denoiser(prior: object, method: str) -> TrainableDenoiserPrior:
    """``prior`` as a :class:`TrainableDenoiserPrior`, or a ``UserError`` naming ``method``."""
    if not isinstance(prior, TrainableDenoiserPrior):
        raise UserError(f"{method} trains a copy of the prior's denoiser, and the prior "
                        f"{type(prior).__name__} has no trainable parts (no trainable_denoiser): use the toy "
                        "prior or Stable Diffusion")
    return prior


@dataclass(frozen=True)
class ViewCapabilities:
    """The capability "sees the views": what a prior does with ``Condition.camera``, declared by the prior as
    its ``view_capabilities`` attribute and read with :func:`views_of`. A method whose term needs it checks it
    when it is set up (:func:`require_camera_conditioning`, :func:`require_joint_views`), so a term never
    silently becomes a view-agnostic one. One field per thing a prior can do with views."""

    #: ε̂ depends on ``Condition.camera`` (the toy prior's camera embedding); False: the camera is ignored
    #: (Stable Diffusion), so a camera-conditioned term reduces to a view-agnostic one.
    conditions_on_cameras: bool = False
    #: N > 1: rows marked with one ``Condition.view_group`` are N views of one scene denoised jointly, their
    #: ε̂ depending on each other (MVDream's 3D self-attention); unmarked rows are denoised alone, as by a
    #: single-view prior. 1: every row alone, whatever its ``view_group``.
    joint_views: int = 1


def views_of(prior: object) -> ViewCapabilities:
    """The prior's :class:`ViewCapabilities`; a prior that declares none conditions on no camera."""
    return getattr(prior, "view_capabilities", ViewCapabilities())


def require_camera_conditioning(prior: object, method: str, term: str, fix: str = "use the toy prior") -> None:
    """A one-line ``UserError`` naming ``method``, its ``term`` and a ``fix`` unless ``prior`` conditions on
    cameras."""
    if not views_of(prior).conditions_on_cameras:
        raise UserError(f"{method}'s {term} needs a prior that conditions on cameras, and the prior "
                        f"{type(prior).__name__} ignores them; {fix}")


def require_joint_views(prior: object, method: str, n: int) -> None:
    """A one-line ``UserError`` naming ``method`` unless ``prior`` denoises groups of ``n`` views jointly."""
    if views_of(prior).joint_views != n:
        raise UserError(f"{method} denoises groups of {n} views jointly and needs a multi-view prior such "
                        f"as toy-mv; the prior {type(prior).__name__} denoises "
                        + ("each view alone" if views_of(prior).joint_views == 1
                           else f"groups of {views_of(prior).joint_views}"))


def view_groups(conditions: Sequence[Condition], joint_views: int) -> tuple[int, ...]:
    """The sizes of the consecutive groups a prior denoising groups of ``joint_views`` views reads from a
    batch's ``Condition.view_group`` ids: N for each run of N rows sharing an id, 1 for an unmarked row (and
    for every row when ``joint_views`` is 1). Sums to ``len(conditions)``. A ``ValueError`` when a marked
    group is not ``joint_views`` consecutive rows (a method's mistake, not a user's)."""
    if joint_views == 1:
        return (1,) * len(conditions)
    sizes: list[int] = []
    seen: set[int] = set()
    i = 0
    while i < len(conditions):
        group = conditions[i].view_group
        j = i + 1
        while group is not None and j < len(conditions) and conditions[j].view_group == group:
            j += 1
        if group is not None and (j - i != joint_views or group in seen):
            raise ValueError(f"view_group {group} must be {joint_views} consecutive rows of the batch")
        if group is not None:
            seen.add(group)
        sizes.append(j - i)
        i = j
    return tuple(sizes)


def alphas_cumprod_scaled_linear(num_timesteps: int = 1000, beta_start: float = 0.00085,
                                 beta_end: float = 0.012) -> Tensor:
    """Stable Diffusion's "scaled_linear" schedule: betas linear in sqrt space. ᾱ_t, [T] float32."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def alphas_cumprod_cosine(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule (Nichol & Dhariwal 2021), suited to small pixel-space models. ᾱ_t, [T]."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * torch.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1.0 - betas, dim=0).float()
