"""What the judge learns from: labels from captions and eye counts, degradations, synthetic negatives.

Labels (one per image):
- ``layout``: index into ``LAYOUTS`` ("nothing" recognisable, a single object, "on top of", "next to");
  the number of objects and the relation both follow from it.
- two object slots in a canonical order that one view determines: a single object in slot A; for
  "on top of" the top object in A and the bottom one in B; for "next to" (whose left/right order is not
  visible from behind) the pair sorted by (shape index, colour index), and training lets the network
  fill the two slots in either order (the loss takes the better of the two assignments).
- ``front``: a face is present and enough pixels see its eyes (``render.front_visible_min_eye_pixels``).
- ``face_hidden``: a face is present but its front is not visible. Seen from behind a face is a plain
  sphere, so one view cannot tell them apart: its slot accepts "face" or "sphere".

Degradations imitate renders of distilled 3D assets: small shifts and scales, mirror images, blur,
noise, floaters (small soft blobs), brightness and saturation changes. Never hue changes: colour is
what the judge reports. Negatives (``NEGATIVE_KINDS``) teach the explicit "nothing" outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill3d.toyworld.grammar import COLOR_NAMES, SHAPES, ObjectSpec, SceneSpec
from distill3d.toyworld.render import front_visible_min_eye_pixels

LAYOUTS: tuple[str, ...] = ("nothing", "single", "on top of", "next to")
JUDGE_SIZE = 32
NEGATIVE_KINDS: tuple[str, ...] = ("white", "uniform", "noise", "smooth noise", "blobs", "scrambled")


def object_key(obj: ObjectSpec) -> tuple[int, int]:
    return SHAPES.index(obj.shape), COLOR_NAMES.index(obj.color)


def canonical_objects(spec: SceneSpec) -> tuple[ObjectSpec, ...]:
    """The scene's objects in slot order: (object,), (top, bottom), or a "next to" pair sorted."""
    if spec.relation == "next to":
        return tuple(sorted(spec.objects, key=object_key))
    return spec.objects


def layout_of(spec: SceneSpec) -> str:
    return spec.relation if spec.relation is not None else "single"


def front_visible(spec: SceneSpec, eye_pixels: int, size: int) -> bool:
    return spec.has_face and eye_pixels >= front_visible_min_eye_pixels(size)


