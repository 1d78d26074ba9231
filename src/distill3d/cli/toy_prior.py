"""``distill3d toy train`` and ``distill3d toy sample``: train the embedded toy prior, draw from it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Toy dataset directory (from `distill3d toy dataset`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Checkpoint directory.")
@click.option("--steps", type=click.IntRange(1), default=7000, show_default=True,
              help="Train until this step (the cosine decay ends here).")
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True,
              help="After warm-up: cosine decay to lr x 0.05 at --steps, or constant.")
@click.option("--loss-weighting", type=click.Choice(["min-snr", "uniform"]), default="min-snr",
              show_default=True, help="min-SNR-5 weighting (Hang et al. 2023) or DDPM's L_simple.")
@click.option("--text-encoder", type=click.Choice(["objects", "words"]), default="objects", show_default=True,
              help="Object tokens parsed from the caption, or word tokens through a small transformer.")
@click.option("--prediction", type=click.Choice(["eps", "v"]), default="eps", show_default=True,
              help="Network target: the noise ε or v (Salimans & Ho 2022).")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True)
@click.option("--image-view", type=click.Choice(["same", "other"]), default="same", show_default=True,
              help="Condition image: the view being denoised, or the scene's other view.")
@click.option("--p-drop-text", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Probability of dropping the caption (classifier-free dropout).")
@click.option("--p-drop-image", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of dropping the image condition.")
@click.option("--p-drop-camera", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Probability of dropping the camera.")
@click.option("--eval-captions", type=click.IntRange(0), default=4, show_default=True,
              help="Held-out captions per kind judged at each checkpoint (0: none).")
@click.option("--views", type=click.IntRange(1, 16), default=None,
              help="Train the multi-view network: self-attention across groups of this many views of one scene "
                   "(MVDream's 3D self-attention; the dataset needs `toy dataset --views N`); with --init, the "
                   "given weights are inflated unchanged (default: --init's, else 1).")
@click.option("--camera-text", is_flag=True,
              help="Modulate the text tokens by the camera (FiLM, zero-initialised), so that cross-attention can "
                   "place each object by viewpoint; with --init, the given weights load unchanged.")
@click.option("--p-single-view", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Multi-view network only: share of scenes trained as one single view.")
@click.option("--resume", is_flag=True,
              help="Continue from the checkpoint in --out (the options above may change between phases).")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--checkpoint-minutes", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Checkpoint and evaluate this often.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop with a checkpoint after this wall time.")
@click.option("--stop-at", type=click.IntRange(1), default=None,
              help="Stop with a checkpoint at this step, the schedule still ending at --steps (--resume continues).")
@click.option("--init", "init_weights", default=None,
              help="Fine-tune: start from these weights (a .safetensors with its .json, or a prior's name: "
                   "toy, toy-words, toy-mv); the model options above are then taken from it.")
@click.option("--export", "export_path", type=click.Path(path_type=Path), default=None,
              help="After training, write the EMA weights (fp16) here, e.g. "
                   "src/distill3d/weights/toy_prior.safetensors.")
def train(data_dir: Path, out: Path, steps: int, batch: int, seed: int, lr: float, lr_schedule: str,
          loss_weighting: str, text_encoder: str, prediction: str, ema_decay: float, image_view: str,
          p_drop_text: float, p_drop_image: float, p_drop_camera: float, eval_captions: int, views: int | None,
          camera_text: bool, p_single_view: float, resume: bool,
          threads: int | None, checkpoint_minutes: float, max_minutes: float | None, stop_at: int | None,
          init_weights: str | None, export_path: Path | None) -> None:
    """Train the embedded toy prior on a toy-world dataset (CUDA when available). The progress bar
    shows the loss and, at each checkpoint, the judged accuracy on held-out captions; out/log.jsonl
    keeps every evaluation against wall time."""
    import torch

    from distill3d.core.errors import UserError
    from distill3d.priors.toy.model import ToyUNetConfig, with_camera_text, with_views
    from distill3d.priors.toy.train import TrainConfig, export_ema
    from distill3d.priors.toy.train import train as run_training
    from distill3d.toyworld.dataset import load_dataset
    from distill3d.toyworld.grammar import VOCABULARY
    from distill3d.toyworld.judge import Judge

    if threads is not None:
        torch.set_num_threads(threads)
    data = load_dataset(data_dir)
    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, lr_schedule=lr_schedule, loss_weighting=loss_weighting,
                      ema_decay=ema_decay, image_view=image_view, seed=seed, p_drop_text=p_drop_text,
                      p_drop_image=p_drop_image, p_drop_camera=p_drop_camera, eval_captions=eval_captions,
                      p_single_view=p_single_view, checkpoint_minutes=checkpoint_minutes, max_minutes=max_minutes)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    click.echo(f"training on {device}: {len(data.captions)} scenes at {data.size} px -> {out}")
    model_cfg = ToyUNetConfig(vocabulary=tuple(VOCABULARY), image_size=data.size, text_encoder=text_encoder,
                              prediction=prediction, views=views or 1, camera_text=camera_text)
    init = None
    if init_weights is not None and not resume:
        from distill3d.priors.toy.prior import ToyPrior

        init = ToyPrior.load(init_weights).model  # a named prior (toy, toy-words, toy-mv) or a weights file
        if init.config.image_size != data.size:
            raise UserError(f"--init {init_weights} is a {init.config.image_size} px model; the dataset is {data.size} px")
        if views is not None and views != init.config.views:
            init = with_views(init, views)  # the same weights, self-attention across groups of `views`
        if camera_text:
            init = with_camera_text(init)  # the same weights, and a zero camera modulation of the text tokens
        click.echo(f"fine-tuning from {init_weights}" + (f", across groups of {views} views" if views else "")
                   + (", with camera-modulated text tokens" if camera_text else ""))
    run_training(data, model_cfg, cfg, out, resume=resume, device=device, log=click.echo,
                 judge=Judge.load() if eval_captions > 0 else None, init=init, stop_at=stop_at)
    if export_path is not None:
        export_ema(out, export_path)
        click.echo(f"wrote EMA weights to {export_path}")


@click.command()
@click.argument("prompt")
@click.option("--cfg", "guidance", type=float, default=5.0, show_default=True,
              help="Text guidance scale, within [0, 100].")
@click.option("--n", type=click.IntRange(1, 256), default=4, show_default=True, help="Number of images.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--steps", type=click.IntRange(1, 1000), default=50, show_default=True, help="DDIM steps.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Weights file, or a prior's name: toy, toy-words, toy-mv (default: the shipped toy prior).")
@click.option("--camera", type=(float, float), default=None,
              help="AZIMUTH ELEVATION in degrees (with --views: the first view's, default 0 20).")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="Condition image (PNG).")
@click.option("--image-scale", type=float, default=1.0, show_default=True,
              help="λ_ip for --image, within [0, 10].")
@click.option("--views", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Draw --n groups of this many views of one scene, 360°/views apart in azimuth, jointly "
                   "(a multi-view prior: --weights toy-mv --views 4); grid.png has one row per group.")
def sample(prompt: str, guidance: float, n: int, seed: int, steps: int, out: Path, weights: Path | None,
           camera: tuple[float, float] | None, image: Path | None, image_scale: float, views: int) -> None:
    """Draw images from the toy prior: PNGs and grid.png in --out."""
    import numpy as np
    import torch
    from PIL import Image

    from distill3d.core.cameras import MAX_ABS_ELEVATION
    from distill3d.core.errors import UserError, check_out_path, check_range
    from distill3d.export.images import image_grid, save_png, to_uint8
    from distill3d.priors.base import require_joint_views
    from distill3d.priors.sampling import sample as draw
    from distill3d.priors.toy.prior import ToyPrior
    from distill3d.toyworld.grammar import parse_caption

    parse_caption(prompt)  # the toy prior knows only the toy world's captions, as in generate
    check_out_path("--out", out, folder=True)
    check_range("--cfg", guidance, 0.0, 100.0)
    check_range("--image-scale", image_scale, 0.0, 10.0)
    if camera is not None:
        check_range("--camera azimuth", camera[0], -720.0, 720.0)
        check_range("--camera elevation", camera[1], -MAX_ABS_ELEVATION, MAX_ABS_ELEVATION)
    cond_image = None
    if image is not None:
        if not image.is_file():
            raise UserError(f"no image at {image}")
        try:
            rgb = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / 255.0
        except OSError as err:
            raise UserError(f"cannot read {image} as an image: {err}") from None
        cond_image = torch.from_numpy(rgb).permute(2, 0, 1)
    prior = ToyPrior.load(weights)
    if views > 1:
        require_joint_views(prior, f"toy sample --views {views}", views)
        camera = camera if camera is not None else (0.0, 20.0)
    images = draw(prior, prompt, n=n, cfg=guidance, steps=steps, seed=seed, camera=camera, image=cond_image,
                  image_scale=image_scale if cond_image is not None else 0.0, views=views)
    frames = to_uint8(images)  # [n·views, S, S, 3], group after group
    for k in range(len(frames)):
        name = f"sample_{k:02d}.png" if views == 1 else f"sample_{k // views:02d}_view{k % views}.png"
        save_png(frames[k], out / name)
    save_png(image_grid(frames, ncols=views if views > 1 else None), out / "grid.png")
    click.echo(f"wrote {len(frames)} images and grid.png to {out}")


@click.command()
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Weights file (default: the shipped toy prior).")
@click.option("--samples", type=click.IntRange(1), default=64, show_default=True,
              help="Judged samples per caption kind.")
@click.option("--pairs", type=click.IntRange(1), default=16, show_default=True,
              help="Held-out captions per relation.")
@click.option("--cfg", "guidance", type=click.FloatRange(0), default=5.0, show_default=True, help="CFG scale.")
@click.option("--steps", type=click.IntRange(1), default=50, show_default=True, help="DDIM steps.")
@click.option("--groups", type=click.IntRange(1), default=32, show_default=True,
              help="A multi-view prior (toy-mv): groups of views drawn jointly and judged per caption kind.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/toy_prior_report.json"),
              show_default=True, help="JSON report (a .md table and one PNG grid of samples per caption kind "
                                      "are written beside it).")
def report(weights: Path | None, samples: int, pairs: int, guidance: float, steps: int, groups: int,
           threads: int | None, out: Path) -> None:
    """Measure the toy prior on held-out captions: judged accuracy per caption kind with 95% intervals,
    judge-feature Fréchet distance to the ground truth, face view consistency, image-branch
    reconstruction, text steering with an image, sampling speed; for a multi-view prior also groups of views
    drawn jointly, judged view by view (one row of views per group in its PNG grids)."""
    import dataclasses
    import shlex
    import sys

    import torch

    from distill3d.core.io import write_json_atomic, write_text_atomic
    from distill3d.export.images import image_grid, save_png, to_uint8
    from distill3d.priors.toy.prior import ToyPrior
    from distill3d.priors.toy.report import ReportConfig, prior_report, report_markdown
    from distill3d.toyworld.judge import Judge

    if threads:
        torch.set_num_threads(threads)
    cfg = ReportConfig(samples_per_kind=samples, pairs_per_relation=pairs, cfg=guidance, steps=steps,
                       groups_per_kind=groups)
    result, grids = prior_report(ToyPrior.load(weights), Judge.load(), cfg,
                                 progress=lambda what: click.echo(f"  {what}"))
    command = "distill3d " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_json_atomic(out, {"command": command, "weights": str(weights or "shipped"),
                            "config": dataclasses.asdict(cfg), **dataclasses.asdict(result)})
    for kind, images in grids.items():
        ncols = result.views if kind.startswith("mv ") else 16  # a group of views per row
        save_png(image_grid(to_uint8(images), ncols=ncols), out.with_name(f"{out.stem}_{kind.replace(' ', '_')}.png"))
    md = report_markdown(result, command)
    write_text_atomic(out.with_suffix(".md"), md)
    click.echo(md)
