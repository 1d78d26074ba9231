"""The guidance protocol and the score-distillation math every method shares (written once, here).

Notation follows ``shared/METHODS.md``: ᾱ_t is ``prior.alphas_cumprod[t]``, ``z_t = √ᾱ_t z + √(1−ᾱ_t) ε``,
``x̂0(z_t, ε̂) = (z_t − √(1−ᾱ_t) ε̂) / √ᾱ_t`` (Tweedie), CFG is the standard form
``ε̂(∅) + s·(ε̂(y) − ε̂(∅))`` (threestudio's ``ε̂(y) + s'(ε̂(y) − ε̂(∅))`` is ours with ``s = s' + 1``).

A method maps a batch of encoded renders ``z`` [B, C, h, w] to a gradient ``g`` on ``z`` of the same shape.
The loop turns it into a loss with :func:`surrogate_loss`, whose autograd gradient w.r.t. ``z`` is exactly
``g`` (no batch-size factor: divide in the loop if you want a mean over views).

Every method evaluates all the branches that share ``z_t`` in ONE batched ``prior.predict_noise`` call
(:func:`predict_rows`), under ``torch.no_grad`` unless the method says it trains something.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from distill3d.core.cameras import Cameras, view_prompt
from distill3d.core.errors import UserError
from distill3d.priors.base import Condition, Prior, views_of

Weighting = Literal["sds", "uniform", "fantasia3d"]


# ----------------------------------------------------------------------------------------------------
# inputs and outputs
# ----------------------------------------------------------------------------------------------------


@dataclass
class GuidanceInput:
    """What the loop hands a method at one optimisation step."""

    latents: Tensor  # [B, C, h, w] encoded renders z = E(x); methods read them detached
    images: Tensor  # [B, 3, S, S] the renders x in [0, 1] (image anchoring, L_rec)
    cameras: Cameras  # B cameras the renders were taken from
    prompt: str  # the text prompt y
    step: int = 0  # optimisation step τ, 0-based
    total_steps: int = 1
    #: Editing methods only (kind "edit"): latents of the frozen SOURCE asset rendered from the same
    #: cameras as ``latents`` (the edited copy); ``prompt`` is then the target text y_tgt.
    source_latents: Tensor | None = None  # [B, C, h, w]
    #: Priors with a ControlNet only (``prior.control_kind``): the renders' control maps, detached
    #: (``distill3d.scene.control``); None otherwise.
    control: Tensor | None = None  # [B, 3, S, S] in [0, 1]
    #: Editing methods only: y_src, the text describing the source asset.
    source_prompt: str | None = None


class Diagnostics:
    """Base of the typed, method-specific extras a :class:`GuidanceOutput` may carry."""

    def scalars(self) -> dict[str, float]:
        """Named numbers for the run's history (the loop logs them on the steps it records: the benchmark's
        L_rec and keep-rate columns, curves.png); none by default. May cost a decode, so it is only read
        on logged steps."""
        return {}


@dataclass
class GuidanceOutput:
    grad: Tensor  # [B, C, h, w] the gradient on z, detached
    t: Tensor  # [B] long, the timestep of each view
    grad_norm: Tensor  # [B] ‖g‖ per view (after clamping/filtering)
    num_prior_calls: int  # predict_noise calls made for the gradient
    num_prior_evals: int  # rows evaluated in those calls (network evaluations of one latent)
    extras: Diagnostics | None = None


@dataclass
class InnerStepOutput:
    """Result of a method's own training step (AnchorDS fine-tune, ...)."""

    loss: float
    num_prior_calls: int
    num_prior_evals: int


