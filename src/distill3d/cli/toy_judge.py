"""``distill3d toy judge-train | judge-report | judge``: the toy world's judge."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("judge-train")
@click.option("--data", "data_dirs", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Toy dataset directory (repeatable; both views of every scene are used).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Weights file to write (default: the shipped src/distill3d/weights/judge.safetensors).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, data and threads: same weights.")
@click.option("--steps", type=click.IntRange(1), default=6000, show_default=True)
@click.option("--batch", type=click.IntRange(8), default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="torch CPU threads.")
def judge_train(data_dirs: tuple[Path, ...], out: Path | None, seed: int, steps: int, batch: int, lr: float,
                threads: int) -> None:
    """Train the judge from scratch on ground-truth renders plus synthetic "nothing" images."""
    import time

    import torch
    from tqdm import tqdm

    from distill3d.toyworld.dataset import load_dataset
    from distill3d.toyworld.judge import DEFAULT_WEIGHTS, Judge, JudgeConfig
    from distill3d.toyworld.judge_train import JudgeTrainConfig, train_judge, training_images

    torch.set_num_threads(threads)
    out = DEFAULT_WEIGHTS if out is None else out
    data = training_images([load_dataset(d) for d in data_dirs])
    cfg = JudgeTrainConfig(steps=steps, batch=batch, lr=lr, seed=seed)
    click.echo(f"training the judge on {len(data.labels)} views from {len(data_dirs)} dataset(s) -> {out}")
    bar = tqdm(total=steps, desc="judge", unit="step")
    start = time.process_time()

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    net = train_judge(data, cfg, JudgeConfig(), on_step=on_step)
    bar.close()
    cpu_minutes = (time.process_time() - start) / 60
    Judge(net).save(out, extra={"train": {"seed": seed, "steps": steps, "batch": batch, "lr": lr,
                                          "threads": threads, "data": [str(d) for d in data_dirs],
                                          "cpu_minutes": round(cpu_minutes, 1)}})
    click.echo(f"wrote {out} ({cpu_minutes:.1f} CPU minutes)")


def _table_rows(clean, degraded) -> list[str]:
    names = [("recognised", "recognised"), ("count", "count"), ("relation", "relation"), ("shapes", "shapes"),
             ("colours", "colors"), ("objects (shape+colour)", "objects"), ("front visible", "front"),
             ("front visible (faces)", "front_faces"), ("all", "all")]
    rows = [f"{'attribute':<24}{'clean':>8}{'degraded':>10}"]
    rows += [f"{label:<24}{getattr(clean, f):>8.4f}{getattr(degraded, f):>10.4f}" for label, f in names]
    return rows


@click.command("judge-report")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Held-out ground-truth toy dataset (both views of each scene are judged).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Default: the shipped judge.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the report as JSON here.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the degradations and OOD inputs.")
@click.option("--ood-count", type=click.IntRange(1), default=256, show_default=True, help="Images per OOD kind.")
def judge_report(data_dir: Path, weights: Path | None, out: Path | None, seed: int, ood_count: int) -> None:
    """Accuracy per attribute on a dataset (clean and degraded) and behaviour on out-of-distribution inputs."""
    from dataclasses import asdict

    import torch

    from distill3d.core.io import write_json_atomic
    from distill3d.toyworld.dataset import load_dataset
    from distill3d.toyworld.judge import Judge
    from distill3d.toyworld.judge_eval import accuracy, degraded, eval_set, ood_behaviour

    torch.set_num_threads(1)
    judge = Judge.load(weights)
    data = eval_set(load_dataset(data_dir))
    clean = accuracy(judge, data.images, data.specs, data.fronts)
    rough = accuracy(judge, degraded(data.images, seed), data.specs, data.fronts)
    ood = ood_behaviour(judge, data.images, n=ood_count, seed=seed)
    click.echo(f"{clean.images} views of {data_dir}, min_confidence {judge.config.min_confidence}")
    for row in _table_rows(clean, rough):
        click.echo(row)
    click.echo(f"\n{'input':<16}{'trained on':>11}{'says nothing':>14}{'mean p(nothing)':>17}")
    for r in ood:
        click.echo(f"{r.kind:<16}{'yes' if r.trained else 'no':>11}{r.nothing_rate:>14.4f}{r.mean_p_nothing:>17.4f}")
    if out is not None:
        write_json_atomic(out, {"data": str(data_dir), "weights": str(weights or "shipped"), "seed": seed,
                                "min_confidence": judge.config.min_confidence, "clean": asdict(clean),
                                "degraded": asdict(rough), "ood": [asdict(r) for r in ood]})
        click.echo(f"wrote {out}")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Default: the shipped judge.")
@click.option("--caption", default=None, help="Compare each judgement with this caption.")
def judge(images: tuple[Path, ...], weights: Path | None, caption: str | None) -> None:
    """Say what each PNG shows (transparent pixels are put on white)."""
    import numpy as np
    import torch
    from PIL import Image

    from distill3d.core.errors import UserError, shorten
    from distill3d.toyworld.grammar import parse_caption
    from distill3d.toyworld.judge import Judge, match

    spec = parse_caption(caption) if caption is not None else None
    j = Judge.load(weights)
    for path in images:
        if not path.is_file():
            raise UserError(f"no image at {path}")
        try:
            rgba = Image.open(path).convert("RGBA")
        except (OSError, ValueError, Image.DecompressionBombError):
            raise UserError(f"{shorten(str(path))} is not an image PIL can read (PNG, JPEG, ...)") from None
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.float32) / 255.0
        result = j(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0]
        line = f"{path}: {result.describe()}"
        if result.confidence is not None:  # "nothing recognisable" comes with no confidence
            line += f" (confidence {result.confidence:.2f}"
            if any(o.shape == "face" for o in result.objects):
                line += f", front {'visible' if result.front_visible else 'hidden'} {result.front_confidence:.2f}"
            line += ")"
        click.echo(line)
        if spec is not None:
            m = match(result, spec)
            click.echo(f"  vs '{spec.caption}': shapes {m.shapes_ok}, colours {m.colors_ok}, objects {m.objects_ok}, "
                       f"relation {m.relation_ok}, all {m.all_ok}")
