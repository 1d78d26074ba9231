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

from distill3d.core.cameras import Cameras
from distill3d.priors.base import alphas_cumprod_cosine
from distill3d.priors.sampling import sample
from distill3d.priors.toy.model import ModelConditions, ToyUNet
from distill3d.toyworld.grammar import HELDOUT_SINGLES, all_specs, is_heldout, parse_caption
from distill3d.toyworld.judge import match
from distill3d.toyworld.layout import judge_views, sample_alpha
from distill3d.toyworld.render import render


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


def _share(total: int, i: int, k: int) -> int:
    """The i-th of k nearly equal parts of ``total`` (the first ``total % k`` get one more)."""
    return total // k + (1 if i < total % k else 0)


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
            n = _share(samples, i, len(caps))
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


#: Elevation of the judged groups (the evaluation's ring); the first azimuth is drawn per group.
GROUP_ELEVATION = 20.0


@dataclass(frozen=True)
class GroupVerdict:
    """One group of views of one scene, judged view by view against the truth from the same cameras.
    ``eyes_ok`` (faces): the judge sees the eyes in exactly the views where the truth shows them;
    ``layout_ok`` (two objects of different colours, ``toyworld.layout``): each view's order right, both
    colours present, none bled; ``judged_ok``: every view's objects and relation match the caption (hidden
    objects excused as in the evaluation), and the two checks above where they apply."""

    caption: str
    kind: str
    azimuths: tuple[float, ...]
    eyes_ok: bool | None
    layout_ok: bool | None
    judged_ok: bool


def judge_group(judge, images: Tensor, caption: str, azimuths: Sequence[float],
                elevation: float = GROUP_ELEVATION) -> GroupVerdict:
    """Judge one group ``images`` [V, 3, S, S] in [0, 1] of ``caption`` seen from ``azimuths`` at ``elevation``.
    A sample has no alpha: its silhouette is ``sample_alpha``'s."""
    spec = parse_caption(caption)
    images = images.detach().cpu().clamp(0, 1)
    truth = render(spec, Cameras.from_angles(list(azimuths), elevation), images.shape[-1])
    views = judge_views(judge, spec, images, sample_alpha(images), truth)
    eyes_ok = all(v.result.front_visible == v.front_truth for v in views) if spec.has_face else None
    layout_ok = all(v.layout.layout_ok for v in views) if views[0].layout is not None else None
    return GroupVerdict(caption, spec.kind, tuple(float(a) for a in azimuths), eyes_ok, layout_ok,
                        all(v.match.all_ok for v in views) and eyes_ok is not False and layout_ok is not False)


@torch.no_grad()
def judged_groups(prior, judge, captions: dict[str, list[str]], groups: int, cfg: float = 5.0, steps: int = 25,
                  seed: int = 0) -> dict[str, list[tuple[GroupVerdict, Tensor]]]:
    """``groups`` jointly drawn groups per kind (a multi-view prior: ``joint_views`` = V views 360°/V apart, the
    first azimuth drawn per group from the seed and caption, elevation ``GROUP_ELEVATION``), spread evenly over
    that kind's captions, each judged by :func:`judge_group`: kind -> [(verdict, images [V, 3, S, S])]."""
    views = prior.view_capabilities.joint_views
    out: dict[str, list[tuple[GroupVerdict, Tensor]]] = {}
    for kind, caps in captions.items():
        out[kind] = []
        for i, caption in enumerate(caps):
            n = _share(groups, i, len(caps))
            for j in range(n):
                s = seed + zlib.crc32(f"{caption}/{j}".encode())
                az0 = float(torch.rand((), generator=torch.Generator().manual_seed(s)) * 360.0)
                imgs = sample(prior, caption, n=1, cfg=cfg, steps=steps, seed=s, camera=(az0, GROUP_ELEVATION),
                              views=views).cpu()
                azimuths = [(az0 + 360.0 / views * k) % 360.0 for k in range(views)]
                out[kind].append((judge_group(judge, imgs, caption, azimuths), imgs))
    return out


def group_rates(verdicts: Sequence[GroupVerdict]) -> dict[str, float | None]:
    """Shares of groups judged right ("judged"), with their eyes right (faces) and their layout right (pairs)."""
    def share(values: list[bool | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return sum(vals) / len(vals) if vals else None

    return {"judged": share([v.judged_ok for v in verdicts]), "eyes": share([v.eyes_ok for v in verdicts]),
            "layout": share([v.layout_ok for v in verdicts])}


def judged_group_accuracy(model: ToyUNet, judge, per_kind: int, groups_per_caption: int, cfg: float = 5.0,
                          steps: int = 25) -> dict[str, float]:
    """Training's multi-view progress figures on held-out captions: per kind the share of groups judged right
    ("mv <kind>"), and of face groups with their eyes where the truth has them ("mv eyes"), of two-object groups
    with their layout right in every view ("mv layout")."""
    from distill3d.priors.toy.prior import ToyPrior

    was_training = model.training
    result = judged_groups(ToyPrior(model), judge, heldout_captions(per_kind), per_kind * groups_per_caption, cfg,
                           steps)
    model.train(was_training)
    acc = {f"mv {k}": group_rates([v for v, _ in rows])["judged"] for k, rows in result.items()}
    every = [v for rows in result.values() for v, _ in rows]
    rates = group_rates(every)
    acc |= {"mv eyes": rates["eyes"], "mv layout": rates["layout"]}
    return {k: v for k, v in acc.items() if v is not None}


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (Wilson 1927), (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
