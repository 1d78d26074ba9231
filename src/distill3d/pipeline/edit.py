"""``edit``: change an existing asset toward a target text with an editing method (UDS, DDS, PDS).

SOURCE is a distill3d run directory or any saved representation file: a standard 3DGS ``.ply`` (the
graphdeco layout with normals and ``f_rest_*``, gsplat's layout without normals, degree 0 without
``f_rest``) or a radiance field. The source asset is loaded once, frozen and never written: every step its
renders, from the same cameras as the edited copy's (same noise, same t inside the method), give the
methods' source branch; the edited copy starts as a copy of it.

The run directory holds what ``generate`` writes (the edited asset, mesh, views, turntable, preset.json,
run.json, previews, checkpoint) plus ``before_after.png`` (source views over edited views) and
``turntable_before_after.mp4`` (source left, edit right). ``preset.json`` records the source's path and
SHA-256, so that ``--resume`` refuses a source that changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from distill3d.core.errors import UserError
from distill3d.core.io import write_json_atomic
from distill3d.export.views import save_before_after, save_turntable_side_by_side
from distill3d.pipeline.config import RunConfig, resolve_run_config
from distill3d.pipeline.generate import (
    VIEW_AZIMUTHS,
    VIEW_ELEVATION,
    PreviewCallback,
    RunResult,
    check_out_dir,
    check_prompt,
    check_resume_matches,
    optimise_and_export,
    write_run_file,
)
from distill3d.pipeline.loop import EditSource, build_method, describe_config
from distill3d.pipeline.priors import DEFAULT_PRIOR, PriorSpec, knows_toy_world, load_prior
from distill3d.priors.base import Prior
from distill3d.scene.registry import find_representation_file

#: Run settings an edit starts from (under the user's --set): an edit moves an asset that already exists,
#: so it needs fewer steps than a generation from noise.
EDIT_DEFAULTS: dict[str, str] = {"steps": "300"}
BEFORE_AFTER = "before_after.png"
TURNTABLE_BEFORE_AFTER = "turntable_before_after.mp4"


def resolve_edit_config(method: str, raw: dict[str, str], source: str | Path) -> tuple[RunConfig, dict[str, str]]:
    """The edit preset of ``method`` (an edit method) for ``source``: its representation is the source's."""
    _, entry = find_representation_file(source)  # UserError for a missing file or an unknown kind
    if raw.get("representation", entry.name) != entry.name:
        raise UserError(f"--set representation={raw['representation']}: an edit keeps the source's "
                        f"representation ({entry.name})")
    return resolve_run_config(method, {**EDIT_DEFAULTS, **raw, "representation": entry.name}, kind="edit")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_texts(source_prompt: str, prompt: str, prior_kind: str) -> None:
    for flag, text in (("--from", source_prompt), ("--to", prompt)):
        try:
            check_prompt(text, prior_kind)
        except UserError as err:
            raise UserError(f"{flag}: {err}") from None


def edit(source: str | Path, source_prompt: str, prompt: str, cfg: RunConfig, method_overrides: dict[str, str],
         out_dir: str | Path, prior_spec: PriorSpec = DEFAULT_PRIOR, prior: Prior | None = None,
         resume: bool = False, progress: bool = True, on_preview: PreviewCallback | None = None) -> RunResult:
    """Edit the asset at ``source`` (described by ``source_prompt``) toward ``prompt`` with ``cfg.method``
    (an edit method; ``cfg`` from :func:`resolve_edit_config`) and write the run directory ``out_dir``.
    ``on_preview`` is called with the edited asset every ``cfg.preview_every`` steps (a live viewer)."""
    out_dir = Path(out_dir)
    _check_texts(source_prompt, prompt, prior_spec.kind)
    source_file, entry = find_representation_file(source)
    if cfg.representation != entry.name:
        raise UserError(f"the source is a {entry.name} asset but the run config says {cfg.representation!r}")
    if out_dir.resolve() == source_file.parent.resolve():
        raise UserError(f"--out {out_dir} is the folder holding the source; choose another, the source stays as it is")
    check_out_dir(out_dir, resume)
    digest = _sha256(source_file)
    record = {"source": str(source_file), "source_sha256": digest, "from": source_prompt, "to": prompt}
    preset_path = out_dir / "preset.json"
    if resume and preset_path.is_file():
        before = json.loads(preset_path.read_text()).get("edit", {})
        if before.get("source_sha256") != digest:
            raise UserError(f"--resume: the source {source_file} is not the one this run started from "
                            f"({before.get('source', 'unknown')}); start a new run in another --out")
        record["source"] = before.get("source", record["source"])  # the same bytes, moved or copied: resumes
    rep_source = entry.cls.load(source_file)  # UserError for a file that is not this representation
    method = build_method(cfg, method_overrides, kind="edit")  # UserError for an unknown --set key
    preset = {"prompt": prompt} | describe_config(cfg, method) | {"prior": dataclasses.asdict(prior_spec),
                                                                 "edit": record}
    if resume:
        check_resume_matches(out_dir, preset)
    prior = prior if prior is not None else load_prior(prior_spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json_atomic(preset_path, preset)

    rep, state, seconds, export_seconds, files, judge = optimise_and_export(
        prompt, cfg, method, prior, prior_spec, out_dir, resume, progress, EditSource(rep_source, source_prompt),
        on_preview=on_preview)
    files["before_after"] = save_before_after(rep_source, rep, VIEW_AZIMUTHS, VIEW_ELEVATION, cfg.export_size,
                                              out_dir / BEFORE_AFTER).name
    files["turntable_before_after"] = save_turntable_side_by_side(
        [rep_source, rep], out_dir / TURNTABLE_BEFORE_AFTER, frames=cfg.turntable_frames, elevation=VIEW_ELEVATION,
        size=cfg.export_size).name
    judge_source = None
    if knows_toy_world(prior_spec.kind):
        from distill3d.evaluation.toy import judge_representation

        judge_source = judge_representation(rep_source, source_prompt)
    head = {"kind": "edit", "prompt": prompt, "source_prompt": source_prompt, "source": str(source_file),
            "method": cfg.method, "judge_source": judge_source}
    write_run_file(out_dir, head, cfg, prior_spec, state, seconds, export_seconds, files, judge)
    return RunResult(out_dir, seconds, state, judge)


__all__ = ["BEFORE_AFTER", "EDIT_DEFAULTS", "TURNTABLE_BEFORE_AFTER", "edit", "resolve_edit_config"]
