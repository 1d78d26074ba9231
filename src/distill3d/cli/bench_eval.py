"""``distill3d bench clip | t3bench``: score finished run directories with real evaluation models."""

from __future__ import annotations

import shlex
import sys

import click


def _command_line() -> str:
    return "distill3d " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--clip", "clip_source", default="openai/clip-vit-large-patch14", show_default=True,
              help="A local transformers CLIP folder, or a Hugging Face id already in the local cache.")
@click.option("--views", default=8, show_default=True, type=click.IntRange(1),
              help="Turntable views per run, evenly spaced in azimuth from the front.")
@click.option("--elevation", default=15.0, show_default=True, type=click.FloatRange(-89, 89))
@click.option("--size", default=224, show_default=True, type=click.IntRange(8), help="Render size in pixels.")
@click.option("--out", default="benchmarks/results/clip.json", show_default=True, type=click.Path(dir_okay=False))
def clip(runs: tuple[str, ...], clip_source: str, views: int, elevation: float, size: int, out: str) -> None:
    """Mean CLIP similarity between each run's prompt and its rendered views (JSON out)."""
    from dataclasses import asdict

    from distill3d.bench.clip_eval import ClipEvalConfig, ClipScorer, clip_score_run
    from distill3d.core.io import write_json_atomic

    device = _device()
    scorer = ClipScorer.load(clip_source, device)  # fails fast, before any rendering, when weights are missing
    cfg = ClipEvalConfig(views=views, elevation=elevation, size=size)
    scores = [clip_score_run(r, scorer, cfg, device) for r in runs]
    write_json_atomic(out, {"command": _command_line(), "clip": clip_source, "config": asdict(cfg),
                            "mean": sum(s.mean for s in scores) / len(scores), "runs": [asdict(s) for s in scores]})
    for s in scores:
        click.echo(f"{s.mean:.4f}  {s.run}  ({s.prompt})")
    click.echo(f"wrote {out}")


@click.command()
@click.argument("runs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--prompts", "prompt_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A prompt set (one a line, e.g. shared/prompts/t3bench_single.txt): every prompt counts, "
                   "and one without a run is scored on black images as T3Bench does.")
@click.option("--imagereward", default="~/.cache/ImageReward", show_default=True,
              help="Folder holding ImageReward.pt and med_config.json (from THUDM/ImageReward).")
@click.option("--size", default=512, show_default=True, type=click.IntRange(8), help="Render size (T3Bench: 512).")
@click.option("--mesh-resolution", default=128, show_default=True, type=click.IntRange(8),
              help="Marching-cubes grid used to measure each object's extent.")
@click.option("--out", "out_dir", default="benchmarks/results/t3bench", show_default=True,
              type=click.Path(file_okay=False))
def t3bench(runs: tuple[str, ...], prompt_file: str | None, imagereward: str, size: int, mesh_resolution: int,
            out_dir: str) -> None:
    """T3Bench's quality score (ImageReward over 162 icosphere views x 5 fields of view, regional
    convolution, 20 s + 50) of run directories; JSON and markdown out. The GPT-4 alignment score is not run."""
    from pathlib import Path

    from distill3d.bench.t3bench import ImageRewardScorer, T3BenchConfig, t3bench_quality, write_t3bench

    device = _device()
    scorer = ImageRewardScorer.load(imagereward, device)
    cfg = T3BenchConfig(size=size, mesh_resolution=mesh_resolution)
    result = t3bench_quality([Path(r) for r in runs], scorer, cfg, Path(prompt_file) if prompt_file else None,
                             device)
    write_t3bench(result, Path(out_dir), _command_line())
    click.echo(f"T3Bench quality {result.quality:.1f} over {len(result.prompts)} prompts")
    click.echo(f"wrote {out_dir}/results.json and results.md")
