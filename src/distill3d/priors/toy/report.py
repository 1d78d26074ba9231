"""The embedded prior measured with the judge (the numbers the prior's targets are stated in).

1. Judged DDIM samples on held-out captions (never used in training, see ``toyworld.grammar.is_heldout``
   and ``docs/toy_world.md``): the share of samples whose judged objects (shape + colour of each) and
   relation match the caption, per caption kind, with 95% Wilson intervals.
2. A Fréchet distance between the judge's penultimate features of those samples and of ground-truth
   renders of the same captions (cameras drawn as in training), beside the floor: the same distance
   between two independent sets of ground-truth renders. Speckle and blur move it even when the judge
   still reads the right objects.
3. View consistency of camera-conditioned faces: for a face caption sampled at each of 8 azimuths, does
   the judge see the eyes exactly where the ground truth at that camera shows them?
4. Reconstruction through the image branch, AnchorDS' L_rec (Eqs. 12-13): pixel MSE in [0, 1] between
   x̂0(z_t, ε̂(z_t; ∅, I)) and the conditioning ground-truth render I, at t = 200, 500, 800; with the
   unconditional x̂0(z_t, ε̂(z_t; ∅)) beside it, so the image branch's contribution is visible.
5. Text steering with an image: ‖ε̂(y', I) − ε̂(y, I)‖ / ‖ε̂(y') − ε̂(y)‖ at t = 500 for held-out renders I
   of y and another caption y' (1: the text moves the prediction as much with the image as without;
   0: text + image rows ignore the text).
6. Sampling speed (DDIM images per second at the report's batch).
7. A multi-view prior (``joint_views`` = V > 1, ``toy-mv``) also gets groups of V views drawn jointly (360°/V
   apart, the first azimuth drawn per group, elevation 20°) on the same held-out captions, each view judged
   against the truth from its camera (``evaluate.judge_group``): per kind the share of groups right in every
   view, of face groups whose eyes are seen exactly where the truth shows them, and of two-object groups whose
   layout (each object where the truth has it, colours not bled) is right in every view; Wilson intervals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.priors.base import Condition, Prior, views_of
from distill3d.priors.sampling import sample
from distill3d.priors.toy.evaluate import (
    KINDS,
    heldout_captions,
    judged_groups,
    judged_samples,
    wilson_interval,
)
from distill3d.toyworld.dataset import DatasetConfig, sample_views
from distill3d.toyworld.grammar import all_specs, is_heldout, parse_caption
from distill3d.toyworld.judge import Judge
from distill3d.toyworld.render import render as render_truth

RECON_TIMESTEPS = (200, 500, 800)
FACE_AZIMUTHS = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)


@dataclass(frozen=True)
class ReportConfig:
    samples_per_kind: int = 64  # judged samples per caption kind, spread over that kind's captions
    pairs_per_relation: int = 16  # held-out "on top of" and "next to" captions drawn (stably) from the grammar
    cfg: float = 5.0  # the default CFG of `distill3d toy sample`
    steps: int = 50  # DDIM steps
    face_caption: str = "a blue face"  # held out
    face_samples_per_azimuth: int = 8
    face_elevation: float = 15.0
    recon_images: int = 64
    groups_per_kind: int = 32  # multi-view prior only: jointly drawn groups of views per caption kind
    seed: int = 0


@dataclass(frozen=True)
class KindResult:
    captions: list[str]
    hits: int
    n: int
    ci95: tuple[float, float]  # Wilson interval of hits / n

    @property
    def rate(self) -> float:
        return self.hits / max(1, self.n)


def _kind_result(captions: list[str], oks: list[bool]) -> KindResult:
    return KindResult(captions, sum(oks), len(oks), wilson_interval(sum(oks), len(oks)))


@dataclass(frozen=True)
class GroupKindResult:
    """Jointly drawn groups of one caption kind: right in every view; eyes (faces) and layout (pairs) apart."""

    judged: KindResult
    eyes: KindResult | None  # face groups: the eyes seen in exactly the views where the truth shows them
    layout: KindResult | None  # two objects of different colours: layout right in every view


@dataclass(frozen=True)
class PriorReport:
    kinds: dict[str, KindResult]  # kind -> judged matches on held-out captions
    per_caption: dict[str, float]
    frechet: float  # judge-feature Fréchet distance, samples vs ground truth of the same captions
    frechet_floor: float  # the same between two independent ground-truth sets
    face_front_consistency: float  # share of camera-conditioned face samples whose eyes match the truth
    face_samples: int
    face_eyes_seen_by_azimuth: dict[str, float]  # azimuth -> share of samples with eyes judged visible
    face_eyes_truth_by_azimuth: dict[str, bool]
    recon_mse_image: dict[str, float]  # t -> L_rec with the image branch (empty text, λ_ip = 1)
    recon_mse_uncond: dict[str, float]  # t -> the same without the image
    text_steer: float  # ‖ε̂(y',I) − ε̂(y,I)‖ / ‖ε̂(y') − ε̂(y)‖ at t = 500
    images_per_second: float  # DDIM sampling speed at the report's batch
    views: int = 1  # views the prior denoises jointly
    multi_view: dict[str, GroupKindResult] | None = None  # kind -> jointly drawn groups (views > 1 only)

    @property
    def accuracy(self) -> dict[str, float]:
        return {k: v.rate for k, v in self.kinds.items()}


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) of feature sets [N, D] (Heusel et al. 2017, as FID).
    (Σ_a Σ_b)^½ has the eigenvalues of Σ_a^½ Σ_b Σ_a^½, which is symmetric, so no complex sqrtm is needed."""
    a64, b64 = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    cov_a, cov_b = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(cross).sum())


