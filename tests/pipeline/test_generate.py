import json
from dataclasses import fields

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.export.ply import load_gaussians_ply
from distill3d.guidance import GENERATE_METHODS, METHODS
from distill3d.pipeline.config import RunConfig, parse_overrides, resolve_run_config
from distill3d.pipeline.generate import generate
from distill3d.pipeline.loop import build_method, optimise
from distill3d.scene.registry import REPRESENTATIONS

from .conftest import joint_run, make_tiny_prior

FAST = {"steps": "2", "views_per_step": "2", "num_gaussians": "200", "checkpoint_every": "0",
        "preview_every": "0", "export_size": "16", "turntable_frames": "4", "mesh_resolution": "16"}
PROMPT = "a red cube on top of a blue sphere"


def _run(method, out, prior, **extra):
    cfg, rest = resolve_run_config(method, {**FAST, **extra})
    return generate(PROMPT, cfg, rest, out, prior=prior, progress=False)


def toy_texts(entry) -> dict[str, str]:
    """--set values that replace the method's own texts (negative or source prompts, ``extra_texts()``) by a
    caption of the toy grammar, which is all the toy prior reads."""
    config = entry.config()
    texts = set(entry.build().extra_texts())
    return {f.name: "a gray sphere" for f in fields(config) if isinstance(getattr(config, f.name), str)
            and getattr(config, f.name) in texts}


@pytest.mark.parametrize("method", list(GENERATE_METHODS))
def test_each_method_runs_end_to_end(method, tmp_path, tiny_prior):
    prior, views = joint_run(GENERATE_METHODS[method], tiny_prior)
    result = _run(method, tmp_path / method, prior, **toy_texts(GENERATE_METHODS[method]), **views)
    out = result.out_dir
    for name in ("gaussians.ply", "mesh.glb", "mesh.obj", "views.png", "preset.json", "run.json"):
        assert (out / name).is_file(), name
    assert (out / "turntable.mp4").is_file() or (out / "turntable.gif").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == method and run["steps"] == 2 and run["prompt"] == PROMPT
    secs = run["seconds"]
    assert secs["optimisation"] == pytest.approx(secs["render"] + secs["prior"] + secs["backward"] + secs["other"],
                                                 abs=0.01)
    assert run["prior_evaluations"] >= 2 * 2 * int(views.get("views_per_step", 2))  # two rows per view per step
    views = run["judge"]["views"]  # the share of matching views, as the judgement of each view says
    assert len(views) == 8 and run["judge"]["match_rate"] == sum(v["all_ok"] for v in views) / 8
    preset = json.loads((out / "preset.json").read_text())
    assert preset["run"]["method"] == method and preset["method_config"]


def test_prior_evaluations_counted_per_method(tmp_path, tiny_prior):
    evals = {m: _run(m, tmp_path / m, make_tiny_prior()).state.prior_evals for m in ("sds", "anchords")}
    assert evals["sds"] == 2 * 2 * 2  # steps x views x (cond, uncond)
    assert evals["anchords"] == 2 * 2 * 2  # steps x views x (target, anchored source): one batched call


def test_same_seed_same_result_other_seed_differs(tmp_path):
    a = _run("sds", tmp_path / "a", make_tiny_prior())
    b = _run("sds", tmp_path / "b", make_tiny_prior())
    c = _run("sds", tmp_path / "c", make_tiny_prior(), seed="1")
    ga, gb, gc = (load_gaussians_ply(r.out_dir / "gaussians.ply") for r in (a, b, c))
    assert torch.equal(ga.means, gb.means) and torch.equal(ga.sh_dc, gb.sh_dc)
    assert not torch.equal(ga.means, gc.means)


class _Stop(Exception):
    pass


def _crash_at_step_3(step, log):
    if step == 3:
        raise _Stop


def _interrupted_run(cfg, rest, out, prior):
    """Start a run and kill it at step 3 (its last checkpoint is at step 2)."""
    with pytest.raises(_Stop):
        optimise(PROMPT, cfg, build_method(cfg, rest), prior, out, on_step=_crash_at_step_3)


def _straight_and_resumed(method, raw, tmp_path):
    cfg, rest = resolve_run_config(method, raw)
    straight, _ = optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), tmp_path / "a")
    _interrupted_run(cfg, rest, tmp_path / "b", make_tiny_prior())
    resumed, state = optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), tmp_path / "b", resume=True)
    return straight, resumed, state


