"""VSD, Variational Score Distillation (ProlificDreamer, Wang et al., NeurIPS 2023, arXiv 2305.16213).

VSD treats the 3D parameters as a distribution q(θ) and matches the distribution of its renders to the
prior's. The score of the renders' distribution is estimated by a trainable copy ε̂_φ of the prior's denoiser
(a LoRA of the UNet plus a camera embedding), trained on the renders themselves:

    g   = w(t) · (ε̂_cfg(z_t; y) − ε̂_φ(z_t; y, π)),   ε̂_cfg with CFG 7.5                      (Eq. 9)
    L_φ = ‖ε̂_φ(√ᾱ_t sg(z) + √(1−ᾱ_t) ε; t, y, π) − ε‖²,   fresh t ~ U[0, T) and ε              (Eq. 8)

with w(t) = σ_t² = 1 − ᾱ_t and π the view's camera (Algorithm 1: one φ step per θ step, on the same renders,
detached). SDS is the special case where ε̂_φ is replaced by ε, the score of a point mass: VSD's control
variate tracks the actual spread of the renders, so it samples instead of seeking a mode.

The trainable copy comes from the prior's trainable-parts capability (``TrainableDenoiserPrior`` in
``distill3d.priors.base``), checked in :meth:`VSD.setup` (and on resume): a prior without it fails at start-up.
Its weights and its optimizer's state are the method's ``state_dict`` (a checkpoint resumes them exactly).

Sources. threestudio's ``stable-diffusion-vsd-guidance`` (``threestudio/models/guidance/
stable_diffusion_vsd_guidance.py`` and ``configs/prolificdreamer.yaml``, read from threestudio-project/threestudio):
CFG 7.5 in the standard (diffusers) form on the frozen prior, CFG 1 on ε̂_φ; the frozen prior sees the
view-dependent prompt, ε̂_φ the plain prompt (``view_dependent_prompting=False`` for the LoRA, in the gradient
and in its training alike); w = 1 − ᾱ_t; t ~ U[0.02, 0.98], the maximum lowered to 0.5 after step 5000 (the
yaml's ``max_step_percent: [5000, 0.98, 0.5, 5001]``; ProlificDreamer's own release, thu-ml/prolificdreamer
``run.sh``, passes ``--t5_iters 5000``, "change tmax to 500 after this"; only a May 2023 version of the yaml had
the annealing "temporarily" disabled); the LoRA's loss a mean MSE at t ~ U[0, T) with fresh noise on the
detached latents; its learning rate 1e-4 (the yaml's ``optimizer.params.guidance.lr: 0.0001``; the release's
``--unet_lr`` default 0.0001); diffusers' ``LoRAAttnProcessor`` on every attention (default rank 4) and a camera
embedding ``TimestepEmbedding(16, 1280)`` of the flattened camera-to-world matrix (``camera_condition_type:
extrinsics``) as the LoRA UNet's class embedding.

Deviations: the camera enters as (sin az, cos az, el/90) (the cameras the Prior protocol carries) through a
zero-initialised MLP, so ε̂_φ starts exactly equal to the frozen prior; threestudio zeroes the camera of 10% of
the LoRA's training rows (``lora_cfg_training``) for a camera-free row that CFG 1 never uses, which is not done
here; ProlificDreamer's equation numbers above (Eq. 8 the φ objective, Eq. 9 the θ gradient) are as commonly
cited, the paper text itself was not read here.

Calls per step: 2 for the gradient (the frozen [y, ∅] rows, then ε̂_φ, a different network), 1 in the
inner step (the LoRA's loss, with autograd).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    InnerStepOutput,
    MaxSwitchTimesteps,
    TimestepSchedule,
    UniformTimesteps,
    Weighting,
    add_noise,
    alpha_bar,
    camera_tuples,
    cfg,
    finish,
    noise_latents,
    predict_prompt_and_texts,
    weight,
)
from distill3d.priors.base import Condition, Prior, TrainableDenoiser, require_trainable_denoiser


@dataclass(frozen=True)
class VSDConfig:
    #: s of ε̂_cfg on the frozen prior, standard form (threestudio's VSD guidance: 7.5, diffusers' form).
    guidance_scale: float = 7.5
    #: View suffix (", front view", ...) on y for the frozen prior; ε̂_φ always gets the plain y (threestudio).
    view_dependent: bool = True
    #: t of the gradient: U[0.02, 0.98], the maximum lowered to 0.50 from step 5000 (prolificdreamer.yaml).
    timesteps: TimestepSchedule = field(default_factory=lambda: MaxSwitchTimesteps(0.02, 0.98, 0.50, 5000))
    #: w(t); "sds" is ProlificDreamer's σ_t² = 1 − ᾱ_t (threestudio: 1 − ᾱ_t).
    weighting: Weighting = "sds"
    #: Rank r of the LoRA on the attention projections (diffusers' LoRAAttnProcessor default, 4).
    lora_rank: int = 4
    #: Adam learning rate of the LoRA and its camera embedding (prolificdreamer.yaml guidance lr 0.0001).
    lora_lr: float = 1e-4
    #: t of the LoRA's denoising loss (Eq. 8): the whole range (threestudio: U[0, T); here t = 1 … T − 1, the
    #: schedules' fractions lying strictly inside (0, 1)).
    lora_timesteps: TimestepSchedule = field(default_factory=lambda: UniformTimesteps(0.001, 0.999))


class VSD(GuidanceMethod):
    prior_calls_per_step = 2

    def __init__(self, config: VSDConfig | None = None) -> None:
        self.config = config or VSDConfig()
        self._prior: Prior | None = None  # the prior the trainable copy below belongs to
        self._denoiser: TrainableDenoiser | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    # ---- the trainable copy ε̂_φ -------------------------------------------------------------------

    def _denoiser_for(self, prior: Prior, seed: int = 0) -> TrainableDenoiser:
        """ε̂_φ of ``prior``, made on first use (the capability is checked here); its LoRA's random down
        projections are drawn from ``seed`` without touching the global random state."""
        if self._prior is not prior or self._denoiser is None:
            capable = require_trainable_denoiser(prior, "VSD")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._denoiser = capable.trainable_denoiser(self.config.lora_rank)
            self._optimizer = torch.optim.Adam(list(self._denoiser.parameters()), lr=self.config.lora_lr)
            self._prior = prior
        return self._denoiser

    def setup(self, prior: Prior, prompt: str, seed: int) -> None:
        self._prior = None
        self._denoiser_for(prior, seed)  # a prior without trainable parts fails here, before the first step

    def trainable_parameters(self, prior: Prior) -> list[nn.Parameter]:
        return list(self._denoiser_for(prior).parameters())

    def _lora_conditions(self, inp: GuidanceInput) -> list[Condition]:
        return [Condition(inp.prompt, camera=cam) for cam in camera_tuples(inp.cameras)]  # (y, π), y without suffix

    # ---- guidance -----------------------------------------------------------------------------------

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        denoiser = self._denoiser_for(prior)
        n = noise_latents(prior, c.timesteps, inp, generator)  # t, ε, z_t = √ᾱ z + √(1−ᾱ) ε
        b = n.z.shape[0]
        eps_y, eps_null = predict_prompt_and_texts(prior, n, inp, c.view_dependent, "")  # frozen prior
        with torch.no_grad():
            eps_phi = denoiser.predict_noise(n.z_t, n.t, self._lora_conditions(inp))  # ε̂_φ(z_t; y, π)
        grad = weight(c.weighting, n.abar) * (cfg(eps_null, eps_y, c.guidance_scale) - eps_phi)  # Eq. 9
        return finish(grad, n.t, 2, 3 * b)

    # ---- the inner step: train ε̂_φ on the renders ---------------------------------------------------

    def lora_loss(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> torch.Tensor:
        """Eq. 8 on the detached renders, with fresh t (``lora_timesteps``) then ε from ``generator``;
        differentiable w.r.t. the trainable copy only. Scalar (mean over elements)."""
        c = self.config
        denoiser = self._denoiser_for(prior)
        z = inp.latents.detach()
        t = c.lora_timesteps.sample(inp.step, inp.total_steps, z.shape[0], prior.num_timesteps, generator)
        t = t.to(prior.device)
        eps = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
        z_t = add_noise(z, eps, alpha_bar(prior, t))
        with torch.enable_grad():
            pred = denoiser.predict_noise(z_t, t, self._lora_conditions(inp))
            return ((pred.float() - eps) ** 2).mean()  # Eq. 8

    def inner_step(self, prior: Prior, inp: GuidanceInput, out: GuidanceOutput,
                   generator: torch.Generator) -> InnerStepOutput:
        self._denoiser_for(prior)
        opt = self._optimizer
        opt.zero_grad(set_to_none=True)
        loss = self.lora_loss(prior, inp, generator)
        loss.backward()
        opt.step()
        return InnerStepOutput(float(loss.detach()), 1, inp.latents.shape[0])

    # ---- checkpoint -------------------------------------------------------------------------------

    def state_dict(self, prior: Prior) -> dict:
        denoiser = self._denoiser_for(prior)
        return {"lora": denoiser.state_dict(), "optimizer": self._optimizer.state_dict()}

    def load_state_dict(self, prior: Prior, state: dict) -> None:
        self._prior = None
        denoiser = self._denoiser_for(prior)  # a resumed run checks the capability too
        if state:
            denoiser.load_state_dict(state["lora"])
            self._optimizer.load_state_dict(state["optimizer"])


__all__ = ["VSD", "VSDConfig"]