@dataclass(frozen=True)
class JudgeLabels:
    layout: Tensor  # [N] long, index into LAYOUTS
    shape: Tensor  # [N, 2] long, index into SHAPES, -1 for an empty slot
    color: Tensor  # [N, 2] long, index into COLOR_NAMES, -1 for an empty slot
    front: Tensor  # [N] float, 1.0 where the face's front is visible
    face_hidden: Tensor  # [N] bool, a face whose front is not visible (it may be read as a sphere)

    def __len__(self) -> int:
        return self.layout.shape[0]

    def select(self, idx: Tensor) -> JudgeLabels:
        return JudgeLabels(*(getattr(self, f)[idx] for f in _FIELDS))

    @staticmethod
    def cat(parts: list[JudgeLabels]) -> JudgeLabels:
        return JudgeLabels(*(torch.cat([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("layout", "shape", "color", "front", "face_hidden")


def labels_for(specs: list[SceneSpec], eye_pixels: Tensor, size: int) -> JudgeLabels:
    """Labels of rendered views: scene specs, eye pixels [N] counted at ``size`` px."""
    n = len(specs)
    shape = torch.full((n, 2), -1, dtype=torch.long)
    color = torch.full((n, 2), -1, dtype=torch.long)
    for i, spec in enumerate(specs):
        for k, obj in enumerate(canonical_objects(spec)):
            shape[i, k], color[i, k] = object_key(obj)
    layout = torch.tensor([LAYOUTS.index(layout_of(s)) for s in specs], dtype=torch.long)
    front = torch.tensor([front_visible(s, int(e), size) for s, e in zip(specs, eye_pixels)], dtype=torch.bool)
    has_face = torch.tensor([s.has_face for s in specs], dtype=torch.bool)
    return JudgeLabels(layout, shape, color, front.float(), has_face & ~front)


def nothing_labels(n: int) -> JudgeLabels:
    return JudgeLabels(torch.zeros(n, dtype=torch.long), torch.full((n, 2), -1, dtype=torch.long),
                       torch.full((n, 2), -1, dtype=torch.long), torch.zeros(n), torch.zeros(n, dtype=torch.bool))


def to_judge_size(images: Tensor) -> Tensor:
    """[B, 3, H, W] -> [B, 3, 32, 32]: area-averaged when larger, bilinear when smaller."""
    if images.shape[-2:] == (JUDGE_SIZE, JUDGE_SIZE):
        return images
    mode = "area" if min(images.shape[-2:]) >= JUDGE_SIZE else "bilinear"
    return F.interpolate(images, size=(JUDGE_SIZE, JUDGE_SIZE), mode=mode)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _coin(n: int, p: float, gen: torch.Generator) -> Tensor:
    return torch.rand(n, generator=gen) < p


def _gaussian_blobs(n: int, size: int, count: int, radius: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Soft round masks [n, count, S, S] in [0, 1] at random centres."""
    centre = torch.rand(n, count, 2, generator=gen) * size
    r = radius[0] + (radius[1] - radius[0]) * torch.rand(n, count, 1, 1, generator=gen)
    ij = torch.arange(size, dtype=torch.float32) + 0.5
    d2 = (ij[None, None, :, None] - centre[..., 0, None, None]) ** 2 + (ij[None, None, None, :] - centre[..., 1, None, None]) ** 2
    return torch.exp(-0.5 * d2 / r**2)


def _composite(images: Tensor, masks: Tensor, colors: Tensor, opacity: Tensor) -> Tensor:
    """Paint blobs over images: masks [B, K, S, S], colors [B, K, 3], opacity [B, K]."""
    for k in range(masks.shape[1]):
        a = (masks[:, k] * opacity[:, k, None, None])[:, None]  # [B, 1, S, S]
        images = images * (1 - a) + colors[:, k, :, None, None] * a
    return images


def blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma per image (radius 2 px). [B, 3, S, S] -> [B, 3, S, S]"""
    b, c, h, w = images.shape
    x = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-0.5 * x**2 / sigma.clamp_min(1e-3)[:, None] ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [B*3, 5]
    flat = F.pad(images.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="replicate")
    flat = F.conv2d(flat, k[:, None, :, None], groups=b * c)
    flat = F.conv2d(flat, k[:, None, None, :], groups=b * c)
    return flat.reshape(b, c, h, w)


def _shift_scale_flip(images: Tensor, gen: torch.Generator) -> Tensor:
    b = images.shape[0]
    scale = _uniform(b, 0.87, 1.15, gen)  # >1 enlarges the content
    flip = torch.where(_coin(b, 0.5, gen), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = flip / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = (torch.rand(b, 2, generator=gen) * 2 - 1) * 0.12  # up to ~2 px
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # sample 1 - image so that what comes in from outside (zeros) is white
    return 1.0 - F.grid_sample(1.0 - images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def degrade(images: Tensor, gen: torch.Generator) -> Tensor:
    """A random mix of the degradations of distilled renders. [B, 3, S, S] in [0, 1] -> same."""
    b, _, s, _ = images.shape
    x = _shift_scale_flip(images, gen)
    floaters = _coin(b, 0.3, gen)[:, None]
    masks = _gaussian_blobs(b, s, 3, (0.6, 1.8), gen)
    opacity = _uniform(b * 3, 0.2, 0.8, gen).reshape(b, 3) * floaters * _coin(b * 3, 0.6, gen).reshape(b, 3)
    x = _composite(x, masks, torch.rand(b, 3, 3, generator=gen), opacity)
    sigma = torch.where(_coin(b, 0.6, gen), _uniform(b, 0.3, 1.3, gen), torch.zeros(b))
    x = torch.where((sigma > 0)[:, None, None, None], blur(x, sigma), x)
    grey = x.mean(dim=1, keepdim=True)
    saturation = _uniform(b, 0.75, 1.25, gen)[:, None, None, None]
    brightness = _uniform(b, 0.85, 1.12, gen)[:, None, None, None]
    x = (grey + saturation * (x - grey)) * brightness
    noise = torch.where(_coin(b, 0.5, gen), _uniform(b, 0.0, 0.06, gen), torch.zeros(b))[:, None, None, None]
    x = x + noise * torch.randn(x.shape, generator=gen)
    return x.clamp(0.0, 1.0)


def negatives(kinds: Tensor, real: Tensor, gen: torch.Generator) -> Tensor:
    """Images with nothing recognisable: kinds [B] (index into NEGATIVE_KINDS), real renders [B, 3, S, S]
    (used by "scrambled"). [B, 3, S, S] in [0, 1]"""
    b, _, s, _ = real.shape
    out = torch.ones(b, 3, s, s)
    rgb = torch.rand(b, 3, generator=gen)[:, :, None, None]
    uniform = rgb.expand(-1, -1, s, s)
    noise = torch.where(_coin(b, 0.5, gen)[:, None, None, None], torch.rand(b, 3, s, s, generator=gen),
                        (rgb + 0.3 * torch.randn(b, 3, s, s, generator=gen)).clamp(0, 1))
    coarse = torch.rand(b, 3, 4, 4, generator=gen)
    smooth = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)
    count = 7
    keep = (torch.arange(count)[None] < torch.randint(3, count + 1, (b, 1), generator=gen)).float()
    blobs = _composite(torch.ones(b, 3, s, s), _gaussian_blobs(b, s, count, (1.0, 5.0), gen),
                       torch.rand(b, count, 3, generator=gen), keep * _uniform(b * count, 0.6, 1.0, gen).reshape(b, count))
    p = 4  # scrambled: 4x4-pixel patches in a random order
    patches = real.unfold(2, p, p).unfold(3, p, p).reshape(b, 3, -1, p, p)  # [B, 3, (S/p)^2, p, p]
    order = torch.argsort(torch.rand(b, patches.shape[2], generator=gen), dim=1)
    patches = patches.gather(2, order[:, None, :, None, None].expand_as(patches))
    g = s // p
    scrambled = patches.reshape(b, 3, g, g, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, 3, s, s)
    for i, img in enumerate((out, uniform, noise, smooth, blobs, scrambled)):
        out = torch.where((kinds == i)[:, None, None, None], img, out)
    return out
