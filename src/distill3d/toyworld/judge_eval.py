"""How good the judge is: accuracy per attribute on ground-truth views (clean and degraded) and what it
says on out-of-distribution inputs (blank images, noise, junk), including kinds it never trained on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.toyworld.dataset import ToyData
from distill3d.toyworld.grammar import SceneSpec, parse_caption
from distill3d.toyworld.judge import Judge, match
from distill3d.toyworld.judge_data import NEGATIVE_KINDS, degrade, front_visible, negatives, to_judge_size

#: Inputs the judge never saw in training, to test that "nothing recognisable" generalises.
UNSEEN_KINDS: tuple[str, ...] = ("black", "checkerboard", "gradient", "stripes")


@dataclass(frozen=True)
class EvalSet:
    images: Tensor  # [N, 3, 32, 32] float in [0, 1]
    specs: list[SceneSpec]
    fronts: list[bool]  # is the face's front visible (ground truth)


@dataclass(frozen=True)
class AttributeAccuracy:
    """Shares of images (all in [0, 1]) on which each attribute is right; ``front_faces`` counts only
    images whose scene has a face (the others are trivially "front not visible")."""

    images: int
    recognised: float
    count: float
    relation: float
    shapes: float
    colors: float
    objects: float
    front: float
    front_faces: float
    all: float


@dataclass(frozen=True)
class OODRow:
    kind: str
    trained: bool  # a kind of synthetic negative the judge trained on
    nothing_rate: float  # share judged "nothing recognisable"
    mean_p_nothing: float  # mean probability of the "nothing" layout


def eval_set(data: ToyData) -> EvalSet:
    """Both views of every scene of a dataset, at 32 px."""
    specs = [parse_caption(c) for c in data.captions]
    images, fronts = [], []
    for view, views in enumerate((data.images, data.images2)):
        images.append(to_judge_size(views.float() / 255.0))
        fronts += [front_visible(s, int(e), data.size) for s, e in zip(specs, data.eye_pixels[:, view])]
    return EvalSet(torch.cat(images), specs + specs, fronts)


def accuracy(judge: Judge, images: Tensor, specs: list[SceneSpec], fronts: list[bool]) -> AttributeAccuracy:
    """Per-attribute accuracy of ``judge`` on images [N, 3, H, W] of ``specs``."""
    results = judge(images)
    matches = [match(r, s, f) for r, s, f in zip(results, specs, fronts)]
    faces = [m for m, s in zip(matches, specs) if s.has_face]

    def share(values: list[bool]) -> float:
        return sum(values) / max(1, len(values))

    return AttributeAccuracy(
        images=len(matches), recognised=share([r.recognisable for r in results]),
        count=share([m.count_ok for m in matches]), relation=share([m.relation_ok for m in matches]),
        shapes=share([m.shapes_ok for m in matches]), colors=share([m.colors_ok for m in matches]),
        objects=share([m.objects_ok for m in matches]), front=share([bool(m.front_ok) for m in matches]),
        front_faces=share([bool(m.front_ok) for m in faces]), all=share([m.all_ok for m in matches]),
    )


def degraded(images: Tensor, seed: int) -> Tensor:
    """The training degradations (shift, scale, mirror, floaters, blur, noise, brightness, saturation)
    applied once to every image with a fixed seed. [N, 3, 32, 32] -> same"""
    return degrade(images, torch.Generator().manual_seed(seed))


def unseen_images(kind: str, n: int, gen: torch.Generator, size: int = 32) -> Tensor:
    """Out-of-distribution images of a kind the judge never trained on. [n, 3, size, size]"""
    ij = torch.arange(size, dtype=torch.float32)
    if kind == "black":
        return torch.zeros(n, 3, size, size)
    if kind == "checkerboard":
        cell = torch.randint(2, 9, (n, 1, 1), generator=gen)
        board = (((ij[None, :, None] // cell) + (ij[None, None, :] // cell)) % 2)[:, None]
        a, b = torch.rand(n, 3, 1, 1, generator=gen), torch.rand(n, 3, 1, 1, generator=gen)
        return a * board + b * (1 - board)
    if kind == "gradient":
        a, b = torch.rand(n, 3, 1, 1, generator=gen), torch.rand(n, 3, 1, 1, generator=gen)
        ramp = (ij / (size - 1))[None, None, None, :]
        return a * (1 - ramp) + b * ramp
    if kind == "stripes":
        period = torch.randint(3, 10, (n, 1, 1, 1), generator=gen).float()
        wave = 0.5 + 0.5 * torch.sin(2 * torch.pi * ij[None, None, :, None] / period)
        return (torch.rand(n, 3, 1, 1, generator=gen) * wave).expand(n, 3, size, size).clone()
    raise ValueError(f"unknown kind {kind!r}")


def ood_behaviour(judge: Judge, real: Tensor, n: int = 256, seed: int = 0) -> list[OODRow]:
    """What the judge says on n images of each synthetic negative kind (trained) and each unseen kind.
    ``real`` [M, 3, 32, 32] are ground-truth views that "scrambled" cuts into patches."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for k, kind in enumerate(NEGATIVE_KINDS + UNSEEN_KINDS):
        if kind in NEGATIVE_KINDS:
            pick = torch.randint(real.shape[0], (n,), generator=gen)
            images = negatives(torch.full((n,), k), real[pick], gen)
        else:
            images = unseen_images(kind, n, gen)
        p_nothing = judge.probabilities(images).layout[:, 0]
        said = [not r.recognisable for r in judge(images)]
        rows.append(OODRow(kind, kind in NEGATIVE_KINDS, sum(said) / n, float(p_nothing.mean())))
    return rows

