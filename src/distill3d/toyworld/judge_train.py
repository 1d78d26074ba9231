"""Training the judge: a plain loop, readable top to bottom.

Each step draws a batch of ground-truth views (either view of a scene), degrades most of them
(``judge_data.degrade``), replaces a share with synthetic negatives labelled "nothing", and minimises
cross-entropy on the layout, on shape and colour of each filled slot, and binary cross-entropy on front
visibility. AdamW with a cosine-decayed rate. Everything random comes from one ``torch.Generator``
seeded with ``seed``, so the same seed, data and thread count give the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill3d.toyworld.dataset import ToyData
from distill3d.toyworld.grammar import COLOR_NAMES, SHAPES, parse_caption
from distill3d.toyworld.judge import JudgeConfig, JudgeLogits, JudgeNet
from distill3d.toyworld.judge_data import (
    JUDGE_SIZE,
    LAYOUTS,
    NEGATIVE_KINDS,
    JudgeLabels,
    degrade,
    labels_for,
    negatives,
    nothing_labels,
    to_judge_size,
)


@dataclass(frozen=True)
class JudgeTrainConfig:
    steps: int = 6000
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    negative_share: float = 0.15  # of each batch: synthetic "nothing" images
    clean_share: float = 0.25  # of the real images: left undegraded


@dataclass(frozen=True)
class TrainingImages:
    images: Tensor  # [N, 3, 32, 32] uint8 ground-truth views
    labels: JudgeLabels


def training_images(datasets: list[ToyData]) -> TrainingImages:
    """Both views of every scene of ``datasets``, at 32 px, with their labels."""
    images, labels = [], []
    for data in datasets:
        specs = [parse_caption(c) for c in data.captions]
        for view, views in enumerate((data.images, data.images2)):
            x = views if data.size == JUDGE_SIZE else (to_judge_size(views.float() / 255.0) * 255 + 0.5).to(torch.uint8)
            images.append(x)
            labels.append(labels_for(specs, data.eye_pixels[:, view], data.size))
    return TrainingImages(torch.cat(images), JudgeLabels.cat(labels))


def _accepted(target: Tensor, classes: int) -> Tensor:
    """[B, 2] class ids (-1 = empty slot) -> [B, 2, C] bool; an empty slot accepts every class (zero loss)."""
    return F.one_hot(target.clamp_min(0), classes).bool() | (target < 0)[..., None]


def _set_nll(logits: Tensor, accepted: Tensor) -> Tensor:
    """-log P(the class is one of the accepted ones): [B, 2, C], [B, 2, C] bool -> [B, 2]"""
    logp = logits.log_softmax(dim=-1)
    return -logp.masked_fill(~accepted, float("-inf")).logsumexp(dim=-1)


def judge_loss(logits: JudgeLogits, labels: JudgeLabels) -> Tensor:
    """Layout CE + shape and colour NLL per filled slot + front BCE. A face whose front is hidden may be
    read as a sphere; a "next to" pair may fill its slots in either order (the better one counts)."""
    shape_ok = _accepted(labels.shape, len(SHAPES))
    shape_ok[..., SHAPES.index("sphere")] |= (labels.shape == SHAPES.index("face")) & labels.face_hidden[:, None]
    color_ok = _accepted(labels.color, len(COLOR_NAMES))
    as_given = (_set_nll(logits.shape, shape_ok) + _set_nll(logits.color, color_ok)).sum(dim=1)  # [B]
    swapped = (_set_nll(logits.shape, shape_ok.flip(1)) + _set_nll(logits.color, color_ok.flip(1))).sum(dim=1)
    unordered = labels.layout == LAYOUTS.index("next to")
    objects = torch.where(unordered, torch.minimum(as_given, swapped), as_given).sum()
    filled = (labels.shape >= 0).sum().clamp_min(1)
    return (F.cross_entropy(logits.layout, labels.layout) + objects / filled
            + F.binary_cross_entropy_with_logits(logits.front, labels.front))


def make_batch(data: TrainingImages, cfg: JudgeTrainConfig, gen: torch.Generator) -> tuple[Tensor, JudgeLabels]:
    """One training batch: images [B, 3, 32, 32] in [0, 1] and their labels."""
    n_neg = round(cfg.batch * cfg.negative_share)
    idx = torch.randint(len(data.labels), (cfg.batch,), generator=gen)
    real = data.images[idx].float() / 255.0
    clean = torch.rand(cfg.batch, generator=gen) < cfg.clean_share
    images = torch.where(clean[:, None, None, None], real, degrade(real, gen))
    kinds = torch.randint(len(NEGATIVE_KINDS), (n_neg,), generator=gen)
    neg = negatives(kinds, real[:n_neg], gen)
    rough = torch.rand(n_neg, generator=gen) < 0.5
    neg = torch.where(rough[:, None, None, None], degrade(neg, gen), neg)
    images = torch.cat([neg, images[n_neg:]])
    labels = JudgeLabels.cat([nothing_labels(n_neg), data.labels.select(idx[n_neg:])])
    return images, labels


def train_judge(data: TrainingImages, cfg: JudgeTrainConfig, net_cfg: JudgeConfig,
                on_step: Callable[[int, float], None] | None = None) -> JudgeNet:
    """Train a fresh ``JudgeNet``; ``on_step(step, loss)`` is called after every step."""
    torch.manual_seed(cfg.seed)  # the initial weights
    gen = torch.Generator().manual_seed(cfg.seed)
    net = JudgeNet(net_cfg).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 50)
    for step in range(cfg.steps):
        lr_scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_scale
        images, labels = make_batch(data, cfg, gen)
        loss = judge_loss(net(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, float(loss.detach()))
    return net.eval()
