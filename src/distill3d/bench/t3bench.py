"""T3Bench's quality score (He et al. 2023, arXiv:2310.02977) for distill3d runs.

What is reproduced, as THU-LYJ-Lab/T3Bench computes it (run_eval_quality.py and render/meshrender.py at
commit 6367462, read, not copied):
- cameras on the 162 vertices of a level-2 icosphere (``trimesh.creation.icosphere(subdivisions=2,
  radius=2.2)``) looking at the origin with +z up, each with 5 vertical fields of view pi/3, pi/4, pi/5,
  pi/6, pi/7.5; every vertex is used: there is no elevation filter, the lower hemisphere included;
- the object scaled so that its largest absolute mesh-vertex coordinate is 1 (we move the cameras to
  2.2 x that extent instead, which gives the same images), 512 x 512 renders on a black background;
- per vertex the best ImageReward-v1.0 ``model.score(prompt, image)`` over the 5 fields of view;
- "regional convolution": each vertex score replaced by the mean of itself and its 1-ring neighbours,
  3 times; the prompt's score is the top smoothed vertex score mapped to ``20 * s + 50``;
- a set's quality is the mean over its prompts; a prompt with no result is scored on black images.

Where distill3d differs, because it cannot do otherwise:
- it renders the representation itself (Gaussians or radiance field, unlit colours) where T3Bench renders
  the marching-cubes mesh flat-shaded under ambient light; the mesh is extracted only to measure the extent;
- T3Bench centres the mesh on its vertex mean; distill3d runs are optimised with cameras aimed at the
  origin, so the origin is kept as the centre (the vertex mean is reported as ``mesh_center``);
- ``Cameras`` stop at ±89° elevation, so the two pole vertices sit at ±89°, with the azimuth chosen so the
  image is oriented as T3Bench orients it there (its up vector switches to +y near the poles).

T3Bench's second score, alignment (BLIP-2 captions of 12 views merged and graded by GPT-4), needs GPT-4 and
is not computed here; nothing stands in for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from distill3d.bench.clip_eval import ImageScorer, run_prompt, to_uint8_images
from distill3d.core.cameras import MAX_ABS_ELEVATION, Cameras
from distill3d.core.errors import UserError
from distill3d.core.io import write_json_atomic, write_text_atomic
from distill3d.export.load import load_representation
from distill3d.export.mesh import extract_mesh
from distill3d.priors.weights import WeightsSpec, missing_message
from distill3d.scene.render import render

RADIUS = 2.2  # run_eval_quality.py / meshrender.py: Radius = 2.2, the object scaled to max |coordinate| = 1
SUBDIVISIONS = 2  # trimesh.creation.icosphere(subdivisions=2): 162 camera positions
FOVS_DEG = (180 / 3.0, 180 / 4.0, 180 / 5.0, 180 / 6.0, 180 / 7.5)  # meshrender.py: yfov = pi/3 ... pi/7.5
SMOOTHING_ROUNDS = 3  # run_eval_quality.py: "convolute scores on the icosphere for 3 times"
BACKGROUND = (0.0, 0.0, 0.0)  # meshrender.py: bg_color=[0, 0, 0]
IMAGEREWARD_WEIGHTS = WeightsSpec("ImageReward", "--imagereward", "a folder with ImageReward.pt and "
                                  "med_config.json from huggingface.co/THUDM/ImageReward")
IMAGEREWARD_HINT = "pip install image-reward"


def t3bench_score(smoothed_vertex_score: Tensor | float) -> Tensor | float:
    return smoothed_vertex_score * 20 + 50  # run_eval_quality.py: now_score = scores[idx] * 20 + 50


@dataclass(frozen=True)
class Icosphere:
    vertices: Tensor  # [V, 3] on the unit sphere
    faces: Tensor  # [F, 3] long

    def neighbors(self) -> list[list[int]]:
        """The 1-ring of every vertex (the vertices it shares an edge with), sorted."""
        ring: list[set[int]] = [set() for _ in range(len(self.vertices))]
        for a, b, c in self.faces.tolist():
            ring[a] |= {b, c}
            ring[b] |= {a, c}
            ring[c] |= {a, b}
        return [sorted(r) for r in ring]

    def adjacency(self) -> Tensor:
        """[V, V] 0/1 float matrix of the 1-ring."""
        adj = torch.zeros(len(self.vertices), len(self.vertices))
        for i, ring in enumerate(self.neighbors()):
            adj[i, ring] = 1.0
        return adj


def icosphere(subdivisions: int = SUBDIVISIONS) -> Icosphere:
    """The unit icosphere trimesh builds: a regular icosahedron (vertices (0, ±1, ±phi) cyclically), each
    face split in four at its edge midpoints, the vertices pushed back onto the sphere after every split.
    10 * 4^k + 2 vertices."""
    phi = (1 + math.sqrt(5)) / 2
    base = [(-1, phi, 0), (1, phi, 0), (-1, -phi, 0), (1, -phi, 0), (0, -1, phi), (0, 1, phi),
            (0, -1, -phi), (0, 1, -phi), (phi, 0, -1), (phi, 0, 1), (-phi, 0, -1), (-phi, 0, 1)]
    verts = [torch.tensor(v, dtype=torch.float64) for v in base]
    verts = [v / v.norm() for v in verts]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    for _ in range(subdivisions):
        midpoint: dict[tuple[int, int], int] = {}  # edge -> index of its midpoint vertex
        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = (_midpoint(verts, midpoint, u, w) for u, w in ((a, b), (b, c), (c, a)))
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    return Icosphere(torch.stack(verts).float(), torch.tensor(faces, dtype=torch.long))


def _midpoint(verts: list[Tensor], midpoint: dict[tuple[int, int], int], a: int, b: int) -> int:
    """Index of the edge (a, b)'s midpoint projected onto the unit sphere, added to ``verts`` once."""
    key = (min(a, b), max(a, b))
    if key not in midpoint:
        m = verts[a] + verts[b]
        verts.append(m / m.norm())
        midpoint[key] = len(verts) - 1
    return midpoint[key]