class GuidanceMethod:
    """Base class of every guidance method.

    ``__call__`` computes the gradient. A method that needs something made before the first step (ISD's
    reference image) makes it in :meth:`setup` and keeps it in its :meth:`state_dict`. Methods that train
    a part of the prior expose the parameters with :meth:`trainable_parameters` and the loop calls
    :meth:`inner_step` after each guidance step; the defaults mean "needs nothing, trains nothing".
    """

    #: predict_noise calls one ``__call__`` makes at most (its output's ``num_prior_calls`` is the count; the
    #: contract tests check both).
    prior_calls_per_step: int = 1

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        raise NotImplementedError

    def extra_texts(self) -> list[str]:
        """The texts the method conditions on besides the prompt y and ∅ (negative or source prompts of
        its config). A prior that reads only its own grammar (the toy prior) has them checked before a run
        starts, like the prompt."""
        return []

    def grammar_fallbacks(self) -> dict[str, str]:
        """Stand-ins for ``extra_texts`` on a prior that reads only its own grammar: {--set path: text the
        prior reads}, e.g. AnchorDS' code form swaps its negative prompt for the empty one. Empty: none, and
        an unreadable text is refused before the run."""
        return {}

    def setup(self, prior: Prior, prompt: str, seed: int) -> None:
        """Called once before the first step of a fresh run (a resumed run restores instead, through
        :meth:`load_state_dict`). ``prompt`` is the run's text y, ``seed`` its seed."""

    def trainable_parameters(self, prior: Prior) -> list[nn.Parameter]:
        return []

    def inner_step(self, prior: Prior, inp: GuidanceInput, out: GuidanceOutput,
                   generator: torch.Generator) -> InnerStepOutput | None:
        """One training step of the method's own trainable part, after the guidance step ``out`` computed
        from ``inp`` (its timesteps, or a loss it kept); None if the method trains nothing."""
        return None

    def state_dict(self, prior: Prior) -> dict:
        """What a checkpoint must hold to resume the method exactly (its trained part and optimiser)."""
        return {}

    def load_state_dict(self, prior: Prior, state: dict) -> None:
        """Restore what :meth:`state_dict` saved."""


# ----------------------------------------------------------------------------------------------------
# schedules of scalars over training (typed objects, not list syntax)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constant:
    """The same value at every step."""

    name: ClassVar[str] = "constant"  # the --set name choosing this variant
    value: float  # the value at every step

    def __call__(self, step: int, total_steps: int) -> float:
        return self.value


@dataclass(frozen=True)
class LinearRamp:
    """``start`` up to ``start_step``, linear to ``end`` at ``end_step`` (None: the last step), then ``end``."""

    name: ClassVar[str] = "ramp"
    start: float  # the value up to start_step
    end: float  # the value from end_step on
    start_step: int = 0  # optimisation step where the ramp begins
    end_step: int | None = None  # optimisation step where it reaches end (None: the run's last step)

    def __call__(self, step: int, total_steps: int) -> float:
        end_step = max(total_steps - 1, 1) if self.end_step is None else self.end_step
        if end_step <= self.start_step:
            return self.end if step >= end_step else self.start
        p = min(max((step - self.start_step) / (end_step - self.start_step), 0.0), 1.0)
        return self.start + (self.end - self.start) * p

    def validate(self) -> None:
        if self.end_step is not None and self.end_step < self.start_step:
            raise UserError(f"end_step ({self.end_step}) must not come before start_step ({self.start_step})")


Schedule = Constant | LinearRamp


# ----------------------------------------------------------------------------------------------------
# timestep sampling (t are integers in [0, T), fractions are of T)
# ----------------------------------------------------------------------------------------------------


def _to_index(frac: float, num_timesteps: int) -> int:
    return min(max(round(frac * num_timesteps), 0), num_timesteps - 1)


def _uniform_ints(lo: int, hi: int, batch: int, generator: torch.Generator) -> Tensor:
    return torch.randint(lo, hi + 1, (batch,), generator=generator, dtype=torch.long)  # [B] in [lo, hi]


def _check_t_range(t_min: float, *t_maxes: float, strict: bool = True) -> None:
    """t fractions within (0, 1) with every maximum above t_min (or equal to it, ``strict=False``)."""
    for v in (t_min, *t_maxes):
        if not 0.0 < v < 1.0:
            raise UserError(f"timestep fractions must lie within (0, 1) of T, got {v:g}")
    for m in t_maxes:
        if m < t_min or (strict and m == t_min):
            raise UserError(f"t_min ({t_min:g}) must be {'below' if strict else 'at most'} every t_max ({m:g})")


