"""Toy-world datasets on disk: captions, two views of each scene, their cameras.

Format (a directory):
- ``meta.json``, written once every shard exists (``build.json`` holds the same while a build runs): ``{"format": "distill3d-toy/1", "size", "count", "seed", "split", "shard_size",
  "shards": [file names], "distance", "fov", "azimuth_front_bias", "elevation_range"}``
- ``shard_NNNNN.npz`` (numpy, no pickles), each with ``n`` scenes:
  ``images`` uint8 [n, 3, S, S] (view 1), ``images2`` uint8 [n, 3, S, S] (view 2 of the same scene),
  ``captions`` unicode [n], ``cameras`` float32 [n, 2, 2] ((azimuth, elevation) in degrees of views 1
  and 2), ``eye_pixels`` int32 [n, 2] (pixels that see the face's eyes in each view; 0 without a face).
  With ``group_views`` = G > 0 (for the multi-view prior), also a group of G views of the same scene, as
  MVDream renders its training data: azimuths 360°/G apart from a uniformly random start, one random
  elevation for the group: ``group_images`` uint8 [n, G, 3, S, S], ``group_cameras`` float32 [n, G, 2],
  ``group_eye_pixels`` int32 [n, G]. (``meta.json`` lists ``group_views`` only when it is not 0, so the
  datasets written before it existed keep their configuration.)

Shard ``i`` depends only on ``(seed, i)``, so a build is deterministic, resumable (finished shards are
kept) and can run shards in parallel processes. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distill3d.core.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_DEG, Cameras
from distill3d.core.errors import UserError
from distill3d.core.io import atomic_path, write_json_atomic
from distill3d.toyworld.grammar import SceneSpec, all_specs, is_heldout
from distill3d.toyworld.render import render

FORMAT = "distill3d-toy/1"
#: Caption kinds, in the order of ``DatasetConfig.kind_weights``.
KINDS = ("single", "face", "on top of", "next to")
SPLITS = ("train", "heldout", "all")


@dataclass(frozen=True)
class DatasetConfig:
    count: int = 1024
    size: int = 32
    seed: int = 0
    split: str = "train"  # which captions: "train" (not held out), "heldout", or "all"
    shard_size: int = 1024
    azimuth_front_bias: float = 0.5  # share of first views drawn near the front (N(0, 45°)) not uniformly
    elevation_range: tuple[float, float] = (-5.0, 45.0)
    #: Share of each caption kind, in the order of ``KINDS`` (single, face, on top of, next to): weighted
    #: toward two-object scenes, the hard case for binding (the first prior used 0.25/0.10/0.325/0.325).
    kind_weights: tuple[float, float, float, float] = (0.16, 0.14, 0.35, 0.35)
    #: Views of the group rendered per scene besides the two views (360°/G apart from a random azimuth, one
    #: random elevation; the multi-view prior trains on groups of 4); 0: no group.
    group_views: int = 0

    def __post_init__(self) -> None:
        if len(self.kind_weights) != len(KINDS) or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise UserError(f"kind_weights needs {len(KINDS)} non-negative shares ({', '.join(KINDS)})")
        if not 0 <= self.group_views <= 16:
            raise UserError(f"group_views must be within [0, 16], got {self.group_views}")


@dataclass(frozen=True)
class ToyData:
    images: Tensor  # [N, 3, S, S] uint8
    images2: Tensor  # [N, 3, S, S] uint8
    captions: list[str]
    cameras: Tensor  # [N, 2, 2] float32: (azimuth, elevation) of views 1 and 2
    eye_pixels: Tensor  # [N, 2] int32
    size: int
    group_images: Tensor | None = None  # [N, G, 3, S, S] uint8, a group of G views 360°/G apart; None: no groups
    group_cameras: Tensor | None = None  # [N, G, 2] float32 (azimuth, elevation) of the group's views
    group_eye_pixels: Tensor | None = None  # [N, G] int32

    def __len__(self) -> int:
        return len(self.captions)


def specs_for_split(split: str) -> dict[str, list[SceneSpec]]:
    """The grammar's scenes of a split, grouped by kind."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    keep = {"train": lambda s: not is_heldout(s), "heldout": is_heldout, "all": lambda s: True}[split]
    groups: dict[str, list[SceneSpec]] = {k: [] for k in KINDS}
    for spec in all_specs():
        if keep(spec):
            groups[spec.kind].append(spec)
    return groups


def sample_scenes(n: int, rng: np.random.Generator, split: str = "train",
                  kind_weights: tuple[float, ...] = DatasetConfig.kind_weights) -> list[SceneSpec]:
    groups = specs_for_split(split)
    weights = dict(zip(KINDS, kind_weights, strict=True))
    kinds = [k for k in KINDS if groups[k] and weights[k] > 0]
    p = np.array([weights[k] for k in kinds])
    chosen = rng.choice(len(kinds), size=n, p=p / p.sum())
    return [groups[kinds[k]][rng.integers(len(groups[kinds[k]]))] for k in chosen]


def sample_views(n: int, rng: np.random.Generator, cfg: DatasetConfig) -> np.ndarray:
    """(azimuth, elevation) of two views per scene [n, 2, 2]; view 1 front-biased, view 2 uniform."""
    front = rng.random(n) < cfg.azimuth_front_bias
    az1 = np.where(front, rng.normal(0.0, 45.0, n), rng.uniform(0.0, 360.0, n)) % 360.0
    az2 = rng.uniform(0.0, 360.0, n)
    el = rng.uniform(*cfg.elevation_range, size=(n, 2))
    return np.stack([np.stack([az1, el[:, 0]], -1), np.stack([az2, el[:, 1]], -1)], axis=1).astype(np.float32)


