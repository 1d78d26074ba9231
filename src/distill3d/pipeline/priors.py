"""Choosing and loading a prior for a run: the embedded toy prior by default, Stable Diffusion on request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill3d.core.errors import UserError, shorten
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
    mv_prior: str | None = None  # the prior of the rows with a camera (priors/paired.py): sd: an MVDream checkpoint
    # file; a toy prior: a toy-world prior's name (toy-mv) or a toy checkpoint file


DEFAULT_PRIOR = PriorSpec()
#: The embedded toy-world priors (see ``distill3d.priors.toy.prior.SHIPPED``, and ``TRAINED_HERE`` for "toy-mv",
#: the multi-view prior): captions must follow the toy grammar, and runs are judged against the toy world's
#: ground truth.
TOY_PRIORS = ("toy", "toy-words", "toy-mv")
PRIOR_KINDS = (*TOY_PRIORS, "sd", "mvdream")
#: Joins a base toy prior and the toy prior of its camera rows in one prior name (``--priors toy+toy-mv`` of
#: ``bench run``: ``PriorSpec(kind="toy", mv_prior="toy-mv")``).
PAIR = "+"


def parse_prior(name: str) -> PriorSpec:
    """A prior name of ``bench run --priors``: a kind (PRIOR_KINDS), or ``BASE+MV`` for two toy-world priors
    paired (e.g. ``toy+toy-mv``). A ``UserError`` names a kind that is not one."""
    base, sep, mv = name.partition(PAIR)
    for kind in (base, mv) if sep else (base,):
        if kind not in PRIOR_KINDS or (sep and not knows_toy_world(kind)):
            raise UserError(f"unknown prior {shorten(kind)!r} in {shorten(name)!r}; choose from "
                            f"{', '.join(PRIOR_KINDS)}, or pair two toy-world priors as BASE{PAIR}MV "
                            f"(e.g. toy{PAIR}toy-mv)")
    return PriorSpec(kind=base, mv_prior=mv if sep else None)


def knows_toy_world(kind: str) -> bool:
    """Is ``kind`` an embedded toy-world prior (grammar-checked captions, judged results)?"""
    return kind in TOY_PRIORS


def load_prior(spec: PriorSpec) -> Prior:
    if spec.mv_prior is not None and spec.kind != "sd" and not knows_toy_world(spec.kind):
        raise UserError(f"--mv-prior pairs a base prior (sd, or a toy-world prior) with a multi-view prior, and "
                        f"--prior {spec.kind} is neither")
    if knows_toy_world(spec.kind):
        from distill3d.priors.toy.prior import ToyPrior

        base = ToyPrior.load(spec.model if spec.model is not None else spec.kind)
        if spec.mv_prior is None:
            return base
        from distill3d.priors.paired import PairedPrior

        # ModeDreamer's split on the toy world: the base's rows (text, image) on --prior, the camera rows on
        # the multi-view toy prior (a name, e.g. toy-mv, or a checkpoint file)
        mv = spec.mv_prior if knows_toy_world(spec.mv_prior) else Path(spec.mv_prior).expanduser()
        if isinstance(mv, Path) and not mv.is_file():
            raise UserError(f"--mv-prior with --prior {spec.kind} takes a toy-world prior ({', '.join(TOY_PRIORS)}) "
                            f"or a toy checkpoint file; got {shorten(spec.mv_prior)!r}, which is neither")
        return PairedPrior(base, ToyPrior.load(mv))
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
