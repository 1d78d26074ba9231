"""``generate``: one text-to-3D run from a prompt to files other tools open.

A run directory holds, when finished: the representation's own file (its class's ``file_name``:
``gaussians.ply`` for Gaussians, ``radiance.safetensors`` for a radiance field), ``mesh.glb``, ``mesh.obj``,
``views.png``, ``turntable.mp4`` (``.gif`` without ffmpeg), ``preset.json`` (the settings actually used; on a
grammar-bound prior also ``replaced_texts``: method texts it cannot read and their stand-ins, see
:func:`method_for_prior`),
``run.json`` (prompt, method, seed, steps, time split, prior evaluations, judge scores with the toy prior),
``previews/`` and ``checkpoint.safetensors`` (for ``--resume``).
A directory that already holds a finished run, or an unfinished one without ``--resume``, is refused:
earlier results are never overwritten.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from distill3d.core.cameras import orbit
from distill3d.core.errors import UserError, check_out_path, shorten
from distill3d.core.io import write_json_atomic
from distill3d.export.gltf import write_glb
from distill3d.export.images import image_grid, save_png, to_uint8
from distill3d.export.mesh import extract_mesh
from distill3d.export.obj import write_obj
from distill3d.export.views import render_views, save_turntable
from distill3d.guidance import GuidanceMethod
from distill3d.pipeline.config import RunConfig
from distill3d.pipeline.loop import CHECKPOINT, EditSource, LoopState, build_method, describe_config, optimise
from distill3d.pipeline.priors import DEFAULT_PRIOR, PriorSpec, knows_toy_world, load_prior
from distill3d.pipeline.report import save_curves_png, save_views_png
from distill3d.priors.base import Prior
from distill3d.scene.registry import entry_of
from distill3d.scene.representation import Representation

RUN_FILE = "run.json"
PRESET_FILE = "preset.json"
VIEW_AZIMUTHS = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]
VIEW_ELEVATION = 20.0
PreviewCallback = Callable[[int, Representation], None]


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    seconds: float
    state: LoopState
    judge: dict | None  # toy prior only: judged views, see evaluation.toy


def check_out_dir(out_dir: Path, resume: bool) -> None:
    check_out_path("--out", out_dir, folder=True)
    if (out_dir / RUN_FILE).exists():
        raise UserError(f"{out_dir} already holds a finished run; choose another --out")
    if (out_dir / CHECKPOINT).exists() and not resume:
        raise UserError(f"{out_dir} holds an unfinished run; continue it with --resume or choose another --out")
    if resume and not (out_dir / CHECKPOINT).exists():
        raise UserError(f"nothing to resume: {out_dir} holds no {CHECKPOINT} (the run never started or wrote "
                        f"none yet); run the same command without --resume to start it")


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _label(key: str) -> str:
    """A preset.json path as the user knows it: "method", "prior", "prior model", "steps", ..."""
    parts = key.split(".")
    if parts[0] == "prior":
        return "prior" if parts[-1] == "kind" else f"prior {parts[-1]}"
    parts = [p for p in parts[1:] if p != "representation_config"] or parts
    return ".".join(parts)


def first_difference(saved: dict, new: dict) -> tuple[str, str, str] | None:
    """The first setting in which two presets (``preset.json`` trees) differ, as (its label, saved value, new
    value), checked in the order prompt, method, prior, representation, then every other value; None when they
    agree. A setting the saved tree lacks (added to distill3d after the run started) is the same when the new
    one leaves it at None, what such an optional setting means when absent."""
    saved, new = _flat(saved), _flat(json.loads(json.dumps(new)))
    first = ("prompt", "run.method", "prior", "run.representation")

    def rank(key: str) -> int:
        return next((i for i, f in enumerate(first) if key == f or key.startswith(f + ".")), len(first))

    for key in sorted(dict.fromkeys([*saved, *new]), key=rank):  # stable: preset order within a rank
        old, given = (tree.get(key, "(not recorded)") for tree in (saved, new))
        if old != given and not (key not in saved and given is None):
            return _label(key), shorten(repr(old), 60), shorten(repr(given), 60)
    return None


def check_resume_matches(out_dir: Path, preset: dict) -> None:
    """``--resume`` continues a run only with the settings it started with (its ``preset.json``): a
    ``UserError`` naming the first difference (``first_difference``)."""
    try:
        saved = json.loads((out_dir / PRESET_FILE).read_text())
    except (OSError, ValueError):
        raise UserError(f"cannot --resume {out_dir}: its {PRESET_FILE} (the settings the run started "
                        f"with) is missing or unreadable; choose another --out") from None
    diff = first_difference(saved, preset)
    if diff is not None:
        label, old, given = diff
        raise UserError(f"cannot --resume {out_dir}: its {label} is {old} but this command gives "
                        f"{given}; resume with the run's own settings (its {PRESET_FILE}) or choose another "
                        f"--out")


def check_prompt(prompt: str, prior_kind: str) -> None:
    if not prompt.strip():
        raise UserError("the prompt is empty")
    if knows_toy_world(prior_kind):
        from distill3d.toyworld.grammar import parse_caption

        parse_caption(prompt)  # the embedded prior knows only the toy world's captions


def _readable(text: str, prior_kind: str) -> bool:
    """Can the prior read ``text``? The empty prompt ∅ every prior reads; other texts as a prompt."""
    if text == "":
        return True
    try:
        check_prompt(text, prior_kind)
    except UserError:
        return False
    return True


def method_for_prior(cfg: RunConfig, method_overrides: dict[str, str], prior_kind: str
                     ) -> tuple[GuidanceMethod, dict[str, tuple[str, str]]]:
    """``cfg``'s method, built for the prior. A text it conditions on besides the prompt (``extra_texts()``)
    that the prior cannot read (a grammar-bound prior: the toy prior reads only toy-world captions), that no
    --set gave, and for which the method names a stand-in (its ``grammar_fallbacks()``, {--set path:
    text}; e.g. AnchorDS' code form: its negative prompt becomes the empty prompt) is replaced by that
    stand-in. Returns the method and {--set path: (text replaced, stand-in)}; any other unreadable text is
    refused by ``check_method_texts``."""
    method = build_method(cfg, method_overrides)  # raises UserError for an unknown method or --set key
    unreadable = {text for text in method.extra_texts() if not _readable(text, prior_kind)}
    fallbacks = method.grammar_fallbacks()
    config = getattr(method, "config", None)
    current = {path: functools.reduce(getattr, path.split("."), config) for path in fallbacks}
    replaced = {path: (current[path], text) for path, text in fallbacks.items()
                if current[path] in unreadable and path not in method_overrides}
    if not replaced:
        return method, {}
    return build_method(cfg, method_overrides | {p: now for p, (_, now) in replaced.items()}), replaced


def check_method_texts(method: GuidanceMethod, name: str, prior_kind: str) -> None:
    """The texts ``method`` conditions on besides the prompt must be readable by the prior, like the prompt."""
    for text in method.extra_texts():
        if text == "":  # ∅, which every prior reads
            continue
        try:
            check_prompt(text, prior_kind)
        except UserError as err:
            raise UserError(f"method {name} conditions on the text {shorten(text)!r}, which the {prior_kind} prior cannot "
                            f"read ({err}); set it to a caption the prior knows with --set, or use --prior sd") from None


@contextmanager
def timed(split: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds the block takes to ``split[key]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        split[key] = split.get(key, 0.0) + time.perf_counter() - start


def export_run(rep: Representation, out_dir: Path, mesh_resolution: int = 64, view_size: int = 128,
               turntable_frames: int = 36, judge: dict | None = None,
               split: dict[str, float] | None = None) -> dict[str, str]:
    """Write the representation, its mesh, the view grid (captioned with ``judge``'s verdicts when given)
    and the turntable; return the file names. ``split`` collects the seconds of each part."""
    split = {} if split is None else split
    with timed(split, "asset"):
        files = {entry_of(rep).name: rep.save(out_dir / rep.file_name).name}
    with timed(split, "mesh"):
        mesh = extract_mesh(rep, resolution=mesh_resolution)
        files["glb"] = write_glb(mesh, out_dir / "mesh.glb").name
        files["obj"] = write_obj(mesh, out_dir / "mesh.obj").name
    with timed(split, "views"):
        views = to_uint8(render_views(rep, orbit(len(VIEW_AZIMUTHS), VIEW_ELEVATION), view_size))
        files["views"] = save_views_png(views, VIEW_AZIMUTHS, VIEW_ELEVATION, judge, out_dir / "views.png").name
    with timed(split, "turntable"):
        files["turntable"] = save_turntable(rep, out_dir / "turntable.mp4", frames=turntable_frames,
                                            elevation=VIEW_ELEVATION, size=view_size).name
    return files


def run_preset(prompt: str, cfg: RunConfig, method_overrides: dict[str, str], prior_spec: PriorSpec
               ) -> tuple[GuidanceMethod, dict[str, tuple[str, str]], dict]:
    """The method a run of these settings builds, the texts it replaces (``method_for_prior``) and the
    ``preset.json`` it writes: the settings actually used."""
    method, replaced = method_for_prior(cfg, method_overrides, prior_spec.kind)
    check_method_texts(method, cfg.method, prior_spec.kind)
    preset = {"prompt": prompt} | describe_config(cfg, method) | {"prior": dataclasses.asdict(prior_spec)}
    if replaced:  # what the run conditions on instead of the method's own texts, and why
        preset["replaced_texts"] = {path: {"was": was, "now": now, "why": f"the {prior_spec.kind} prior cannot "
                                           "read it"} for path, (was, now) in replaced.items()}
    return method, replaced, preset


def generate(prompt: str, cfg: RunConfig, method_overrides: dict[str, str], out_dir: str | Path,
             prior_spec: PriorSpec = DEFAULT_PRIOR, prior: Prior | None = None, resume: bool = False,
             progress: bool = True, on_preview: PreviewCallback | None = None) -> RunResult:
    """Run ``cfg.method`` on ``prompt`` and write the run directory. ``on_preview`` is called with the
    asset every ``cfg.preview_every`` steps, after the preview grid is written (e.g. a live viewer)."""
    out_dir = Path(out_dir)
    check_prompt(prompt, prior_spec.kind)
    check_out_dir(out_dir, resume)
    method, replaced, preset = run_preset(prompt, cfg, method_overrides, prior_spec)
    for path, (was, now) in replaced.items():
        print(f"note: {path} {shorten(was)!r} is not a text the {prior_spec.kind} prior reads, so this run uses "
              f"{'the empty prompt ' if now == '' else ''}{now!r} instead (recorded in {PRESET_FILE}; --set "
              f"{path}=... chooses another)", flush=True)
    if resume:
        check_resume_matches(out_dir, preset)
    prior = prior if prior is not None else load_prior(prior_spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json_atomic(out_dir / PRESET_FILE, preset)

    _, state, seconds, export_seconds, files, judge = optimise_and_export(
        prompt, cfg, method, prior, prior_spec, out_dir, resume, progress, on_preview=on_preview)
    write_run_file(out_dir, {"prompt": prompt, "method": cfg.method}, cfg, prior_spec, state, seconds,
                   export_seconds, files, judge)
    return RunResult(out_dir, seconds, state, judge)


def optimise_and_export(prompt: str, cfg: RunConfig, method: GuidanceMethod, prior: Prior, prior_spec: PriorSpec,
                        out_dir: Path, resume: bool, progress: bool, source: EditSource | None = None,
                        on_preview: PreviewCallback | None = None) -> tuple[Representation, LoopState, float, dict[str, float], dict[str, str], dict | None]:
    """The loop with a progress bar and previews, then the exports and (toy prior) the judge. Returns the
    asset, the loop state, seconds in all, seconds of each export (and the judge), the files written and
    the judgement."""
    start = time.perf_counter()
    bar = None

    def on_step(step: int, log: dict[str, float]) -> None:
        nonlocal bar
        if not (math.isfinite(log["loss"]) and math.isfinite(log["grad_norm"])):
            kept = (f"{out_dir / CHECKPOINT} (its last checkpoint) is kept" if (out_dir / CHECKPOINT).exists()
                    else "no checkpoint had been written yet")
            raise UserError(f"step {step}: the guidance gradient is not finite (NaN or inf), so the run "
                            f"stopped before saving this step; {kept}; lower guidance_scale or the learning "
                            f"rates with --set and start a new run", exit_code=1)
        if progress:
            if bar is None:  # created as the first step of this session ends, that step counted as done:
                from tqdm import tqdm  # the rate is of the steps run since (a resumed run starts part-way)

                bar = tqdm(total=cfg.steps, initial=step, desc=cfg.method, unit="step")
            bar.set_postfix(loss=f"{log['loss']:.3g}", t=int(log["t"]), refresh=False)
            bar.update(step - bar.n)

    def preview(step: int, rep: Representation) -> None:
        views = to_uint8(render_views(rep, orbit(4, VIEW_ELEVATION), prior.image_size * 2))
        save_png(image_grid(views), out_dir / "previews" / f"step_{step:05d}.png")
        if on_preview is not None:
            on_preview(step, rep)

    try:
        rep, state = optimise(prompt, cfg, method, prior, out_dir, resume=resume, on_step=on_step,
                              on_preview=preview, source=source)
    finally:  # an error message must not be glued to a progress bar
        if bar is not None:
            bar.close()
    split: dict[str, float] = {}
    judge = None
    if knows_toy_world(prior_spec.kind):
        from distill3d.evaluation.toy import judge_representation

        with timed(split, "judge"):
            judge = judge_representation(rep, prompt)
    files = export_run(rep, out_dir, cfg.mesh_resolution, cfg.export_size, cfg.turntable_frames, judge, split)
    with timed(split, "curves"):
        files["curves"] = save_curves_png(state.history, out_dir / "curves.png").name
    return rep, state, time.perf_counter() - start, split, files, judge


def write_run_file(out_dir: Path, head: dict, cfg: RunConfig, prior_spec: PriorSpec, state: LoopState,
                   seconds: float, export_seconds: dict[str, float], files: dict[str, str], judge: dict | None) -> None:
    """``run.json``: ``head`` (prompt, method, ...), then what every run records."""
    t = state.timings
    write_json_atomic(out_dir / RUN_FILE, {
        **head, "seed": cfg.seed, "steps": cfg.steps, "steps_run": state.step, "converged_at": state.converged_at,
        "views_per_step": cfg.views_per_step, "prior": prior_spec.kind,
        "seconds": {"total_this_session": round(seconds, 3), "optimisation": round(t.total(), 3),
                    "render": round(t.render, 3), "prior": round(t.prior, 3), "backward": round(t.backward, 3),
                    "other": round(t.other, 3), "export_and_judge": round(sum(export_seconds.values()), 3),
                    "exports": {k: round(v, 3) for k, v in export_seconds.items()}},
        "prior_calls": state.prior_calls, "prior_evaluations": state.prior_evals,
        "files": files, "judge": judge, "history": state.history,
        "torch_threads": torch.get_num_threads(),
    })