def sample_group_views(n: int, views: int, rng: np.random.Generator, cfg: DatasetConfig) -> np.ndarray:
    """(azimuth, elevation) of a group of ``views`` views per scene [n, views, 2]: azimuths 360°/views apart
    from a uniform start, one elevation (uniform in ``elevation_range``) per group."""
    start = rng.uniform(0.0, 360.0, n)
    el = rng.uniform(*cfg.elevation_range, size=n)
    az = (start[:, None] + 360.0 / views * np.arange(views)[None]) % 360.0
    return np.stack([az, np.broadcast_to(el[:, None], az.shape)], axis=-1).astype(np.float32)


def _to_uint8(images: Tensor) -> np.ndarray:
    return (images * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def build_shard(cfg: DatasetConfig, index: int, n: int) -> dict[str, np.ndarray]:
    """Scenes and renders of shard ``index`` (n scenes), a function of (cfg.seed, index) only."""
    rng = np.random.default_rng([cfg.seed, index])
    specs = sample_scenes(n, rng, cfg.split, cfg.kind_weights)
    views = sample_views(n, rng, cfg)
    out: dict[str, np.ndarray] = {"captions": np.array([s.caption for s in specs])}
    eyes = []
    for v, key in ((0, "images"), (1, "images2")):
        cams = Cameras.from_angles(torch.from_numpy(views[:, v, 0]), torch.from_numpy(views[:, v, 1]))
        r = render(specs, cams, cfg.size)
        out[key] = _to_uint8(r.image)
        eyes.append(r.eye_pixels.numpy().astype(np.int32))
    out["cameras"] = views
    out["eye_pixels"] = np.stack(eyes, axis=1)
    if cfg.group_views:  # drawn after everything above, so the two views do not change with the option
        g = cfg.group_views
        group = sample_group_views(n, g, rng, cfg)
        flat = torch.from_numpy(group.reshape(n * g, 2))
        cams = Cameras.from_angles(flat[:, 0], flat[:, 1])
        r = render([spec for spec in specs for _ in range(g)], cams, cfg.size)
        out["group_images"] = _to_uint8(r.image).reshape(n, g, 3, cfg.size, cfg.size)
        out["group_cameras"] = group
        out["group_eye_pixels"] = r.eye_pixels.numpy().astype(np.int32).reshape(n, g)
    return out


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}.npz"


def _write_shard(args: tuple[DatasetConfig, str, int, int]) -> str:
    cfg, root, index, n = args
    torch.set_num_threads(1)  # one process per core beats threads for this renderer
    arrays = build_shard(cfg, index, n)
    path = Path(root) / _shard_name(index)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path.name


def _meta(cfg: DatasetConfig, shards: list[str]) -> dict:
    meta = {"format": FORMAT, **asdict(cfg), "shards": shards, "distance": DEFAULT_DISTANCE,
            "fov": DEFAULT_FOV_DEG}
    meta["elevation_range"] = list(cfg.elevation_range)
    meta["kind_weights"] = list(cfg.kind_weights)
    if not cfg.group_views:
        del meta["group_views"]
    return meta


def build_dataset(root: str | os.PathLike[str], cfg: DatasetConfig, workers: int = 1,
                  progress: bool = True) -> Path:
    """Write (or finish) a dataset at ``root``; finished shards of the same config are kept."""
    from tqdm import tqdm

    root = Path(root)
    sizes = [min(cfg.shard_size, cfg.count - i) for i in range(0, cfg.count, cfg.shard_size)]
    names = [_shard_name(i) for i in range(len(sizes))]
    meta = _meta(cfg, names)
    for existing in (root / "meta.json", root / "build.json"):
        if existing.exists() and json.loads(existing.read_text()) != meta:
            raise UserError(f"{root} holds a dataset with another configuration; choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    todo = [(cfg, str(root), i, n) for i, n in enumerate(sizes) if not (root / names[i]).exists()]
    write_json_atomic(root / "build.json", meta)
    bar = tqdm(total=len(sizes), initial=len(sizes) - len(todo), desc="shards", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_write_shard, todo):
                bar.update(1)
    else:
        for job in todo:
            _write_shard(job)
            bar.update(1)
    bar.close()
    write_json_atomic(root / "meta.json", meta)
    (root / "build.json").unlink()
    return root


def load_dataset(root: str | os.PathLike[str]) -> ToyData:
    """Load a whole dataset into memory (uint8 images)."""
    root = Path(root)
    meta_path = root / "meta.json"
    if not meta_path.exists():
        raise UserError(f"no toy dataset at {root} (meta.json missing); build one with 'distill3d toy dataset'")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not a {FORMAT} dataset")
    keys = ("images", "images2", "captions", "cameras", "eye_pixels")
    if meta.get("group_views", 0):
        keys += ("group_images", "group_cameras", "group_eye_pixels")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for name in meta["shards"]:
        path = root / name
        if not path.exists():
            raise UserError(f"{path} is missing; finish the dataset by running the same 'distill3d toy dataset' again")
        with np.load(path, allow_pickle=False) as z:
            for k, chunks in parts.items():
                chunks.append(z[k])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    group = {k: torch.from_numpy(v) for k, v in cat.items() if k.startswith("group_")}
    return ToyData(
        images=torch.from_numpy(cat["images"]), images2=torch.from_numpy(cat["images2"]),
        captions=[str(c) for c in cat["captions"]], cameras=torch.from_numpy(cat["cameras"]),
        eye_pixels=torch.from_numpy(cat["eye_pixels"]), size=int(meta["size"]), **group,
    )