def _truth_renders(captions: list[str], rng: np.random.Generator, size: int) -> Tensor:
    """Ground-truth renders [N, 3, S, S] of ``captions`` from cameras drawn as a training row's are (view
    1 or view 2 of the dataset's camera distribution, with equal odds)."""
    views = sample_views(len(captions), rng, DatasetConfig())
    pick = rng.integers(2, size=len(captions))
    az, el = views[np.arange(len(captions)), pick, 0], views[np.arange(len(captions)), pick, 1]
    cams = Cameras.from_angles(torch.from_numpy(az), torch.from_numpy(el))
    return render_truth([parse_caption(c) for c in captions], cams, size).image


@torch.no_grad()
def prior_report(prior: Prior, judge: Judge, cfg: ReportConfig = ReportConfig(), progress=None
                 ) -> tuple[PriorReport, dict[str, Tensor]]:
    """The report and, per caption kind, the judged samples [N, 3, S, S] (for the PNG grids)."""
    tick = progress or (lambda _: None)
    caps = heldout_captions(cfg.pairs_per_relation)
    t0 = time.perf_counter()
    judged = judged_samples(prior, judge, caps, cfg.samples_per_kind, cfg.cfg, cfg.steps, cfg.seed)
    seconds = time.perf_counter() - t0
    kinds, per_caption, grids = {}, {}, {}
    sampled_captions: list[str] = []
    for kind in KINDS:
        rows = judged[kind]
        hits, n = sum(sum(m) for _, _, m in rows), sum(len(m) for _, _, m in rows)
        kinds[kind] = KindResult([c for c, _, _ in rows], hits, n, wilson_interval(hits, n))
        per_caption |= {c: sum(m) / len(m) for c, _, m in rows}
        grids[kind] = torch.cat([imgs for _, imgs, _ in rows])
        sampled_captions += [c for c, imgs, _ in rows for _ in range(len(imgs))]
        tick(f"{kind}: {hits}/{n}")
    n_samples = len(sampled_captions)

    rng = np.random.default_rng(cfg.seed)
    feats = judge.features(torch.cat(list(grids.values())))
    truth_a = judge.features(_truth_renders(sampled_captions, rng, prior.image_size))
    truth_b = judge.features(_truth_renders(sampled_captions, rng, prior.image_size))
    fd, floor = frechet_distance(feats, truth_a), frechet_distance(truth_b, truth_a)
    tick(f"Fréchet distance {fd:.2f} (floor {floor:.2f})")

    face = parse_caption(cfg.face_caption)
    truth = render_truth(face, Cameras.from_angles(list(FACE_AZIMUTHS), cfg.face_elevation), prior.image_size)
    truth_front = truth.front_visible().tolist()
    consistent, seen_by_az = [], {}
    for az, front in zip(FACE_AZIMUTHS, truth_front):
        imgs = sample(prior, cfg.face_caption, n=cfg.face_samples_per_azimuth, cfg=cfg.cfg, steps=cfg.steps,
                      seed=cfg.seed + int(az), camera=(az, cfg.face_elevation))
        seen = [r.front_visible for r in judge(imgs.cpu())]
        seen_by_az[f"{az:g}"] = sum(seen) / len(seen)
        consistent += [s == bool(front) for s in seen]
        tick(f"{cfg.face_caption} @ {az:g}")

    rec_img, rec_none, steer = _reconstruction(prior, cfg)
    views = views_of(prior).joint_views
    multi_view = None
    if views > 1:
        multi_view = {}
        for kind, rows in judged_groups(prior, judge, caps, cfg.groups_per_kind, cfg.cfg, cfg.steps,
                                        cfg.seed).items():
            verdicts = [v for v, _ in rows]
            caption_list = sorted({v.caption for v in verdicts})
            eyes = [v.eyes_ok for v in verdicts if v.eyes_ok is not None]
            layout = [v.layout_ok for v in verdicts if v.layout_ok is not None]
            multi_view[kind] = GroupKindResult(_kind_result(caption_list, [v.judged_ok for v in verdicts]),
                                               _kind_result(caption_list, eyes) if eyes else None,
                                               _kind_result(caption_list, layout) if layout else None)
            grids[f"mv {kind}"] = torch.cat([imgs for _, imgs in rows])
            tick(f"groups of {views} views, {kind}: {multi_view[kind].judged.hits}/{multi_view[kind].judged.n}")
    report = PriorReport(kinds, per_caption, fd, floor, sum(consistent) / len(consistent), len(consistent),
                         seen_by_az, {f"{a:g}": bool(f) for a, f in zip(FACE_AZIMUTHS, truth_front)}, rec_img,
                         rec_none, steer, n_samples / seconds, views, multi_view)
    return report, grids


