"""AnchorDS: Anchoring Dynamic Sources (papers/anchords.md), the project's main method.

SDS's source branch is the unconditional prior, blind to the current 3D state. AnchorDS conditions the
source branch on the current render I^(τ) through the image adapter (strength λ_ip):

Paper form (default, ``PaperForm``), Eq. 11 with the usual weighting w(t):
    g = w(t) · (ε̂(z_t; t, y) − ε̂(z_t; t, ∅, I^(τ)))                       — no −ε term.

Authors' code form (``CodeForm``, IP-Adapter-Plus on SD 1.5): both branches see the render, the source uses
the negative prompt y_neg, CFG (standard form, threestudio's 100 = our 101) and an element-wise clamp:
    ε_tgt = ε̂(z_t; y, I),  ε_src = ε̂(z_t; y_neg, I),  g = clamp(w(t)·(ε_src + s(ε_tgt − ε_src) − ε)).

Every step also computes the pseudo-source reconstruction and its error (diagnostics, and the filter):
    ẑ_src = x̂0(z_t, ε̂(z_t; ∅, I))                                           (Eq. 12)
    L_rec = mean over pixels of (D(ẑ_src) − I)²                             (Eq. 13)
In the paper form ε̂(z_t; ∅, I) IS the source branch (no extra evaluation); in the code form it is one
more row in the same batched call (none when y_neg is "": then it equals the source row).

Variants (options of this one class, named for the CLI by ``distill3d.guidance.METHODS``):
- Filter (Eq. 14): ``filter_threshold = γ`` (0.03) zeroes the gradient of every view with L_rec ≥ γ.
- Fine-tune: ``finetune = FinetuneConfig()`` trains ONE image-adapter layer (``prior.adapter_layer``) with
  its own Adam optimizer, jointly with the 3D parameters: the loop calls :meth:`AnchorDS.inner_step` after
  each guidance step. Loss "pixel" (default) is the paper's L_rec (Eq. 13) of x̂0 from a grad-enabled
  ε̂(z_t; ∅, I) with fresh noise at the guidance step's t; loss "latent" is the authors' code: latent MSE
  between x̂0 from a grad-enabled source-branch prediction (fresh noise, same t) and z.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

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
    predict_groups,
    predict_x0,
    view_prompts,
    weight,
)
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class PaperForm:
    """Eq. 11: target ε̂(z_t; y) without image, source ε̂(z_t; ∅, I); no CFG, no −ε, no clamp."""


@dataclass(frozen=True)
class CodeForm:
    """The authors' released code: image on both branches, y_neg as source, CFG, clamp schedule."""

    guidance_scale: float = 101.0  # standard form; the code's s' = 100
    negative_prompt: str = ""  # y_neg, the source text
    grad_clamp: Schedule = field(default_factory=lambda: LinearRamp(1.5, 2.0, 0, 1000))


@dataclass(frozen=True)
class FinetuneConfig:
    adapter_layer: str | None = None  # name for prior.adapter_layer; None: the prior's default layer
    lr: float = 1e-4
    loss: Literal["pixel", "latent"] = "pixel"  # paper Eq. 13 / authors' code latent MSE


@dataclass(frozen=True)
class AnchorDSConfig:
    form: PaperForm | CodeForm = field(default_factory=PaperForm)
    image_scale: float = 0.5  # λ_ip of the render seen through the image adapter
    view_dependent: bool = True  # view suffix on the target prompt y
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)
    weighting: Weighting = "sds"
    filter_threshold: float | None = None  # γ of Eq. 14 (paper: 0.03); None: no filter
    finetune: FinetuneConfig | None = None


@dataclass
class AnchorDiagnostics(Diagnostics):
    reconstruction: Tensor  # [B, 3, S, S] D(ẑ_src), Eq. 12
    l_rec: Tensor  # [B] Eq. 13
    keep: Tensor  # [B] bool, Eq. 14 (all True without the filter)


class AnchorDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: AnchorDSConfig | None = None) -> None:
        self.config = config or AnchorDSConfig()
        self._optimizer: torch.optim.Optimizer | None = None
        self._tuned: nn.Module | None = None

    # ---- conditions ---------------------------------------------------------------------------------

    def _anchored(self, text: str, images: Tensor) -> list[Condition]:
        return [Condition(text, img, self.config.image_scale) for img in images]  # (text, I, λ_ip) per view

    def _target_conditions(self, inp: GuidanceInput, images: Tensor) -> list[Condition]:
        texts = view_prompts(inp.prompt, inp.cameras, self.config.view_dependent)
        if isinstance(self.config.form, CodeForm):
            return [Condition(y, img, self.config.image_scale) for y, img in zip(texts, images)]  # ε̂(y, I)
        return [Condition(y) for y in texts]  # Eq. 11: ε̂(z_t; t, y)

    def _source_text(self) -> str:
        return self.config.form.negative_prompt if isinstance(self.config.form, CodeForm) else ""

    # ---- guidance -----------------------------------------------------------------------------------

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)  # t, ε, z_t = √ᾱ z + √(1−ᾱ) ε (Eq. 1)
        z_t, t = n.z_t, n.t
        images = inp.images.detach()  # [B, 3, S, S]
        b = n.z.shape[0]
        groups = [(z_t, t, self._target_conditions(inp, images)),
                  (z_t, t, self._anchored(self._source_text(), images))]
        extra_recon_row = self._source_text() != ""
        if extra_recon_row:
            groups.append((z_t, t, self._anchored("", images)))  # ε̂(z_t; ∅, I) for Eq. 12
        preds = predict_groups(prior, groups)
        eps_tgt, eps_src = preds[0], preds[1]
        eps_anchor = preds[2] if extra_recon_row else eps_src
        w = weight(c.weighting, n.abar)
        if isinstance(c.form, CodeForm):
            grad = w * (cfg(eps_src, eps_tgt, c.form.guidance_scale) - n.eps)  # code: CFG with y_neg + I source
            grad = clamp_grad(grad, c.form.grad_clamp(inp.step, inp.total_steps))
        else:
            grad = w * (eps_tgt - eps_src)  # Eq. 11
        with torch.no_grad():
            recon = prior.decode(predict_x0(z_t, eps_anchor, n.abar))  # Eq. 12, decoded: [B, 3, S, S]
        l_rec = ((recon - images) ** 2).flatten(1).mean(dim=1)  # Eq. 13
        keep = torch.ones(b, dtype=torch.bool, device=n.z.device)
        if c.filter_threshold is not None:
            keep = l_rec < c.filter_threshold  # Eq. 14
            grad = grad * keep[:, None, None, None].to(grad.dtype)
        return finish(grad, t, 1, len(groups) * b, AnchorDiagnostics(recon, l_rec, keep))

    # ---- fine-tune of one image-adapter layer ------------------------------------------------------

    def trainable_parameters(self, prior: Prior) -> list[nn.Parameter]:
        if self.config.finetune is None:
            return []
        return list(prior.adapter_layer(self.config.finetune.adapter_layer).parameters())

    def _optimizer_for(self, prior: Prior) -> torch.optim.Optimizer:
        layer = prior.adapter_layer(self.config.finetune.adapter_layer)
        if self._optimizer is None or self._tuned is not layer:
            params = list(layer.parameters())
            for p in params:
                p.requires_grad_(True)
            self._optimizer = torch.optim.Adam(params, lr=self.config.finetune.lr)
            self._tuned = layer
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
            eps_hat = prior.predict_noise(z_t, t, self._anchored("", images))  # ε̂(z_t; ∅, I), grad-enabled
            return ((prior.decode(predict_x0(z_t, eps_hat, abar)) - images) ** 2).mean()  # Eq. 12-13
        eps_hat = prior.predict_noise(z_t, t, self._anchored(self._source_text(), images))  # source branch
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

    def inner_step(self, prior: Prior, inp: GuidanceInput, t: Tensor,
                   generator: torch.Generator) -> InnerStepOutput | None:
        if self.config.finetune is None:
            return None
        opt = self._optimizer_for(prior)
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self.finetune_loss(prior, inp, t, generator)
            loss.backward()
        opt.step()
        return InnerStepOutput(float(loss.detach()), 1, inp.latents.shape[0])