@dataclass(frozen=True)
class UniformTimesteps:
    """t ~ U{t_min·T, …, t_max·T} independently per view (DreamFusion: 0.02, 0.98)."""

    name: ClassVar[str] = "uniform"  # the --set name choosing this variant (e.g. timesteps=uniform)
    t_min: float = 0.02  # lowest t, a fraction of T
    t_max: float = 0.98  # highest t, a fraction of T

    def sample(self, step: int, total_steps: int, batch: int, num_timesteps: int,
               generator: torch.Generator) -> Tensor:
        return _uniform_ints(_to_index(self.t_min, num_timesteps), _to_index(self.t_max, num_timesteps),
                             batch, generator)

    def validate(self) -> None:
        _check_t_range(self.t_min, self.t_max)


@dataclass(frozen=True)
class MaxSwitchTimesteps:
    """GaussianDreamer: uniform in [t_min, t_max], the maximum lowered to ``t_max_after`` from
    ``switch_step`` on (0.98 → 0.55 at step 500)."""

    name: ClassVar[str] = "max-switch"
    t_min: float = 0.02  # lowest t, a fraction of T
    t_max: float = 0.98  # highest t before switch_step
    t_max_after: float = 0.55  # highest t from switch_step on
    switch_step: int = 500  # optimisation step (0-based) from which t_max_after applies

    def sample(self, step: int, total_steps: int, batch: int, num_timesteps: int,
               generator: torch.Generator) -> Tensor:
        hi = self.t_max if step < self.switch_step else self.t_max_after
        return _uniform_ints(_to_index(self.t_min, num_timesteps), _to_index(hi, num_timesteps),
                             batch, generator)

    def validate(self) -> None:
        _check_t_range(self.t_min, self.t_max, self.t_max_after)


@dataclass(frozen=True)
class MaxRampTimesteps:
    """LucidDreamer: uniform in [t_min, m(τ)], the maximum m lowered linearly from ``t_max`` at step 0 to
    ``t_max_end`` at ``ramp_steps``, then kept (its ``warm_up_rate``: 0.98 → 0.5 over 1500 steps)."""

    name: ClassVar[str] = "max-ramp"
    t_min: float = 0.02  # lowest t, a fraction of T
    t_max: float = 0.98  # highest t at step 0
    t_max_end: float = 0.5  # highest t from ramp_steps on
    ramp_steps: int = 1500  # optimisation steps over which the maximum falls

    def t_max_at(self, step: int) -> float:
        p = min(max(step / self.ramp_steps, 0.0), 1.0) if self.ramp_steps > 0 else 1.0
        return self.t_max + (self.t_max_end - self.t_max) * p

    def sample(self, step: int, total_steps: int, batch: int, num_timesteps: int,
               generator: torch.Generator) -> Tensor:
        return _uniform_ints(_to_index(self.t_min, num_timesteps),
                             _to_index(self.t_max_at(step), num_timesteps), batch, generator)

    def validate(self) -> None:
        _check_t_range(self.t_min, self.t_max, self.t_max_end)


@dataclass(frozen=True)
class AnnealedTimesteps:
    """Deterministic, monotonically decreasing t (DreamTime's time-prioritised schedule, HiFA's form):
    ``t = t_max − (t_max − t_min)·f(p)`` with ``p = step/(total_steps−1)`` and ``f(p) = p`` ("linear")
    or ``√p`` ("sqrt"); the same t for every view. No random draw."""

    name: ClassVar[str] = "annealed"
    t_min: float = 0.02  # t at the last step, a fraction of T
    t_max: float = 0.98  # t at the first step
    curve: Literal["linear", "sqrt"] = "sqrt"  # f(p): p or √p

    def sample(self, step: int, total_steps: int, batch: int, num_timesteps: int,
               generator: torch.Generator) -> Tensor:
        p = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
        f = math.sqrt(p) if self.curve == "sqrt" else p
        t = _to_index(self.t_max - (self.t_max - self.t_min) * f, num_timesteps)
        return torch.full((batch,), t, dtype=torch.long)

    def validate(self) -> None:
        _check_t_range(self.t_min, self.t_max, strict=False)  # t_min = t_max pins t


#: A method's timestep schedule: one of these variants, chosen on the command line by its ``name``
#: (``--set timesteps=max-switch --set timesteps.switch_step=300``).
TimestepSchedule = UniformTimesteps | MaxSwitchTimesteps | MaxRampTimesteps | AnnealedTimesteps


# ----------------------------------------------------------------------------------------------------
# the shared math
# ----------------------------------------------------------------------------------------------------