def _reconstruction(prior: Prior, cfg: ReportConfig) -> tuple[dict[str, float], dict[str, float], float]:
    """L_rec (Eqs. 12-13) on ground-truth renders of held-out captions, from fixed noise; and the text
    steering ratio with the image at t = 500."""
    rng = np.random.default_rng(cfg.seed)
    specs = [s for s in all_specs() if is_heldout(s)]
    chosen = [specs[i] for i in rng.integers(len(specs), size=cfg.recon_images)]
    views = sample_views(cfg.recon_images, rng, DatasetConfig())
    cams = Cameras.from_angles(torch.from_numpy(views[:, 0, 0]), torch.from_numpy(views[:, 0, 1]))
    images = render_truth(chosen, cams, prior.image_size).image.to(prior.device)  # [N, 3, S, S]
    z = prior.encode(images)
    g = torch.Generator().manual_seed(cfg.seed)
    eps = torch.randn(z.shape, generator=g).to(z.device)
    with_image = [Condition("", img, 1.0) for img in images]
    without = [Condition("")] * len(images)
    out_img, out_none = {}, {}
    n = len(images)
    for t in RECON_TIMESTEPS:
        a = prior.alphas_cumprod[t]
        z_t = a.sqrt() * z + (1 - a).sqrt() * eps
        tt = torch.full((n,), t, dtype=torch.long, device=z.device)
        e = prior.predict_noise(torch.cat([z_t, z_t]), torch.cat([tt, tt]), with_image + without)
        for eh, out in zip(e.chunk(2), (out_img, out_none)):
            x0 = prior.decode((z_t - (1 - a).sqrt() * eh) / a.sqrt())  # Eq. 12
            out[str(t)] = float(((x0 - images) ** 2).mean())  # Eq. 13
    a = prior.alphas_cumprod[500]
    z_t = a.sqrt() * z + (1 - a).sqrt() * eps
    tt = torch.full((4 * n,), 500, dtype=torch.long, device=z.device)
    own = [s.caption for s in chosen]
    other = own[1:] + own[:1]
    rows = ([Condition(c, img, 1.0) for c, img in zip(own, images)] + [Condition(c, img, 1.0) for c, img in
            zip(other, images)] + [Condition(c) for c in own] + [Condition(c) for c in other])
    e_own_i, e_other_i, e_own, e_other = prior.predict_noise(torch.cat([z_t] * 4), tt, rows).chunk(4)
    steer = float((e_other_i - e_own_i).norm() / (e_other - e_own).norm().clamp_min(1e-12))
    return out_img, out_none, steer


