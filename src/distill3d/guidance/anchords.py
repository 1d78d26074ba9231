"""AnchorDS: Anchoring Dynamic Sources (papers/anchords.md), the project's main method.

SDS's source branch is the unconditional prior, blind to the current 3D state. AnchorDS conditions the
source branch on the current render I^(τ) through the image adapter (strength λ_ip):

Paper form (default, ``PaperForm``), Eq. 11 with the usual weighting w(t):
    g = w(t) · (ε̂(z_t; t, y) − ε̂(z_t; t, ∅, I^(τ)))                       — no −ε term.

Authors' code form (``CodeForm``, IP-Adapter-Plus on SD 1.5): both branches see the render, the source uses
the negative prompt y_neg, CFG (standard form, threestudio's 100 = our 101) and an element-wise clamp:
    ε_tgt = ε̂(z_t; y, I),  ε_src = ε̂(z_t; y_neg, I),  g = clamp(w(t)·(ε_src + s(ε_tgt − ε_src) − ε)).

Every step also computes the pseudo-source reconstruction and its error (diagnostics, and the filter),
from one of two sources (``filter_source``):
- "paper" (default):  ẑ_src = x̂0(z_t, ε̂(z_t; ∅, I)) at t                                      (Eq. 12)
  In the paper form ε̂(z_t; ∅, I) IS the source branch (no extra evaluation); in the code form it is one
  more row in the same batched call (none when y_neg is "": then it equals the source row).
- "authors": ẑ_src = (z_t − √(1−ᾱ_t') ε̂_src) / √ᾱ_t' from the SOURCE row ε̂_src (ε̂(z_t; y_neg, I) in the
  code form), with t' = t snapped down to the 50-step DDIM grid 1, 21, …, 981 (:func:`snap_to_ddim_grid`):
  manqiwu/AnchorDS threestudio/models/guidance/ip_adapter_guidance.py ``compute_grad_sds`` calls
  ``scheduler.set_timesteps(50)``, takes the first grid step not above t and reads ``pred_original_sample``
  of ``scheduler.step(noise_pred_image, t_validate, latents_noisy)``. No extra row.
    L_rec = mean over pixels of (D(ẑ_src) − I)²                                                (Eq. 13)

Variants (options of this one class, named for the CLI by ``distill3d.guidance.METHODS``):
- Filter (Eq. 14): ``filter_threshold = γ`` (0.03) zeroes the gradient of every view with L_rec ≥ γ. The
  diagnostics report its keep-rate and, on logged steps, the keep-rate of each filter source the step's rows
  allow (``keep_rate_paper``, ``keep_rate_authors``: both, except "authors" in the code form with y_neg ≠ "",
  which has no ε̂(∅, I) row).
- Fine-tune: ``finetune = FinetuneConfig()`` trains ONE image-adapter layer (``prior.adapter_layer``) with
  its own Adam optimizer, jointly with the 3D parameters: the loop calls :meth:`AnchorDS.inner_step` after
  each guidance step with that step's output. Loss "pixel" (default) is the paper's L_rec (Eq. 12-13) of
  the guidance step itself: the batched call runs with autograd on (only the adapter layer requires grad,
  so the backward pass stops at that layer), and the inner step back-propagates the very L_rec the
  diagnostics report — no extra prior evaluation. Loss "latent" is the authors' code: latent MSE between
  x̂0 from a grad-enabled source-branch prediction with FRESH noise at the same t and z (one more call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.guidance.base import (
    Diagnostics,
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    InnerStepOutput,
    LinearRamp,
    Schedule,
    TimestepSchedule,
    UniformTimesteps,
    Weighting,
    add_noise,
    alpha_bar,
    cfg,
    clamp_grad,
    finish,
    noise_latents,
    predict_rows,
    predict_x0,
    stack_rows,
    view_prompts,
    weight,
)
from distill3d.priors.base import Condition, Prior

#: y_neg of the authors' code form: the handcrafted "failure" text of SDS-Bridge (McAllister et al. 2024, which
#: the AnchorDS paper cites for enhanced negative prompts; METHODS.md), word for word the
#: ``prompt_processor.negative_prompt`` of manqiwu/AnchorDS configs/gaussiandreamer-sd1.5-anchorDS-*.yaml.
CODE_NEGATIVE_PROMPT = ("oversaturated, smooth, pixelated, cartoon, foggy, hazy, blurry, bad structure, noisy, "
                        "malformed")
#: Steps of the DDIM grid the authors' filter snaps t to (``scheduler.set_timesteps(50)``).
FILTER_GRID_STEPS = 50


def snap_to_ddim_grid(t: Tensor, num_timesteps: int, steps: int = FILTER_GRID_STEPS) -> Tensor:
    """t [B] (≥ 1) snapped down to the grid of diffusers' DDIMScheduler.set_timesteps(steps) under Stable
    Diffusion 1.5's scheduler config ("leading" spacing, steps_offset 1): k·(T // steps) + 1, the largest one
    not above t (T = 1000, 50 steps: 1, 21, …, 981). [B]"""
    stride = num_timesteps // steps
    return (t - 1).clamp_min(0) // stride * stride + 1


@dataclass(frozen=True)
class PaperForm:
    """Eq. 11: target ε̂(z_t; y) without image, source ε̂(z_t; ∅, I); no CFG, no −ε, no clamp."""

    name: ClassVar[str] = "paper"


@dataclass(frozen=True)
class CodeForm:
    """The authors' released code: image on both branches, y_neg as source, CFG, clamp schedule."""

    name: ClassVar[str] = "code"
    guidance_scale: float = 101.0  # CFG s, standard form; the code's threestudio s' = 100 is s = 101
    negative_prompt: str = CODE_NEGATIVE_PROMPT  # y_neg, the source text (with the render through the adapter)
    #: Element-wise clamp of g at ±value(step): 1.5 → 2.0 over the first 1000 steps in the code.
    grad_clamp: Schedule = field(default_factory=lambda: LinearRamp(1.5, 2.0, 0, 1000))


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tune of ONE image-adapter layer on L_rec, jointly with the 3D parameters (``finetune=on``)."""

    #: Name for prior.adapter_layer (Stable Diffusion: "up_blocks.3", "mid_block", ...); none: the prior's
    #: default, the last up block's image K/V projections (the layer the authors' code trains).
    adapter_layer: str | None = None
    lr: float = 1e-4  # Adam learning rate of that layer
    loss: Literal["pixel", "latent"] = "pixel"  # paper Eq. 13 (pixel MSE of D(ẑ_src)) / authors' code latent MSE

    def validate(self) -> None:
        if not self.lr > 0:
            raise UserError(f"lr must be positive, got {self.lr:g}")


@dataclass(frozen=True)
class AnchorDSConfig:
    form: PaperForm | CodeForm = field(default_factory=PaperForm)  # Eq. 11 (paper) or the authors' code form
    image_scale: float = 0.5  # λ_ip of the render seen through the image adapter
    #: ControlNet conditioning scale of the render's control map (used when the loop supplies maps:
    #: ``GuidanceInput.control``, a prior with a ControlNet). It joins the image on the anchored branches.
    control_scale: float = 1.0
    view_dependent: bool = True  # view suffix on the target prompt y
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t): 1−ᾱ ("sds"), 1 ("uniform"), √ᾱ(1−ᾱ) ("fantasia3d")
    filter_threshold: float | None = None  # γ of Eq. 14 (paper: 0.03); none: no filter
    #: Where ẑ_src of L_rec (Eq. 12-14: diagnostics, filter, "pixel" fine-tune) comes from: "paper" x̂0 of
    #: ε̂(z_t; ∅, I) at t (one more row in the code form when y_neg ≠ ""); "authors" x̂0 of the source row
    #: (ε̂(z_t; y_neg, I) in the code form) with ᾱ at t snapped down to the 50-step DDIM grid, as their code.
    filter_source: Literal["paper", "authors"] = "paper"
    finetune: FinetuneConfig | None = None  # fine-tune one image-adapter layer on L_rec; none: frozen prior

    def validate(self) -> None:
        if self.filter_threshold is not None and not self.filter_threshold > 0:
            raise UserError(f"filter_threshold must be positive (or none), got {self.filter_threshold:g}")


@dataclass
class AnchorDiagnostics(Diagnostics):
    """Eq. 12-14 per view. The decode D(ẑ_src) runs when ``reconstruction`` or ``l_rec`` is first read
    (at once for the filter and the fine-tune, which need it): on Stable Diffusion it is a VAE decode at
    512 px, too costly to pay every step for diagnostics nobody reads."""

    decode: Callable[[], Tensor]  # -> [B, 3, S, S] D(ẑ_src) of the configured filter source, Eq. 12
    images: Tensor  # [B, 3, S, S] the renders I
    keep: Tensor  # [B] bool, Eq. 14 (all True without the filter)
    #: D(ẑ_src) of every filter source the step's rows allow, by name ("paper", "authors"); ``decode`` is one.
    decodes: dict[str, Callable[[], Tensor]] = field(default_factory=dict)
    threshold: float | None = None  # γ of the filter (None: no filter)
    #: Fine-tune "pixel" only: mean L_rec with its autograd graph into the adapter layer (inner_step's loss).
    finetune_loss: Tensor | None = None

    @cached_property
    def reconstruction(self) -> Tensor:
        return self.decode()  # [B, 3, S, S], Eq. 12

    @property
    def l_rec(self) -> Tensor:
        return _l_rec(self.reconstruction, self.images)  # [B], Eq. 13

    def scalars(self) -> dict[str, float]:
        """Mean L_rec over the step's views (Eq. 13) and the share the filter kept (Eq. 14; 1 without it);
        with a filter also the share each available filter source would keep (``keep_rate_paper``,
        ``keep_rate_authors``; the other source costs one more decode, on logged steps only)."""
        out = {"l_rec": float(self.l_rec.mean()), "keep_rate": float(self.keep.float().mean())}
        if self.threshold is not None:
            for name, decode in self.decodes.items():
                recon = self.reconstruction if decode is self.decode else decode()
                out[f"keep_rate_{name}"] = float((_l_rec(recon, self.images) < self.threshold).float().mean())
        return out


def _l_rec(reconstruction: Tensor, images: Tensor) -> Tensor:
    return ((reconstruction - images) ** 2).flatten(1).mean(dim=1)  # [B], Eq. 13


def _decoder(prior: Prior, z_t: Tensor, eps_hat: Tensor, abar: Tensor) -> Callable[[], Tensor]:
    """D(x̂0(z_t, ε̂)) at ᾱ [B], without gradient, computed when called. -> [B, 3, S, S]"""

    def decode() -> Tensor:
        with torch.no_grad():
            return prior.decode(predict_x0(z_t, eps_hat, abar))

    return decode


class AnchorDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: AnchorDSConfig | None = None) -> None:
        self.config = config or AnchorDSConfig()
        self._optimizer: torch.optim.Optimizer | None = None
        self._tuned: list[int] = []  # ids of the parameters the optimizer holds

    # ---- conditions ---------------------------------------------------------------------------------

    def _anchors(self, prior: Prior, inp: GuidanceInput) -> list[tuple[Tensor | None, Tensor | None]]:
        """Per view, what anchors a branch on the current state: the render I for the image adapter (None
        when the prior has none, ``prior.takes_images`` False) and its control map for a ControlNet prior
        (``GuidanceInput.control`` [B, 3, S, S]; None without)."""
        images = list(inp.images.detach())
        if not getattr(prior, "takes_images", True):
            if inp.control is None:
                raise UserError("AnchorDS needs a prior with an image adapter (IP-Adapter) or a ControlNet "
                                "to anchor its source branch on the render")
            images = [None] * len(images)
        maps = [None] * len(images) if inp.control is None else list(inp.control)
        return list(zip(images, maps))

    def _anchored(self, text: str | list[str], anchors: list[tuple[Tensor | None, Tensor | None]]
                  ) -> list[Condition]:
        """(text, I, λ_ip[, map, control_scale]) per view; ``text`` is one for all views or one per view."""
        c = self.config
        texts = [text] * len(anchors) if isinstance(text, str) else text
        return [Condition(y, img, c.image_scale if img is not None else 0.0, control=m,
                          control_scale=c.control_scale if m is not None else 0.0)
                for y, (img, m) in zip(texts, anchors)]

    def _target_conditions(self, inp: GuidanceInput, anchors: list[tuple[Tensor | None, Tensor | None]]
                           ) -> list[Condition]:
        texts = view_prompts(inp.prompt, inp.cameras, self.config.view_dependent)
        if isinstance(self.config.form, CodeForm):
            return self._anchored(texts, anchors)  # ε̂(y, I[, map]): both branches anchored
        return [Condition(y) for y in texts]  # Eq. 11: ε̂(z_t; t, y), no anchor

    def extra_texts(self) -> list[str]:
        return [self._source_text()] if self._source_text() else []

    def grammar_fallbacks(self) -> dict[str, str]:
        """{--set path: stand-in} for a text of ``extra_texts()`` that a grammar-bound prior cannot read (checked
        by ``distill3d.pipeline.generate``): the code form's y_neg becomes the empty prompt, as in the toy
        preset, so its source branch is ε̂(z_t; ∅, I). None in the paper form, whose source text is ∅."""
        return {"form.negative_prompt": ""} if isinstance(self.config.form, CodeForm) else {}

    def _source_text(self) -> str:
        return self.config.form.negative_prompt if isinstance(self.config.form, CodeForm) else ""

    # ---- guidance -----------------------------------------------------------------------------------

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)  # t, ε, z_t = √ᾱ z + √(1−ᾱ) ε (Eq. 1)
        z_t, t = n.z_t, n.t
        images = inp.images.detach()  # [B, 3, S, S]
        b = n.z.shape[0]
        anchors = self._anchors(prior, inp)
        groups = [(z_t, t, self._target_conditions(inp, anchors)),
                  (z_t, t, self._anchored(self._source_text(), anchors))]
        source_is_null = self._source_text() == ""  # the source row is ε̂(z_t; ∅, I) itself
        extra_recon_row = c.filter_source == "paper" and not source_is_null
        if extra_recon_row:
            groups.append((z_t, t, self._anchored("", anchors)))  # ε̂(z_t; ∅, I) for Eq. 12
        tune_here = c.finetune is not None and c.finetune.loss == "pixel"
        if tune_here:
            self._optimizer_for(prior)  # the adapter layer requires grad from here on
        with torch.set_grad_enabled(tune_here):  # only that layer requires grad: the backward stops there
            preds = predict_rows(prior, stack_rows(groups), len(groups))
        # (ε̂, ᾱ) that ẑ_src = x̂0(z_t, ε̂) is read with, per filter source the rows allow:
        sources = {"authors": (preds[1], alpha_bar(prior, snap_to_ddim_grid(t, prior.num_timesteps)))}
        if extra_recon_row or source_is_null:
            sources["paper"] = (preds[2] if extra_recon_row else preds[1], n.abar)  # Eq. 12
        eps_rec, abar_rec = sources[c.filter_source]
        decodes = {name: _decoder(prior, z_t, e.detach(), a) for name, (e, a) in sources.items()}
        diag = AnchorDiagnostics(decodes[c.filter_source], images, torch.ones(b, dtype=torch.bool, device=n.z.device),
                                 decodes, c.filter_threshold)
        if tune_here:
            with torch.enable_grad():
                decoded = prior.decode(predict_x0(z_t, eps_rec, abar_rec))  # Eq. 12, D(ẑ_src), with graph
            diag.finetune_loss = ((decoded - images) ** 2).mean()  # Eq. 13, all views
            diag.reconstruction = decoded.detach()
        eps_tgt, eps_src = preds[0].detach(), preds[1].detach()
        w = weight(c.weighting, n.abar)
        if isinstance(c.form, CodeForm):
            grad = w * (cfg(eps_src, eps_tgt, c.form.guidance_scale) - n.eps)  # code: CFG with y_neg + I source
            grad = clamp_grad(grad, c.form.grad_clamp(inp.step, inp.total_steps))
        else:
            grad = w * (eps_tgt - eps_src)  # Eq. 11
        if c.filter_threshold is not None:
            diag.keep = diag.l_rec < c.filter_threshold  # Eq. 14
            grad = grad * diag.keep[:, None, None, None].to(grad.dtype)
        return finish(grad, t, 1, len(groups) * b, diag)

    # ---- fine-tune of one image-adapter layer ------------------------------------------------------

    def trainable_parameters(self, prior: Prior) -> list[nn.Parameter]:
        if self.config.finetune is None:
            return []
        return list(prior.adapter_layer(self.config.finetune.adapter_layer).parameters())

    def _optimizer_for(self, prior: Prior) -> torch.optim.Optimizer:
        params = list(prior.adapter_layer(self.config.finetune.adapter_layer).parameters())
        ids = [id(p) for p in params]  # a prior may hand out a fresh container of the same parameters
        if self._optimizer is None or self._tuned != ids:
            for p in params:
                p.requires_grad_(True)
            self._optimizer = torch.optim.Adam(params, lr=self.config.finetune.lr)
            self._tuned = ids
        return self._optimizer

    def finetune_loss(self, prior: Prior, inp: GuidanceInput, t: Tensor, generator: torch.Generator) -> Tensor:
        """The fine-tune objective at timesteps t [B] with fresh noise; differentiable w.r.t. the prior's
        trainable layer (not w.r.t. z or the images). Scalar."""
        ft = self.config.finetune
        if ft is None:
            raise ValueError("this AnchorDS has no fine-tune; set AnchorDSConfig.finetune")
        z = inp.latents.detach()
        images = inp.images.detach()
        eps = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
        abar = alpha_bar(prior, t)
        z_t = add_noise(z, eps, abar)
        if ft.loss == "pixel":
            eps_hat = prior.predict_noise(z_t, t, self._anchored("", self._anchors(prior, inp)))  # ε̂(z_t; ∅, I)
            return ((prior.decode(predict_x0(z_t, eps_hat, abar)) - images) ** 2).mean()  # Eq. 12-13
        source = self._anchored(self._source_text(), self._anchors(prior, inp))
        eps_hat = prior.predict_noise(z_t, t, source)  # source branch
        return ((predict_x0(z_t, eps_hat, abar) - z) ** 2).mean()  # authors' code: latent MSE

    def state_dict(self, prior: Prior) -> dict:
        if self.config.finetune is None:
            return {}
        layer = prior.adapter_layer(self.config.finetune.adapter_layer)
        return {"layer": layer.state_dict(), "optimizer": self._optimizer_for(prior).state_dict()}

    def load_state_dict(self, prior: Prior, state: dict) -> None:
        if self.config.finetune is None or not state:
            return
        prior.adapter_layer(self.config.finetune.adapter_layer).load_state_dict(state["layer"])
        self._optimizer_for(prior).load_state_dict(state["optimizer"])

    def inner_step(self, prior: Prior, inp: GuidanceInput, out: GuidanceOutput,
                   generator: torch.Generator) -> InnerStepOutput | None:
        if self.config.finetune is None:
            return None
        opt = self._optimizer_for(prior)
        opt.zero_grad(set_to_none=True)
        pending = out.extras.finetune_loss if isinstance(out.extras, AnchorDiagnostics) else None
        if pending is not None:  # "pixel": the guidance step's own L_rec, no new prior call
            pending.backward()
            opt.step()
            return InnerStepOutput(float(pending.detach()), 0, 0)
        with torch.enable_grad():
            loss = self.finetune_loss(prior, inp, out.t, generator)
            loss.backward()
        opt.step()
        return InnerStepOutput(float(loss.detach()), 1, inp.latents.shape[0])
