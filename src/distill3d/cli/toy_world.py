"""``distill3d toy render | dataset | words``: ground truth from the toy world."""

from __future__ import annotations

import click


def _parse_angles(text: str, what: str) -> list[float]:
    from distill3d.core.errors import UserError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{what} must be comma-separated numbers in degrees, got {text!r}") from None
    if not values:
        raise UserError(f"--{what} is empty")
    return values


@click.command()
@click.argument("caption")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--azimuths", default="0,45,90,135,180,225,270,315", show_default=True,
              help="Comma-separated azimuths in degrees (0 = front, on +x).")
@click.option("--elevation", default=20.0, show_default=True, help="Elevation in degrees.")
@click.option("--size", default=64, show_default=True, type=click.IntRange(8, 512), help="Image side in pixels.")
def render(caption: str, out_dir: str, azimuths: str, elevation: float, size: int) -> None:
    """Render ground-truth views of CAPTION (e.g. "a red cube on top of a blue sphere")."""
    from pathlib import Path

    import numpy as np
    import torch
    from PIL import Image

    from distill3d.core.cameras import MAX_ABS_ELEVATION, Cameras
    from distill3d.core.errors import UserError, check_out_path, shorten
    from distill3d.core.io import atomic_path, write_json_atomic
    from distill3d.toyworld.grammar import parse_caption
    from distill3d.toyworld.render import render as render_gt

    spec = parse_caption(caption)
    az = _parse_angles(azimuths, "azimuths")
    if abs(elevation) > MAX_ABS_ELEVATION:
        raise UserError(f"--elevation must lie within ±{MAX_ABS_ELEVATION} degrees")
    root = Path(out_dir)
    check_out_path("--out", root, folder=True)
    taken = [n for n in ["views.png", "scene.json", *(f"view_{a:g}.png" for a in az)] if (root / n).exists()]
    if taken:  # e.g. a run directory's own views.png: never overwritten
        raise UserError(f"{shorten(str(root))} already holds {taken[0]}; choose another --out (files here are "
                        f"never overwritten)")
    torch.set_num_threads(1)
    out = render_gt(spec, Cameras.from_angles(az, elevation), size)
    pixels = (out.image.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    for a, img in zip(az, pixels):
        with atomic_path(root / f"view_{a:g}.png") as tmp:
            Image.fromarray(img).save(tmp)
    with atomic_path(root / "views.png") as tmp:
        Image.fromarray(np.concatenate(list(pixels), axis=1)).save(tmp)
    write_json_atomic(root / "scene.json", {"caption": spec.caption, "azimuths": az, "elevation": elevation,
                                            "size": size, "eye_pixels": out.eye_pixels.tolist()})
    click.echo(f"wrote {len(az)} views of '{spec.caption}' to {root}")


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset directory.")
@click.option("--count", default=1024, show_default=True, type=click.IntRange(1), help="Number of scenes.")
@click.option("--size", default=32, show_default=True, type=click.IntRange(8, 256), help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Seed; the same seed gives the same dataset.")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "heldout", "all"]),
              help="Which captions: those the prior trains on, the held-out ones, or all.")
@click.option("--shard-size", default=1024, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Render processes.")
@click.option("--front-bias", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Share of first views drawn near the front (N(0, 45°)) instead of uniformly in azimuth.")
@click.option("--kind-weights", default="0.16,0.14,0.35,0.35", show_default=True,
              help="Shares of the caption kinds single, face, on top of, next to.")
@click.option("--views", "group_views", default=0, show_default=True, type=click.IntRange(0, 16),
              help="Also render a group of this many views per scene, 360°/views apart from a random azimuth "
                   "at one random elevation (the multi-view prior trains on --views 4); 0: none.")
def dataset(out_dir: str, count: int, size: int, seed: int, split: str, shard_size: int, workers: int,
            front_bias: float, kind_weights: str, group_views: int) -> None:
    """Build (or resume) a toy-world dataset: captions, two views per scene (and a group of --views views),
    cameras."""
    from distill3d.core.errors import UserError
    from distill3d.toyworld.dataset import DatasetConfig, build_dataset

    try:
        weights = tuple(float(w) for w in kind_weights.split(","))
    except ValueError:
        raise UserError(f"--kind-weights takes four comma-separated numbers, got {kind_weights!r}") from None
    cfg = DatasetConfig(count=count, size=size, seed=seed, split=split, shard_size=shard_size,
                        azimuth_front_bias=front_bias, kind_weights=weights, group_views=group_views)
    root = build_dataset(out_dir, cfg, workers=workers)
    click.echo(f"dataset of {count} scenes at {size}px in {root}")


@click.command()
def words() -> None:
    """List the words the toy world's captions may use."""
    from distill3d.toyworld.grammar import COLOR_NAMES, RELATIONS, SHAPES

    click.echo(f"shapes: {', '.join(SHAPES)}")
    click.echo(f"colours: {', '.join(COLOR_NAMES)}")
    click.echo(f"relations: {', '.join(RELATIONS)}")
    click.echo("captions: 'a <colour> <shape>' or 'a <colour> <shape> <relation> a <colour> <shape>'")