def vertex_angles(vertices: Tensor) -> tuple[Tensor, Tensor]:
    """Azimuth and elevation (degrees) of unit vectors [V, 3] in distill3d's orbit convention, elevation
    clamped to ±89° at the poles with the azimuth that keeps T3Bench's image orientation there. [V], [V]"""
    az = torch.rad2deg(torch.atan2(vertices[:, 1], vertices[:, 0]))
    el = torch.rad2deg(torch.asin(vertices[:, 2].clamp(-1, 1)))
    # meshrender.py uses up = +y when |forward . z| >= 0.99: the image's right is +x from above (north pole),
    # -x from below; a camera at +-89 deg with azimuth 270 / 90 is oriented the same way.
    north, south = el > MAX_ABS_ELEVATION, el < -MAX_ABS_ELEVATION
    az = torch.where(north, torch.full_like(az, 270.0), torch.where(south, torch.full_like(az, 90.0), az))
    return az, el.clamp(-MAX_ABS_ELEVATION, MAX_ABS_ELEVATION)


def icosphere_cameras(sphere: Icosphere, distance: float, fovs: Sequence[float] = FOVS_DEG) -> Cameras:
    """Every vertex x every field of view, vertex-major: camera k is vertex k // F with fov k % F. [V * F]"""
    az, el = vertex_angles(sphere.vertices)
    f = len(fovs)
    return Cameras.from_angles(az.repeat_interleave(f), el.repeat_interleave(f), distance,
                               torch.tensor(list(fovs), dtype=torch.float32).repeat(len(az)))


def regional_convolution(scores: Tensor, adjacency: Tensor, rounds: int = SMOOTHING_ROUNDS) -> Tensor:
    """Each vertex score -> mean of itself and its 1-ring, ``rounds`` times (T3Bench's regional convolution,
    as a matrix: (I + A) / (1 + deg)). scores [V], adjacency [V, V] -> [V]"""
    ring = torch.eye(len(scores), dtype=scores.dtype) + adjacency.to(scores.dtype)
    step = ring / ring.sum(dim=1, keepdim=True)
    for _ in range(rounds):
        scores = step @ scores
    return scores


def regional_convolution_reference(scores: Sequence[float], neighbors: list[list[int]],
                                   rounds: int = SMOOTHING_ROUNDS) -> list[float]:
    """The slow twin of :func:`regional_convolution`, one vertex at a time as run_eval_quality.py loops."""
    scores = list(scores)
    for _ in range(rounds):
        scores = [(scores[i] + sum(scores[n] for n in ring)) / (len(ring) + 1) for i, ring in enumerate(neighbors)]
    return scores