@pytest.mark.parametrize("method", ["sds", "anchords-finetune", "vsd"])
def test_resume_continues_bit_for_bit(method, tmp_path):
    straight, resumed, state = _straight_and_resumed(method, {**FAST, "steps": "4", "checkpoint_every": "2"}, tmp_path)
    assert state.step == 4
    for name, p in straight.named_parameters():
        assert torch.equal(p, dict(resumed.named_parameters())[name]), name


def test_earlier_results_are_never_overwritten(tmp_path, tiny_prior):
    _run("sds", tmp_path / "r", tiny_prior)
    with pytest.raises(UserError, match="finished run"):
        _run("sds", tmp_path / "r", tiny_prior)
    cfg, rest = resolve_run_config("sds", {**FAST, "steps": "4", "checkpoint_every": "2"})
    _interrupted_run(cfg, rest, tmp_path / "u", tiny_prior)
    with pytest.raises(UserError, match="--resume"):
        _run("sds", tmp_path / "u", tiny_prior)
    with pytest.raises(UserError, match="nothing to resume"):
        optimise(PROMPT, cfg, build_method(cfg, rest), tiny_prior, tmp_path / "empty", resume=True)


def test_overrides_are_typed_and_checked():
    cfg, rest = resolve_run_config("anchords", parse_overrides(["steps=7", "image_scale=0.3", "lr_colors=0.5"]))
    assert cfg.steps == 7 and cfg.representation_config.lr_colors == 0.5 and rest == {"image_scale": "0.3"}
    assert build_method(cfg, rest).config.image_scale == 0.3
    with pytest.raises(UserError, match="expected int"):
        resolve_run_config("sds", {"steps": "many"})
    with pytest.raises(UserError, match="unknown --set"):
        build_method(RunConfig(method="sds"), {"no_such_field": "1"})
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["steps"])
    with pytest.raises(UserError, match="unknown generate method"):
        resolve_run_config("magic", {})
    with pytest.raises(UserError, match="num_gaussians must be at least 1"):
        resolve_run_config("sds", {"num_gaussians": "0"})
    with pytest.raises(UserError, match="unknown representation"):
        resolve_run_config("sds", {"representation": "mesh"})
    with pytest.raises(UserError, match="unknown --set key.*grid_resolution.*num_gaussians"):
        build_method(resolve_run_config("sds", {})[0], {"grid_resolution": "8"})  # a radiance key, Gaussians run
    radiance, _ = resolve_run_config("sds", {"representation": "radiance", "grid_resolution": "8"})
    assert radiance.representation_config.grid_resolution == 8


def test_set_keys_name_one_field_each():
    """A --set key goes to the run, else the representation, else the method: no name may be in two."""
    run = {f.name for f in fields(RunConfig)}
    for rep in REPRESENTATIONS.values():
        mine = {f.name for f in fields(rep.config_type)}
        assert not mine & run, rep.name
        for m in METHODS:
            assert not {f.name for f in fields(m.config_type)} & (mine | run), (rep.name, m.kind, m.name)


def test_toy_prior_rejects_captions_outside_the_grammar(tmp_path, tiny_prior):
    cfg, rest = resolve_run_config("sds", FAST)
    with pytest.raises(UserError, match="grammar"):
        generate("a photo of a dragon", cfg, rest, tmp_path / "x", prior=tiny_prior, progress=False)
    assert not (tmp_path / "x").exists()
    cfg, rest = resolve_run_config("sds-bridge", FAST)  # its handcrafted source prompt is not a toy caption
    with pytest.raises(UserError, match="sds-bridge conditions on the text 'oversaturated.*--set"):
        generate(PROMPT, cfg, rest, tmp_path / "x", prior=tiny_prior, progress=False)
    assert not (tmp_path / "x").exists()


def test_radiance_field_run_and_resume(tmp_path, tiny_prior):
    fast = {k: v for k, v in FAST.items() if k != "num_gaussians"}  # a Gaussians key: refused for a field
    cfg, rest = resolve_run_config("anchords", {**fast, "representation": "radiance", "grid_resolution": "12"})
    result = generate(PROMPT, cfg, rest, tmp_path / "rf", prior=tiny_prior, progress=False)
    assert (result.out_dir / "radiance.safetensors").is_file() and not (result.out_dir / "gaussians.ply").exists()
    assert json.loads((result.out_dir / "run.json").read_text())["files"]["radiance"] == "radiance.safetensors"
    raw = {**fast, "steps": "4", "checkpoint_every": "2", "representation": "radiance", "grid_resolution": "12"}
    straight, resumed, _ = _straight_and_resumed("sds", raw, tmp_path)
    assert torch.equal(straight.density, resumed.density) and torch.equal(straight.features, resumed.features)
