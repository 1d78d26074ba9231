"""Judging a generated asset against the toy world's ground truth.

The asset is rendered on a turntable (8 azimuths at 20° elevation); the judge reads each view and is
compared with the caption's scene. Ground truth rendered from the same cameras says where the face's
front is truly visible, so the multi-face (Janus) failure is measured as eyes judged visible at views
whose truth shows none.

The judge alone is generous (a lumpy red box passes as "a red cube"), so each view is also compared with the
truth pixel by pixel: ``iou`` is the intersection over union of the two silhouettes (alpha > 0.5), and
``color_error`` the mean absolute RGB difference (channels averaged, in [0, 1]) over the pixels both
silhouettes cover (1.0 when they share none): shape and colour measured apart.

The judge accepts a "next to" pair in either order (one view cannot say which side is which), so for two
objects ``toyworld.layout`` also checks, per view and against the truth from the same camera, that each
object is where the truth has it and that colours did not bleed: ``layout_ok`` per view, ``consistent`` per
asset (right from every side).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from distill3d.core.cameras import Cameras
from distill3d.scene.render import render
from distill3d.toyworld.grammar import parse_caption
from distill3d.toyworld.judge import Judge
from distill3d.toyworld.layout import judge_views
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
    count_ok: bool  # per attribute (toyworld.judge.JudgeMatch)
    shapes_ok: bool
    colors_ok: bool
    iou: float  # silhouette IoU against the truth of the same view
    color_error: float  # mean |RGB - truth| where both silhouettes cover
    # two objects of different colours (toyworld.layout), else None:
    layout_order: str | None  # the order the truth shows: "left/right", "above/below", "front/behind", "none"
    layout_ok: bool | None  # each object where the truth has it, both present, colours not bled
    bleed: float | None  # share of an object's pixels carrying the other's colour (max of the two)


@dataclass(frozen=True)
class AssetJudgement:
    caption: str
    kind: str
    views: list[ViewJudgement]
    match_rate: float  # share of views whose objects and relation match the caption
    front_seen_azimuths: list[float]  # face only: views where the judge sees the eyes
    janus_views: int  # face only: views judged to show eyes where the truth shows none
    image_mse: float
    iou: float  # mean over views
    color_error: float  # mean over views
    layout_rate: float | None  # share of views whose layout is right (two objects of different colours)
    consistent: bool | None  # the layout is right from every side (every view)
    bleed: float | None  # mean over views


@torch.no_grad()
def judge_representation(rep: nn.Module, caption: str, judge: Judge | None = None) -> dict:
    """Judge a representation's turntable against ``caption``; a JSON-ready dict (AssetJudgement)."""
    spec = parse_caption(caption)
    judge = judge or Judge.load()
    cams = Cameras.from_angles(list(AZIMUTHS), ELEVATION)
    training = rep.training
    out = render(rep.eval(), cams, SIZE)  # eval mode: a radiance field renders its bin midpoints, no jitter
    rep.train(training)
    images = out.image.detach().cpu().clamp(0, 1)  # [V, 3, S, S]
    truth = render_truth(spec, cams, SIZE)
    alpha = out.alpha.detach().cpu()  # [V, 1, S, S]
    ious, colors = silhouette_iou(alpha, truth.alpha), color_error(images, alpha, truth.image, truth.alpha)
    verdicts = judge_views(judge, spec, images, alpha, truth)
    views = []
    for az, img, gt, v, iou, col in zip(AZIMUTHS, images, truth.image, verdicts, ious.tolist(), colors.tolist()):
        m, lay = v.match, v.layout
        views.append(ViewJudgement(az, v.result.describe(), m.objects_ok, m.relation_ok,
                                   m.objects_ok and m.relation_ok, v.result.front_visible, v.front_truth,
                                   float(((img - gt) ** 2).mean()), m.count_ok, m.shapes_ok, m.colors_ok, iou, col,
                                   *((lay.order, lay.layout_ok, lay.bleed) if lay else (None, None, None))))
    seen = [v.azimuth for v in views if v.front_seen] if spec.has_face else []
    janus = sum(v.front_seen and not v.front_truth for v in views) if spec.has_face else 0
    measured = verdicts[0].layout is not None
    result = AssetJudgement(spec.caption, spec.kind, views, sum(v.all_ok for v in views) / len(views), seen, janus,
                            sum(v.image_mse for v in views) / len(views), float(ious.mean()), float(colors.mean()),
                            sum(v.layout_ok for v in views) / len(views) if measured else None,
                            all(v.layout_ok for v in views) if measured else None,
                            sum(v.bleed for v in views) / len(views) if measured else None)
    return asdict(result)


def silhouette_iou(alpha: torch.Tensor, truth_alpha: torch.Tensor) -> torch.Tensor:
    """IoU of the silhouettes (alpha > 0.5) per view (1 when both are empty). [B, 1, S, S] x 2 -> [B]"""
    a, b = alpha[:, 0] > 0.5, truth_alpha[:, 0] > 0.5
    inter, union = (a & b).flatten(1).sum(1).float(), (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def color_error(image: torch.Tensor, alpha: torch.Tensor, truth: torch.Tensor,
                truth_alpha: torch.Tensor) -> torch.Tensor:
    """Mean |RGB − truth| (channels averaged) over the pixels both silhouettes cover, per view; 1 where they
    share none. image, truth [B, 3, S, S] in [0, 1]; alpha, truth_alpha [B, 1, S, S] -> [B]"""
    both = ((alpha[:, 0] > 0.5) & (truth_alpha[:, 0] > 0.5)).float()  # [B, S, S]
    diff = (image - truth).abs().mean(1)  # [B, S, S]
    n = both.flatten(1).sum(1)
    return torch.where(n > 0, (diff * both).flatten(1).sum(1) / n.clamp_min(1), torch.ones_like(n))