@dataclass(frozen=True)
class PromptQuality:
    prompt: str
    run: str | None  # the run directory; None when the prompt has no run (scored on black images)
    status: str  # "scored", "missing" (no run) or "empty" (no surface to measure: black images)
    score: float  # 20 * (best smoothed vertex score) + 50
    best_vertex: int
    best_azimuth: float
    best_elevation: float
    extent: float | None  # largest |coordinate| of the extracted mesh; cameras sit at RADIUS * extent
    mesh_center: list[float] | None  # the mesh's vertex mean (T3Bench would centre on it; we keep the origin)
    vertex_scores: list[float]  # [V] best score over the fields of view
    smoothed_scores: list[float]  # [V] after the regional convolution


def aggregate(view_scores: Tensor, sphere: Icosphere) -> tuple[Tensor, Tensor, int, float]:
    """view_scores [V, F] -> vertex scores [V] (max over F), smoothed [V], best vertex, prompt score."""
    vertex = view_scores.max(dim=1).values  # run_eval_quality.py: scores[idx] = max(scores[idx], reward)
    smoothed = regional_convolution(vertex.double(), sphere.adjacency())
    best = int(torch.argmax(smoothed))  # the top-1 vertex after smoothing
    return vertex, smoothed, best, float(t3bench_score(smoothed[best]))


@dataclass(frozen=True)
class T3BenchConfig:
    size: int = 512  # meshrender.py: OffscreenRenderer(512, 512)
    mesh_resolution: int = 128  # marching-cubes grid used only to measure the object's extent
    chunk: int = 5  # views rendered at once (5 = one vertex's fields of view)


def _quality(prompt: str, run: str | None, status: str, view_scores: Tensor, sphere: Icosphere,
             extent: float | None = None, center: list[float] | None = None) -> PromptQuality:
    vertex, smoothed, best, score = aggregate(view_scores, sphere)
    az, el = vertex_angles(sphere.vertices[best:best + 1])
    return PromptQuality(prompt, run, status, score, best, float(az), float(el), extent, center,
                         vertex.tolist(), smoothed.tolist())


@torch.no_grad()
def score_black(prompt: str, scorer: ImageScorer, config: T3BenchConfig, sphere: Icosphere,
                run: str | None = None, status: str = "missing") -> PromptQuality:
    """A prompt without a result: every view is black, as meshrender.py writes when the mesh fails to load
    (every view is the same image, so it is scored once)."""
    black = torch.zeros(1, 3, config.size, config.size)
    s = scorer(prompt, black).cpu().reshape(())
    return _quality(prompt, run, status, s.expand(len(sphere.vertices), len(FOVS_DEG)), sphere)


@torch.no_grad()
def score_run(run_dir: str | os.PathLike[str], scorer: ImageScorer, config: T3BenchConfig = T3BenchConfig(),
              sphere: Icosphere | None = None, device: str = "cpu") -> PromptQuality:
    """T3Bench's quality score of one run directory against its own prompt."""
    sphere = sphere or icosphere()
    prompt = run_prompt(run_dir)
    rep = load_representation(run_dir).to(device).eval()
    try:
        mesh = extract_mesh(rep, resolution=config.mesh_resolution)
    except UserError:  # nothing above the density threshold: no surface, so no mesh T3Bench could load
        return score_black(prompt, scorer, config, sphere, run=str(run_dir), status="empty")
    extent = float(abs(mesh.vertices).max())
    cams = icosphere_cameras(sphere, RADIUS * extent)
    scores = torch.cat([scorer(prompt, render(rep, cams[i:i + config.chunk], config.size,
                                              background=BACKGROUND).image.clamp(0, 1)).cpu()
                        for i in range(0, len(cams), config.chunk)])  # [V * F]
    return _quality(prompt, str(run_dir), "scored", scores.reshape(len(sphere.vertices), len(FOVS_DEG)), sphere,
                    extent, [float(c) for c in mesh.vertices.mean(axis=0)])


@dataclass(frozen=True)
class T3BenchResult:
    prompt_set: str | None  # the prompt file, or None when each run is scored against its own prompt
    quality: float  # mean prompt score over the set
    prompts: list[PromptQuality]


