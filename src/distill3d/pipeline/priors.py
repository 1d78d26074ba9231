"""Choosing and loading a prior for a run: the embedded toy prior by default, Stable Diffusion on request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill3d.core.errors import UserError
from distill3d.priors.base import Prior


@dataclass(frozen=True)
class PriorSpec:
    kind: str = "toy"  # one of PRIOR_KINDS: "toy"/"toy-words" (embedded, shipped), "toy-mv" (trained here), "sd",
    # "mvdream"
    model: str | None = None  # toy: a checkpoint path (None: the shipped one); sd: a folder or cached id;
    # mvdream: the checkpoint file (required)
    ip_adapter: str | None = None
    controlnet: str | None = None
    controlnet_kind: str = "normal"  # the ControlNet's map: "normal" (NormalBAE) or "depth" (MiDaS-like)
    mv_prior: str | None = None  # sd: an MVDream checkpoint file for the rows with a camera (priors/paired.py)


DEFAULT_PRIOR = PriorSpec()
#: The embedded toy-world priors (see ``distill3d.priors.toy.prior.SHIPPED``, and ``TRAINED_HERE`` for "toy-mv",
#: the multi-view prior): captions must follow the toy grammar, and runs are judged against the toy world's
#: ground truth.
TOY_PRIORS = ("toy", "toy-words", "toy-mv")
PRIOR_KINDS = (*TOY_PRIORS, "sd", "mvdream")


def knows_toy_world(kind: str) -> bool:
    """Is ``kind`` an embedded toy-world prior (grammar-checked captions, judged results)?"""
    return kind in TOY_PRIORS


def load_prior(spec: PriorSpec) -> Prior:
    if spec.mv_prior is not None and spec.kind != "sd":
        raise UserError(f"--mv-prior pairs Stable Diffusion with MVDream and needs --prior sd, got --prior "
                        f"{spec.kind}" + (" (the toy world's multi-view prior is --prior toy-mv)"
                                          if knows_toy_world(spec.kind) else ""))
    if knows_toy_world(spec.kind):
        from distill3d.priors.toy.prior import ToyPrior

        return ToyPrior.load(spec.model if spec.model is not None else spec.kind)
    if spec.kind == "sd":
        from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior
        from distill3d.scene.control import CONTROL_KINDS

        if spec.controlnet_kind not in CONTROL_KINDS:
            raise UserError(f"unknown ControlNet kind {spec.controlnet_kind!r}; "
                            f"choose {' or '.join(CONTROL_KINDS)}")
        if spec.mv_prior is not None and not Path(spec.mv_prior).expanduser().is_file():
            from distill3d.priors.mvdream import RELEASE

            raise UserError(f"--mv-prior needs a file, {RELEASE}; got '{spec.mv_prior}', which is not a file",
                            exit_code=1)
        cfg = StableDiffusionConfig() if spec.model is None else StableDiffusionConfig(model=spec.model)
        base = StableDiffusionPrior(StableDiffusionConfig(model=cfg.model, ip_adapter=spec.ip_adapter,
                                                          controlnet=spec.controlnet,
                                                          controlnet_kind=spec.controlnet_kind))
        if spec.mv_prior is None:
            return base
        from distill3d.priors.mvdream import MVDreamConfig, MVDreamPrior
        from distill3d.priors.paired import PairedPrior

        # MVDream at the base's resolution, so that both see the same latents (SD 2.1-base: 512², not MVDream's 256²)
        return PairedPrior(base, MVDreamPrior(MVDreamConfig(model=spec.mv_prior, image_size=base.image_size)))
    if spec.kind == "mvdream":
        from distill3d.priors.mvdream import MVDreamConfig, MVDreamPrior

        return MVDreamPrior(MVDreamConfig(model=spec.model))
    raise UserError(f"unknown prior {spec.kind!r}; choose one of {', '.join(PRIOR_KINDS)}")
