"""Held-out measurements of the toy prior: does each condition carry information, does the image
branch reconstruct its image, does text still steer when an image is given, and do judged samples of
held-out captions show what the caption says?"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from distill3d.priors.base import alphas_cumprod_cosine
from distill3d.priors.sampling import sample
from distill3d.priors.toy.model import ModelConditions, ToyUNet
from distill3d.toyworld.grammar import HELDOUT_SINGLES, all_specs, is_heldout, parse_caption
from distill3d.toyworld.judge import match


class _Data(Protocol):
    images: Tensor
    images2: Tensor
    captions: list[str]


@dataclass(frozen=True)
class EvalResult:
    t: int
    mse_none: float  # ε-MSE with no condition at t
    mse_text: float  # text only
    mse_image: float  # image only (empty text)
    mse_text_image: float  # text + image
    t_rec: int
    rec: float  # AnchorDS' L_rec (Eqs. 12-13): MSE in [0, 1] pixels of x̂0(∅, image) vs the render, at t_rec
    text_steer: float  # ‖ε̂(y',img) − ε̂(y,img)‖ / ‖ε̂(y') − ε̂(y)‖ with y' another scene's caption

    def __str__(self) -> str:
        return (f"eps-MSE@t={self.t} none {self.mse_none:.4f} text {self.mse_text:.4f} image {self.mse_image:.4f} "
                f"text+image {self.mse_text_image:.4f} | L_rec@t={self.t_rec} {self.rec:.4f} | "
                f"text steer with image {self.text_steer:.2f}")


@torch.no_grad()
def evaluate(model: ToyUNet, data: _Data, indices: Sequence[int], image_view: str = "same", t: int = 300,
             t_rec: int = 500, seed: int = 0) -> EvalResult:
    """Measure on view 1 of the scenes ``indices``; the condition image is view 1 or view 2 by ``image_view``."""
    was_training = model.training
    model.eval()
    dev = model.conv_in.weight.device
    idx = torch.as_tensor(list(indices))
    b = len(idx)
    x0 = (2.0 * data.images[idx].float() / 255.0 - 1.0).to(dev)
    image = ((data.images if image_view == "same" else data.images2)[idx].float() / 255.0).to(dev)
    captions = [data.captions[int(i)] for i in idx]
    swapped = captions[1:] + captions[:1]
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=g).to(dev)
    ac = alphas_cumprod_cosine().to(dev)

    def eps(texts: list[str], with_image: bool, step: int) -> Tensor:
        a = ac[step]
        z = a.sqrt() * x0 + (1 - a).sqrt() * noise
        text, mask = model.encode_text(texts)
        rows = torch.arange(b, device=dev) if with_image else torch.zeros(0, dtype=torch.long, device=dev)
        cond = ModelConditions(text, mask, torch.zeros(b, 2, device=dev), torch.zeros(b, dtype=torch.bool,
                               device=dev), image[rows], rows, torch.ones(len(rows), device=dev))
        return model.eps(z, torch.full((b,), step, device=dev), cond, ac)

    empty = [""] * b
    mse = lambda e: float((e - noise).pow(2).mean())
    e_text_img, e_swap_img = eps(captions, True, t), eps(swapped, True, t)
    e_text, e_swap = eps(captions, False, t), eps(swapped, False, t)
    a = ac[t_rec]
    z = a.sqrt() * x0 + (1 - a).sqrt() * noise
    x0_hat = (z - (1 - a).sqrt() * eps(empty, True, t_rec)) / a.sqrt()  # Tweedie / DDPM Eq. 15
    rec = float((((x0_hat.clamp(-1, 1) + 1) / 2) - (x0 + 1) / 2).pow(2).mean())
    steer = float((e_swap_img - e_text_img).norm() / (e_swap - e_text).norm().clamp_min(1e-12))
    model.train(was_training)
    return EvalResult(t, mse(eps(empty, False, t)), mse(e_text), mse(eps(empty, True, t)), mse(e_text_img),
                      t_rec, rec, steer)


KINDS = ("single", "on top of", "next to", "face")


def heldout_captions(per_kind: int) -> dict[str, list[str]]:
    """Up to ``per_kind`` held-out captions of each kind (``toyworld.grammar.is_heldout``: never trained
    on), pairs in a stable pseudo-random order so that a prefix is a fair sample."""
    pairs = sorted((s for s in all_specs() if s.relation is not None and is_heldout(s)),
                   key=lambda s: zlib.crc32(s.caption.encode()))
    caps = {"single": [c for c in HELDOUT_SINGLES if "face" not in c][:per_kind],
            "face": [c for c in HELDOUT_SINGLES if "face" in c][:per_kind]}
    for rel in ("on top of", "next to"):
        caps[rel] = [s.caption for s in pairs if s.relation == rel][:per_kind]
    return {k: caps[k] for k in KINDS}


def judged_matches(judge, images: Tensor, caption: str) -> list[bool]:
    """Per image: does the judge see exactly the caption's objects (shape + colour) and relation?"""
    spec = parse_caption(caption)
    return [m.objects_ok and m.relation_ok for m in (match(r, spec) for r in judge(images.cpu()))]


@torch.no_grad()
def judged_samples(prior, judge, captions: dict[str, list[str]], samples: int, cfg: float = 5.0,
                   steps: int = 25, seed: int = 0) -> dict[str, list[tuple[str, Tensor, list[bool]]]]:
    """``samples`` DDIM samples per kind, spread evenly over that kind's captions, each judged:
    kind -> [(caption, images [n, 3, S, S], matches)]."""
    out: dict[str, list[tuple[str, Tensor, list[bool]]]] = {}
    for kind, caps in captions.items():
        out[kind] = []
        for i, caption in enumerate(caps):
            n = samples // len(caps) + (1 if i < samples % len(caps) else 0)
            if n == 0:
                continue
            imgs = sample(prior, caption, n=n, cfg=cfg, steps=steps, seed=seed + zlib.crc32(caption.encode()))
            out[kind].append((caption, imgs.cpu(), judged_matches(judge, imgs, caption)))
    return out


def judged_accuracy(model: ToyUNet, judge, per_kind: int, samples_per_caption: int, cfg: float = 5.0,
                    steps: int = 25) -> dict[str, float]:
    """Share of judged-correct DDIM samples per kind on held-out captions (training's progress figure)."""
    from distill3d.priors.toy.prior import ToyPrior

    was_training = model.training
    prior = ToyPrior(model)
    caps = heldout_captions(per_kind)
    result = judged_samples(prior, judge, caps, per_kind * samples_per_caption, cfg, steps)
    model.train(was_training)
    return {k: sum(sum(m) for _, _, m in rows) / max(1, sum(len(m) for _, _, m in rows))
            for k, rows in result.items()}


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (Wilson 1927), (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