def match_runs(runs: Sequence[Path], prompts: Sequence[str]) -> dict[str, Path]:
    """Which run answers which prompt of a set; a run outside the set or two runs for a prompt is an error."""
    by_prompt: dict[str, Path] = {}
    wanted = set(prompts)
    for run in runs:
        p = run_prompt(run)
        if p not in wanted:
            raise UserError(f"run {run} has prompt {p!r}, which is not in the prompt set")
        if p in by_prompt:
            raise UserError(f"runs {by_prompt[p]} and {run} share the prompt {p!r}: score one method at a time")
        by_prompt[p] = run
    return by_prompt


def t3bench_quality(runs: Sequence[Path], scorer: ImageScorer, config: T3BenchConfig = T3BenchConfig(),
                    prompt_file: Path | None = None, device: str = "cpu") -> T3BenchResult:
    """Score runs T3Bench-style. With ``prompt_file`` (one prompt a line, e.g. shared/prompts/t3bench_*.txt)
    every prompt of the set counts and one without a run is scored on black images; without it, each run
    is scored against its own prompt and the mean is over the runs."""
    sphere = icosphere()
    if prompt_file is None:
        scored = [score_run(r, scorer, config, sphere, device) for r in runs]
    else:
        prompts = [p.strip() for p in Path(prompt_file).read_text(encoding="utf-8").splitlines() if p.strip()]
        if not prompts:
            raise UserError(f"{prompt_file} holds no prompts")
        found = match_runs(runs, prompts)
        scored = [score_run(found[p], scorer, config, sphere, device) if p in found
                  else score_black(p, scorer, config, sphere) for p in prompts]
    if not scored:
        raise UserError("no runs to score: pass run directories (or --prompts to score a whole set)")
    return T3BenchResult(str(prompt_file) if prompt_file else None,
                         sum(q.score for q in scored) / len(scored), scored)


def write_t3bench(result: T3BenchResult, out_dir: Path, command: str) -> None:
    """results.json (everything) and results.md (one row per prompt) in ``out_dir``, written atomically."""
    write_json_atomic(out_dir / "results.json", {"command": command, **asdict(result)})
    views = f"{len(FOVS_DEG)} fields of view x {len(result.prompts[0].vertex_scores)} icosphere vertices"
    lines = [f"T3Bench quality (ImageReward, {views}, {SMOOTHING_ROUNDS} smoothing rounds): **{result.quality:.1f}**",
             f"over {len(result.prompts)} prompts" + (f" of {result.prompt_set}" if result.prompt_set else ""),
             "", "Alignment (GPT-4 grading of merged BLIP-2 captions) is not computed.", "",
             f"`{command}`", "", "| prompt | score | status | best view (az, el) | run |", "|---|---|---|---|---|"]
    lines += [f"| {q.prompt} | {q.score:.1f} | {q.status} | {q.best_azimuth:.0f}°, {q.best_elevation:.0f}° "
              f"| {q.run or '-'} |" for q in result.prompts]
    write_text_atomic(out_dir / "results.md", "\n".join(lines) + "\n")


class ImageRewardScorer:
    """ImageReward-v1.0 (``pip install image-reward``) as an :data:`ImageScorer`: ``model.score(prompt, image)``
    on each view as an 8-bit image, as run_eval_quality.py calls it on the PNGs it rendered."""

    def __init__(self, model) -> None:
        self.model = model

    @staticmethod
    def load(folder: str, device: str = "cpu") -> ImageRewardScorer:
        """From ``folder`` holding ImageReward.pt and med_config.json; a one-line ``UserError`` when the
        package or the files are missing."""
        try:
            import ImageReward as RM
        except ImportError:
            raise UserError(f"T3Bench's quality score needs ImageReward, which is not installed: "
                            f"{IMAGEREWARD_HINT}", exit_code=1) from None
        path = Path(folder).expanduser()
        if not all((path / f).is_file() for f in ("ImageReward.pt", "med_config.json")):
            raise UserError(missing_message(IMAGEREWARD_WEIGHTS, folder), exit_code=1)
        return ImageRewardScorer(RM.load(str(path / "ImageReward.pt"), device=device, download_root=str(path)))

    @torch.no_grad()
    def __call__(self, prompt: str, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [0, 1] -> ImageReward scores [B]"""
        return torch.tensor([float(self.model.score(prompt, im)) for im in to_uint8_images(images)])
