"""Choosing and loading a prior for a run: the embedded toy prior by default, Stable Diffusion on request."""

from __future__ import annotations

from dataclasses import dataclass

from distill3d.core.errors import UserError
from distill3d.priors.base import Prior


@dataclass(frozen=True)
class PriorSpec:
    kind: str = "toy"  # "toy" (embedded, shipped) or "sd" (diffusers, local weights)
    model: str | None = None  # toy: a checkpoint path (None: the shipped one); sd: a folder or cached id
    ip_adapter: str | None = None
    controlnet: str | None = None
    controlnet_kind: str = "normal"  # the ControlNet's map: "normal" (NormalBAE) or "depth" (MiDaS-like)


DEFAULT_PRIOR = PriorSpec()


def load_prior(spec: PriorSpec) -> Prior:
    if spec.kind == "toy":
        from distill3d.priors.toy.prior import ToyPrior

        return ToyPrior.load(spec.model)
    if spec.kind == "sd":
        from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior
        from distill3d.scene.control import CONTROL_KINDS

        if spec.controlnet_kind not in CONTROL_KINDS:
            raise UserError(f"unknown ControlNet kind {spec.controlnet_kind!r}; "
                            f"choose {' or '.join(CONTROL_KINDS)}")
        cfg = StableDiffusionConfig() if spec.model is None else StableDiffusionConfig(model=spec.model)
        return StableDiffusionPrior(StableDiffusionConfig(model=cfg.model, ip_adapter=spec.ip_adapter,
                                                          controlnet=spec.controlnet,
                                                          controlnet_kind=spec.controlnet_kind))
    raise UserError(f"unknown prior {spec.kind!r}; choose 'toy' (embedded) or 'sd' (Stable Diffusion)")
