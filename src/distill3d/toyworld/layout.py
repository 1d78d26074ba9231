"""Two objects judged from every side: which object is where, against the truth rendered from the same camera.

The judge reads one view and, for "next to", cannot say which object belongs on which side (the order flips
between front and back), so it accepts either order. A two-object Janus (the front's layout repeated on the
back) and colours bled across both objects then pass. This module measures them without the judge, from
pixels and the ground truth alone; nothing here steers an optimisation.

Per view, for a scene of two objects A (first in the caption) and B with different colours:
- Each foreground pixel of the asset's render (alpha > 0.5) is given the toy palette's colour it is nearest
  to under shading: the distance from the pixel to the segment {k·albedo : k ∈ [K_MIN, K_MAX]} (the truth
  is Lambert-shaded with ambient 0.5, so a surface point's colour is its albedo times k). Eye-dark pixels and
  pixels nearer white than any colour count as neither. Pixels of A's colour form the mask ``a``, of B's ``b``.
- The truth's per-object masks (``ToyRender.material``) give, from the same camera, where A and B are seen.
- **Order** (checked only where the truth shows it, the first that applies): left/right where the truth's
  object centroids are at least ``MIN_SEPARATION`` of the image width apart horizontally; above/below for
  "on top of" where they are that far apart vertically; front/behind where one object occludes the other
  (the truth sees one at least ``OCCLUSION_RATIO`` times more than the other): the asset must show more of
  the truth's front object than of the other; else above/below if the centroids are apart vertically.
  Both objects must be present (each colour on at least ``MIN_PRESENCE`` of its truth area, and 3 pixels).
- **Bleeding**: the share of the truth's A pixels (inside the asset's silhouette) that carry B's colour, and
  of B's that carry A's; the view's ``bleed`` is the larger of the two.
- ``layout_ok`` = order right, both present and ``bleed ≤ MAX_BLEED``. The asset is ``consistent`` when every
  view is. Single objects and pairs of one colour are not measured (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.toyworld.grammar import COLOR_NAMES, COLORS, SceneSpec
from distill3d.toyworld.judge import Judge, JudgeMatch, JudgeResult, hidden_objects, match
from distill3d.toyworld.judge_data import blur
from distill3d.toyworld.render import ToyRender, render
from distill3d.toyworld.sdf import EYE_COLOR

K_MIN, K_MAX = 0.35, 1.15  # shading factors a surface colour may carry (truth: 0.5 .. 1.0, plus margin)
MIN_SEPARATION = 0.08  # of the image width: centroids closer than this show no left/right (or up/down) order
OCCLUSION_RATIO = 1.5  # one object seen this many times more than the other: it is in front
MIN_PRESENCE = 0.2  # of the object's truth area that its colour must cover in the asset's render
MAX_BLEED = 0.25  # at most this share of an object's pixels may carry the other object's colour


@dataclass(frozen=True)
class ViewLayout:
    """One view's layout verdict. ``order`` names the check the truth allows ("left/right", "above/below",
    "front/behind", or "none" where no order is visible)."""

    order: str
    order_ok: bool
    present: bool  # both colours cover enough of their objects
    bleed: float  # max over the two objects of the share carrying the other's colour
    layout_ok: bool


def sample_alpha(images: Tensor) -> Tensor:
    """The silhouette [B, 1, S, S] of images [B, 3, S, S] in [0, 1] that have no alpha (a prior's samples): the
    pixels not near the toy world's white background."""
    return ((1.0 - images).abs().amax(1, keepdim=True) > 0.12).float()


def palette_labels(image: Tensor, alpha: Tensor) -> Tensor:
    """The palette colour index of each foreground pixel (-1 for background, eyes and white-ish pixels).
    image [B, 3, S, S] in [0, 1], alpha [B, 1, S, S] -> [B, S, S] long"""
    refs = torch.tensor([COLORS[c] for c in COLOR_NAMES] + [EYE_COLOR, (1.0, 1.0, 1.0)])  # [P, 3]
    px = image.permute(0, 2, 3, 1)[..., None, :]  # [B, S, S, 1, 3]
    k = ((px * refs).sum(-1) / (refs * refs).sum(-1)).clamp(K_MIN, K_MAX)  # best shading factor per colour
    k[..., -1] = 1.0  # white is white, not a shaded colour
    dist = (px - k[..., None] * refs).norm(dim=-1)  # [B, S, S, P]
    label = dist.argmin(-1)
    label = torch.where(label >= len(COLOR_NAMES), -1, label)  # eyes and white are no object colour
    return torch.where(alpha[:, 0] > 0.5, label, -1)


def _centroid(mask: Tensor) -> tuple[float, float]:
    """(x, y) mean pixel position of a [S, S] bool mask, in pixels."""
    ys, xs = mask.nonzero(as_tuple=True)
    return float(xs.float().mean()), float(ys.float().mean())


def _present(seen: int, truth: int) -> bool:
    """An object the truth shows on ``truth`` pixels is present when its colour covers enough of them (an
    object the truth barely shows, fewer than 10 pixels, need not be seen)."""
    return truth < 10 or seen >= max(3, MIN_PRESENCE * truth)


def judge_layout(spec: SceneSpec, image: Tensor, alpha: Tensor, truth_material: Tensor) -> list[ViewLayout] | None:
    """Per view, the layout verdict of an asset's renders against the truth's object masks from the same
    cameras; None for a scene that has not two objects of different colours.
    image [B, 3, S, S] in [0, 1], alpha [B, 1, S, S], truth_material [B, S, S] (ToyRender.material)."""
    if len(spec.objects) != 2 or spec.objects[0].color == spec.objects[1].color:
        return None
    ia, ib = (COLOR_NAMES.index(o.color) for o in spec.objects)
    labels = palette_labels(image, alpha)
    size = image.shape[-1]
    out = []
    for lab, mat in zip(labels, truth_material):
        ta, tb = mat == 1, mat == 2  # the truth's pixels of A and of B (eyes excluded)
        ga, gb = lab == ia, lab == ib  # the asset's pixels of A's colour and of B's
        na, nb = int(ta.sum()), int(tb.sum())
        present = _present(int(ga.sum()), na) and _present(int(gb.sum()), nb)
        bleed = max(float((tb & lab.eq(ia)).sum()) / max(1, int((tb & (lab >= 0)).sum())),
                    float((ta & lab.eq(ib)).sum()) / max(1, int((ta & (lab >= 0)).sum())))
        order, order_ok = "none", True
        if na > 0 and nb > 0:
            (txa, tya), (txb, tyb) = _centroid(ta), _centroid(tb)
            dx, dy = txa - txb, tya - tyb
            if abs(dx) >= MIN_SEPARATION * size:
                order = "left/right"
            elif abs(dy) >= MIN_SEPARATION * size and spec.relation == "on top of":
                order = "above/below"
        if order == "none" and max(na, nb) >= OCCLUSION_RATIO * max(1, min(na, nb)):
            order = "front/behind"  # one object hides the other: the asset must show more of the front one
            ca, cb = int(ga.sum()), int(gb.sum())
            order_ok = ca > cb if na > nb else cb > ca
        elif order == "none" and na > 0 and nb > 0 and abs(dy) >= MIN_SEPARATION * size:
            order = "above/below"  # the one behind peeks out above the one in front
        if order in ("left/right", "above/below") and present:
            (gxa, gya), (gxb, gyb) = _centroid(ga), _centroid(gb)
            order_ok = (dx * (gxa - gxb) if order == "left/right" else dy * (gya - gyb)) > 0
        ok = present and order_ok and bleed <= MAX_BLEED
        out.append(ViewLayout(order, bool(order_ok and present), present, bleed, ok))
    return out


@dataclass(frozen=True)
class ViewVerdict:
    """One view judged against the truth from its camera: the judge's reading, its match with the caption (eyes
    where the truth shows them, objects the truth barely shows excused), and the layout (None: not measured)."""

    result: JudgeResult
    match: JudgeMatch
    front_truth: bool  # the truth shows the face's eyes from this camera (False for scenes without a face)
    layout: ViewLayout | None


def judge_views(judge: Judge, spec: SceneSpec, images: Tensor, alpha: Tensor, truth: ToyRender) -> list[ViewVerdict]:
    """Views ``images`` [V, 3, S, S] in [0, 1] with silhouettes ``alpha`` [V, 1, S, S] of one scene ``spec``,
    judged view by view against ``truth``, its render from the same V cameras. The one per-view loop behind an
    asset's judgement (``evaluation.toy``) and a multi-view prior's groups (``priors.toy.evaluate``)."""
    fronts = truth.front_visible().tolist() if spec.has_face else [False] * images.shape[0]
    layouts = judge_layout(spec, images, alpha, truth.material) or [None] * images.shape[0]
    return [ViewVerdict(result, match(result, spec, front_visible=bool(front) if spec.has_face else None,
                                      hidden=hidden_objects(spec, mat)), bool(front), lay)
            for result, front, mat, lay in zip(judge(images), fronts, truth.material, layouts)]


@dataclass(frozen=True)
class TruthCheck:
    """How the per-view verdicts score ground-truth renders (which are right by construction) and renders of
    the mirrored scene (the objects' places swapped: a two-object Janus), per view."""

    views: int
    layout_right_on_truth: float  # share of truth views whose layout is judged right
    judged_and_layout_right_on_truth: float  # ... and whose judge verdict (objects + relation) matches too
    layout_wrong_on_mirror: float  # share of mirrored views, where the truth shows an order, judged wrong
    ordered_views: float  # share of truth views where some order (left/right, above/below, front/behind) shows


def check_on_truth(specs: list[SceneSpec], azimuths: Tensor, elevations: Tensor, size: int, judge: Judge,
                   noise: float = 0.02, blur_sigma: float = 0.6, seed: int = 0) -> TruthCheck:
    """Score ground-truth renders of ``specs`` (one view each, camera i at azimuths[i], elevations[i]) as if
    they were an asset's renders, lightly degraded (Gaussian blur and pixel noise, as distilled renders are
    soft), and the same for the mirrored scenes (objects swapped) against the original truth."""
    gen = torch.Generator().manual_seed(seed)
    cams = Cameras.from_angles(azimuths.tolist(), elevations.tolist())
    truth = render(specs, cams, size)
    mirror = render([SceneSpec(s.objects[::-1], s.relation) for s in specs], cams, size)

    def soften(images: Tensor) -> Tensor:
        x = blur(images, torch.full((images.shape[0],), blur_sigma)) if blur_sigma > 0 else images
        return (x + noise * torch.randn(x.shape, generator=gen)).clamp(0, 1)

    seen, lay_truth, lay_mirror = judge(soften(truth.image)), [], []
    for i, spec in enumerate(specs):
        (v,) = judge_layout(spec, soften(truth.image[i : i + 1]), truth.alpha[i : i + 1], truth.material[i : i + 1])
        (w,) = judge_layout(spec, soften(mirror.image[i : i + 1]), mirror.alpha[i : i + 1], truth.material[i : i + 1])
        lay_truth.append((v, match(seen[i], spec, hidden=hidden_objects(spec, truth.material[i])).all_ok))
        lay_mirror.append(w)
    ordered = [w for (v, _), w in zip(lay_truth, lay_mirror) if v.order != "none"]
    n = len(specs)
    return TruthCheck(n, sum(v.layout_ok for v, _ in lay_truth) / n, sum(v.layout_ok and ok for v, ok in lay_truth) / n,
                      sum(not w.layout_ok for w in ordered) / max(1, len(ordered)), len(ordered) / n)