def report_markdown(r: PriorReport, command: str) -> str:
    lines = [f"`{command}`", "",
             "| caption kind | held-out captions | judged samples matching | 95% interval | samples |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {len(v.captions)} | {v.rate:.0%} | [{v.ci95[0]:.0%}, {v.ci95[1]:.0%}] | {v.n} |"
              for k, v in r.kinds.items()]
    lines += ["", (f"Judge-feature Fréchet distance, samples vs ground truth of the same captions: {r.frechet:.2f} "
                   f"(ground truth vs ground truth: {r.frechet_floor:.2f}; ratio {r.frechet / max(r.frechet_floor, 1e-12):.2f})"),
              "", ("Camera-conditioned face samples whose eyes match the ground truth: "
                   f"{r.face_front_consistency:.0%} of {r.face_samples}"), "",
              "| azimuth | " + " | ".join(r.face_eyes_seen_by_azimuth) + " |",
              "|---|" + "---|" * len(r.face_eyes_seen_by_azimuth),
              "| eyes judged visible | " + " | ".join(f"{v:.0%}" for v in r.face_eyes_seen_by_azimuth.values()) + " |",
              "| eyes visible in truth | " + " | ".join("yes" if v else "no" for v in r.face_eyes_truth_by_azimuth.values())
              + " |", "",
              "| t | L_rec, empty text + image | empty text, no image |", "|---|---|---|"]
    lines += [f"| {t} | {r.recon_mse_image[t]:.4f} | {r.recon_mse_uncond[t]:.4f} |" for t in r.recon_mse_image]
    lines += ["", f"Text steering with the image at t = 500 (‖ε̂(y',I) − ε̂(y,I)‖ / ‖ε̂(y') − ε̂(y)‖): {r.text_steer:.2f}",
              "", f"Sampling: {r.images_per_second:.1f} images/s (DDIM with CFG, batch per caption)"]
    if r.multi_view:
        cell = lambda k: "–" if k is None else f"{k.rate:.0%} [{k.ci95[0]:.0%}, {k.ci95[1]:.0%}] of {k.n}"
        lines += ["", (f"Groups of {r.views} views drawn jointly, 360°/{r.views} apart (each view judged against the "
                       "truth from its camera; 95% intervals):"), "",
                  "| caption kind | right in every view | eyes where the truth has them | layout right in every view |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {cell(g.judged)} | {cell(g.eyes)} | {cell(g.layout)} |" for k, g in r.multi_view.items()]
    return "\n".join(lines) + "\n"


__all__ = ["GroupKindResult", "KindResult", "PriorReport", "ReportConfig", "frechet_distance", "prior_report", "report_markdown"]