def _bcast(v: Tensor) -> Tensor:
    return v[:, None, None, None]  # [B] -> [B, 1, 1, 1]


def alpha_bar(prior: Prior, t: Tensor) -> Tensor:
    """ᾱ_t for integer timesteps t [B]. [B]"""
    return prior.alphas_cumprod.to(t.device)[t]


def weighting(kind: Weighting, abar: Tensor) -> Tensor:
    """w(t) from ᾱ_t [B]: "sds" 1−ᾱ, "uniform" 1, "fantasia3d" √ᾱ(1−ᾱ). [B]"""
    if kind == "sds":
        return 1.0 - abar
    if kind == "uniform":
        return torch.ones_like(abar)
    if kind == "fantasia3d":
        return abar.sqrt() * (1.0 - abar)
    raise ValueError(f"unknown weighting {kind!r}; use 'sds', 'uniform' or 'fantasia3d'")


def weight(kind: Weighting, abar: Tensor) -> Tensor:
    """w(t) of :func:`weighting`, shaped to scale a batch of latents. [B, 1, 1, 1]"""
    return _bcast(weighting(kind, abar))


def add_noise(z: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """Forward noising z_t = √ᾱ z + √(1−ᾱ) ε.  z, eps [B, C, h, w]; abar [B]."""
    return _bcast(abar).sqrt() * z + _bcast(1.0 - abar).sqrt() * eps


def predict_x0(z_t: Tensor, eps_hat: Tensor, abar: Tensor) -> Tensor:
    """Tweedie one-step estimate x̂0 = (z_t − √(1−ᾱ) ε̂)/√ᾱ. [B, C, h, w]"""
    return (z_t - _bcast(1.0 - abar).sqrt() * eps_hat) / _bcast(abar).sqrt()


def ddim_step(z_from: Tensor, eps_hat: Tensor, abar_from: Tensor, abar_to: Tensor) -> Tensor:
    """Deterministic DDIM move between noise levels (inversion when ᾱ_to < ᾱ_from):
    z_to = √ᾱ_to x̂0(z_from, ε̂) + √(1−ᾱ_to) ε̂. [B, C, h, w]"""
    return _bcast(abar_to).sqrt() * predict_x0(z_from, eps_hat, abar_from) + _bcast(1.0 - abar_to).sqrt() * eps_hat


def cfg(eps_uncond: Tensor, eps_cond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance, standard form ε̂(∅) + s(ε̂(y) − ε̂(∅))."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def clamp_grad(grad: Tensor, max_abs: float | None) -> Tensor:
    """Element-wise clamp of g to [−max_abs, max_abs]; None leaves it unchanged."""
    return grad if max_abs is None else grad.clamp(-max_abs, max_abs)


def surrogate_loss(z: Tensor, grad: Tensor) -> Tensor:
    """L = ½‖z − sg(z − g)‖² summed over everything, so that ∂L/∂z = g exactly. Scalar."""
    target = (z - grad).detach()
    return 0.5 * ((z - target) ** 2).sum()


def per_view_norm(grad: Tensor) -> Tensor:
    """‖g‖ per view. [B]"""
    return grad.flatten(1).norm(dim=1)


def view_prompts(prompt: str, cameras: Cameras, view_dependent: bool) -> list[str]:
    """One prompt per view, with threestudio's ", <front|side|back|overhead> view" suffix if asked."""
    if not view_dependent:
        return [prompt] * len(cameras)
    return [view_prompt(prompt, float(a), float(e)) for a, e in zip(cameras.azimuth, cameras.elevation)]


def camera_tuples(cameras: Cameras) -> list[tuple[float, float]]:
    return [(float(a), float(e)) for a, e in zip(cameras.azimuth, cameras.elevation)]


def camera_rows(text: str, cameras: Cameras, joint: int, first_group: int | None) -> list[Condition]:
    """One row per view: ``text`` with the view's camera π. With ``first_group`` set, each run of ``joint``
    consecutive views is one ``view_group`` (first_group, first_group + 1, ...), denoised jointly by a multi-view
    prior; None: every view alone with its camera."""
    return [Condition(text, camera=p, view_group=None if first_group is None else first_group + i // joint)
            for i, p in enumerate(camera_tuples(cameras))]


def sample_t_and_noise(prior: Prior, schedule: TimestepSchedule, inp: GuidanceInput,
                       generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw t [B] (first) and ε [B, C, h, w] (second) from ``generator``; the order is part of the
    contract, so a hand-written reference can replay it."""
    b = inp.latents.shape[0]
    t = schedule.sample(inp.step, inp.total_steps, b, prior.num_timesteps, generator)
    eps = torch.randn(inp.latents.shape, generator=generator, dtype=inp.latents.dtype)
    return t.to(prior.device), eps.to(prior.device)


@dataclass(frozen=True)
class Noised:
    """One forward-noising of the (detached) renders: z_t = √ᾱ_t z + √(1−ᾱ_t) ε."""

    z: Tensor  # [B, C, h, w] the clean latents, detached
    t: Tensor  # [B] long
    eps: Tensor  # [B, C, h, w] ε
    abar: Tensor  # [B] ᾱ_t
    z_t: Tensor  # [B, C, h, w]


def noise_latents(prior: Prior, schedule: TimestepSchedule, inp: GuidanceInput,
                  generator: torch.Generator) -> Noised:
    """Draw t then ε (:func:`sample_t_and_noise`'s order) and noise ``inp.latents`` to z_t."""
    z = inp.latents.detach()
    t, eps = sample_t_and_noise(prior, schedule, inp, generator)
    abar = alpha_bar(prior, t)
    return Noised(z, t, eps, abar, add_noise(z, eps, abar))


def in_even_groups(cameras: Cameras, views: int) -> bool:
    """Do the step's cameras come in consecutive groups of ``views``, each 360°/views apart in azimuth (what
    ``views_per_step=N, view_azimuths=even`` draws), so that a multi-view prior can denoise each group jointly?"""
    az = cameras.azimuth.detach().double().cpu()
    if len(az) == 0 or len(az) % views != 0:
        return False
    rel = az.reshape(-1, views) - az.reshape(-1, views)[:, :1]  # [groups, views]
    off = torch.remainder(rel - 360.0 / views * torch.arange(views) + 180.0, 360.0) - 180.0
    return bool(off.abs().max() < 1e-2)


def share_t_in_groups(prior: Prior, n: Noised, views: int) -> Noised:
    """The same noising with each group of ``views`` consecutive rows at its first row's t (a multi-view prior is
    trained and sampled with one t per group, MVDream Sec. 3.3), ε unchanged; z_t recomputed."""
    t = n.t.reshape(-1, views)[:, :1].expand(-1, views).reshape(-1)
    abar = alpha_bar(prior, t)
    return Noised(n.z, t, n.eps, abar, add_noise(n.z, n.eps, abar))


def multi_view_rows(prior: Prior, n: Noised, text: str, cameras: Cameras
                    ) -> tuple[Noised, list[Condition], list[Condition]]:
    """The noising and the rows of a multi-view term ε̂_MV(z_t; text, π) and ε̂_MV(z_t; ∅, π) (ModeDreamer Eq. 8):
    on a multi-view prior (``joint_views`` = N > 1) whose views come in groups of N at 360°/N, each group is one
    ``view_group`` at one t (``share_t_in_groups``; MVDream's joint denoising), the ∅ rows' groups numbered after
    the text rows'; otherwise each view alone with its camera and ``n`` unchanged."""
    joint = views_of(prior).joint_views
    grouped = joint > 1 and in_even_groups(cameras, joint)
    if grouped:
        n = share_t_in_groups(prior, n, joint)
    groups = n.z.shape[0] // joint
    return (n, camera_rows(text, cameras, joint, 0 if grouped else None),
            camera_rows("", cameras, joint, groups if grouped else None))


@dataclass(frozen=True)
class EditRows:
    """The four rows per view every editing method evaluates in ONE call: the edited copy's render z^tgt and
    the source asset's render z^src from the same camera, noised with the SAME t and ε."""

    tgt: Noised  # z^tgt, t, ε, ᾱ_t and z_t^tgt
    z_src: Tensor  # [B, C, h, w] z^src, detached
    zt_src: Tensor  # [B, C, h, w] z_t^src = √ᾱ_t z^src + √(1−ᾱ_t) ε
    eps_tgt: Tensor  # [B, C, h, w] ε̂(z_t^tgt; y_tgt)
    eps_tgt_null: Tensor  # ε̂(z_t^tgt; ∅)
    eps_src: Tensor  # ε̂(z_t^src; y_src)
    eps_src_null: Tensor  # ε̂(z_t^src; ∅)


def predict_edit_rows(prior: Prior, schedule: TimestepSchedule, inp: GuidanceInput, generator: torch.Generator,
                      method: str) -> EditRows:
    """Draw t then ε (the shared order), noise ``inp.latents`` (target) and ``inp.source_latents`` (source)
    with them, and evaluate [tgt: y_tgt, ∅] + [src: y_src, ∅] in one call. 4B rows."""
    if inp.source_latents is None or inp.source_prompt is None:
        raise ValueError(f"{method} edits: it needs GuidanceInput.source_latents (renders of the source asset) "
                         "and source_prompt")
    tgt = noise_latents(prior, schedule, inp, generator)
    z_src = inp.source_latents.detach()
    zt_src = add_noise(z_src, tgt.eps, tgt.abar)  # same ε and t
    b, t = z_src.shape[0], tgt.t
    e_tgt, e_tgt_null, e_src, e_src_null = predict_groups(prior, [
        (tgt.z_t, t, [Condition(inp.prompt)] * b), (tgt.z_t, t, [Condition("")] * b),
        (zt_src, t, [Condition(inp.source_prompt)] * b), (zt_src, t, [Condition("")] * b)])
    return EditRows(tgt, z_src, zt_src, e_tgt, e_tgt_null, e_src, e_src_null)


def prompt_conditions(inp: GuidanceInput, view_dependent: bool) -> list[Condition]:
    """One text condition y per view (with the view suffix if asked), for the ε̂(z_t; y) rows."""
    return [Condition(y) for y in view_prompts(inp.prompt, inp.cameras, view_dependent)]


def predict_prompt_and_texts(prior: Prior, n: Noised, inp: GuidanceInput, view_dependent: bool,
                             *texts: str) -> list[Tensor]:
    """ONE call at z_t: ε̂(z_t; y) with each view's prompt, then ε̂(z_t; s) for every s in ``texts`` (all
    views). One prediction [B, C, h, w] per group, in that order."""
    b = n.z.shape[0]
    return predict_groups(prior, [(n.z_t, n.t, prompt_conditions(inp, view_dependent))]
                          + [(n.z_t, n.t, [Condition(s)] * b) for s in texts])


@dataclass(frozen=True)
class Rows:
    """Rows of one batched call: latents [N, C, h, w], timesteps [N] and N conditions."""

    z: Tensor
    t: Tensor
    conditions: list[Condition]


def stack_rows(groups: Sequence[tuple[Tensor, Tensor, Sequence[Condition]]]) -> Rows:
    """Concatenate (z [B,…], t [B], B conditions) groups into one batch, in order."""
    zs, ts, conds = [], [], []
    for z, t, c in groups:
        if not (z.shape[0] == t.shape[0] == len(c)):
            raise ValueError("each group needs as many latents, timesteps and conditions")
        zs.append(z)
        ts.append(t)
        conds.extend(c)
    return Rows(torch.cat(zs), torch.cat(ts), conds)


def predict_rows(prior: Prior, rows: Rows, num_groups: int) -> list[Tensor]:
    """ONE predict_noise call over all rows; returns the prediction split back into ``num_groups``
    equal groups of B rows each."""
    eps = prior.predict_noise(rows.z, rows.t, rows.conditions)
    return list(eps.chunk(num_groups, dim=0))


def predict_groups(prior: Prior, groups: Sequence[tuple[Tensor, Tensor, Sequence[Condition]]]) -> list[Tensor]:
    """Without grad, ONE predict_noise call over (z [B,…], t [B], B conditions) groups; one prediction
    [B, C, h, w] per group, in order."""
    with torch.no_grad():
        return predict_rows(prior, stack_rows(groups), len(groups))


def finish(grad: Tensor, t: Tensor, calls: int, evals: int, extras: Diagnostics | None = None) -> GuidanceOutput:
    grad = grad.detach()
    return GuidanceOutput(grad, t, per_view_norm(grad), calls, evals, extras)
