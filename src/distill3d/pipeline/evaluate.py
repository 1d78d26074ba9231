"""Judging a generated asset against the toy world's ground truth.

The asset is rendered on a turntable (8 azimuths at 20° elevation); the judge reads each view and is
compared with the caption's scene. Ground truth rendered from the same cameras says where the face's
front is truly visible, so the multi-face (Janus) failure is measured as eyes judged visible at views
whose truth shows none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from distill3d.core.cameras import Cameras
from distill3d.scene.render import render
from distill3d.toyworld.grammar import parse_caption
from distill3d.toyworld.judge import Judge, match
from distill3d.toyworld.render import render as render_truth

AZIMUTHS = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
ELEVATION = 20.0
SIZE = 64


@dataclass(frozen=True)
class ViewJudgement:
    azimuth: float
    seen: str  # the judge's description
    objects_ok: bool
    relation_ok: bool
    all_ok: bool  # objects (shape + colour per object) and relation
    front_seen: bool
    front_truth: bool
    image_mse: float  # against the ground-truth render of the same view


@dataclass(frozen=True)
class AssetJudgement:
    caption: str
    kind: str
    views: list[ViewJudgement]
    match_rate: float  # share of views whose objects and relation match the caption
    front_seen_azimuths: list[float]  # face only: views where the judge sees the eyes
    janus_views: int  # face only: views judged to show eyes where the truth shows none
    image_mse: float


@torch.no_grad()
def judge_representation(rep: nn.Module, caption: str, judge: Judge | None = None) -> dict:
    """Judge a representation's turntable against ``caption``; a JSON-ready dict (AssetJudgement)."""
    spec = parse_caption(caption)
    judge = judge or Judge.load()
    cams = Cameras.from_angles(list(AZIMUTHS), ELEVATION)
    images = render(rep, cams, SIZE).image.detach().cpu().clamp(0, 1)
    truth = render_truth(spec, cams, SIZE)
    fronts = truth.front_visible().tolist() if spec.has_face else [False] * len(AZIMUTHS)
    views = []
    for az, img, gt, result, front in zip(AZIMUTHS, images, truth.image, judge(images), fronts):
        m = match(result, spec, front_visible=bool(front) if spec.has_face else None)
        views.append(ViewJudgement(az, result.describe(), m.objects_ok, m.relation_ok,
                                   m.objects_ok and m.relation_ok, result.front_visible, bool(front),
                                   float(((img - gt) ** 2).mean())))
    seen = [v.azimuth for v in views if v.front_seen] if spec.has_face else []
    janus = sum(v.front_seen and not v.front_truth for v in views) if spec.has_face else 0
    out = AssetJudgement(spec.caption, spec.kind, views, sum(v.all_ok for v in views) / len(views), seen, janus,
                         sum(v.image_mse for v in views) / len(views))
    return asdict(out)
