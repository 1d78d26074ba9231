"""``generate``: one text-to-3D run from a prompt to files other tools open.

A run directory holds, when finished: ``gaussians.ply`` (Gaussians) or ``radiance.safetensors``,
``mesh.glb``, ``mesh.obj``, ``views.png``, ``turntable.mp4`` (``.gif`` without ffmpeg), ``preset.json``
(the settings actually used), ``run.json`` (prompt, method, seed, steps, time split, prior evaluations,
judge scores with the toy prior), ``previews/`` and ``checkpoint.safetensors`` (for ``--resume``).
A directory that already holds a finished run, or an unfinished one without ``--resume``, is refused:
earlier results are never overwritten.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill3d.core.cameras import orbit
from distill3d.core.errors import UserError
from distill3d.core.io import write_json_atomic
from distill3d.export.gltf import write_glb
from distill3d.export.images import image_grid, save_png, to_uint8
from distill3d.export.mesh import extract_mesh
from distill3d.export.obj import write_obj
from distill3d.export.ply import save_gaussians_ply
from distill3d.export.radiance import save_radiance_field
from distill3d.export.views import render_views, save_turntable
from distill3d.pipeline.config import RunConfig
from distill3d.pipeline.loop import CHECKPOINT, LoopState, build_method, describe_config, optimise
from distill3d.pipeline.priors import DEFAULT_PRIOR, PriorSpec, load_prior
from distill3d.priors.base import Prior
from distill3d.scene.gaussians import GaussianModel

RUN_FILE = "run.json"
VIEW_AZIMUTHS = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]
VIEW_ELEVATION = 20.0


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    seconds: float
    state: LoopState
    judge: dict | None  # toy prior only: judged views, see pipeline.evaluate


def check_out_dir(out_dir: Path, resume: bool) -> None:
    if (out_dir / RUN_FILE).exists():
        raise UserError(f"{out_dir} already holds a finished run; choose another --out")
    if (out_dir / CHECKPOINT).exists() and not resume:
        raise UserError(f"{out_dir} holds an unfinished run; continue it with --resume or choose another --out")


def check_prompt(prompt: str, prior_kind: str) -> None:
    if not prompt.strip():
        raise UserError("the prompt is empty")
    if prior_kind == "toy":
        from distill3d.toyworld.grammar import parse_caption

        parse_caption(prompt)  # the embedded prior knows only the toy world's captions


def export_run(rep: nn.Module, out_dir: Path, mesh_resolution: int = 64, view_size: int = 128,
               turntable_frames: int = 36) -> dict[str, str]:
    """Write the representation, its mesh, the view grid and the turntable; return the file names."""
    files: dict[str, str] = {}
    if isinstance(rep, GaussianModel):
        files["gaussians"] = save_gaussians_ply(rep, out_dir / "gaussians.ply").name
    else:
        files["radiance"] = save_radiance_field(rep, out_dir / "radiance.safetensors").name
    mesh = extract_mesh(rep, resolution=mesh_resolution)
    files["glb"] = write_glb(mesh, out_dir / "mesh.glb").name
    files["obj"] = write_obj(mesh, out_dir / "mesh.obj").name
    views = to_uint8(render_views(rep, orbit(len(VIEW_AZIMUTHS), VIEW_ELEVATION), view_size))
    files["views"] = save_png(image_grid(views), out_dir / "views.png").name
    files["turntable"] = save_turntable(rep, out_dir / "turntable.mp4", frames=turntable_frames,
                                        elevation=VIEW_ELEVATION, size=view_size).name
    return files


def generate(prompt: str, cfg: RunConfig, method_overrides: dict[str, str], out_dir: str | Path,
             prior_spec: PriorSpec = DEFAULT_PRIOR, prior: Prior | None = None, resume: bool = False,
             progress: bool = True) -> RunResult:
    """Run ``cfg.method`` on ``prompt`` and write the run directory."""
    out_dir = Path(out_dir)
    check_prompt(prompt, prior_spec.kind)
    check_out_dir(out_dir, resume)
    method = build_method(cfg, method_overrides)  # raises UserError for an unknown method or --set key
    prior = prior if prior is not None else load_prior(prior_spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    preset = describe_config(cfg, method) | {"prior": dataclasses.asdict(prior_spec)}
    write_json_atomic(out_dir / "preset.json", preset)

    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc=cfg.method, unit="step")

    def on_step(step: int, log: dict[str, float]) -> None:
        if bar is not None:
            bar.n = step
            bar.set_postfix(loss=f"{log['loss']:.3g}", t=int(log["t"]), refresh=False)
            bar.refresh()

    def on_preview(step: int, rep: nn.Module) -> None:
        views = to_uint8(render_views(rep, orbit(4, VIEW_ELEVATION), prior.image_size * 2))
        save_png(image_grid(views), out_dir / "previews" / f"step_{step:05d}.png")

    rep, state = optimise(prompt, cfg, method, prior, out_dir, resume=resume, on_step=on_step,
                          on_preview=on_preview)
    if bar is not None:
        bar.close()
    export_start = time.perf_counter()
    files = export_run(rep, out_dir, cfg.mesh_resolution, cfg.export_size, cfg.turntable_frames)
    judge = None
    if prior_spec.kind == "toy":
        from distill3d.pipeline.evaluate import judge_representation

        judge = judge_representation(rep, prompt)
    seconds = time.perf_counter() - start
    t = state.timings
    write_json_atomic(out_dir / "run.json", {
        "prompt": prompt, "method": cfg.method, "seed": cfg.seed, "steps": cfg.steps,
        "views_per_step": cfg.views_per_step, "prior": prior_spec.kind,
        "seconds": {"total_this_session": round(seconds, 3), "optimisation": round(t.total(), 3),
                    "render": round(t.render, 3), "prior": round(t.prior, 3), "backward": round(t.backward, 3),
                    "other": round(t.other, 3), "export_and_judge": round(time.perf_counter() - export_start, 3)},
        "prior_calls": state.prior_calls, "prior_evaluations": state.prior_evals,
        "files": files, "judge": judge, "history": state.history,
        "torch_threads": torch.get_num_threads(),
    })
    return RunResult(out_dir, seconds, state, judge)
