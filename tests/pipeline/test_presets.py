"""The paper presets: every number has a source, every preset builds and runs 2-3 steps (toy forms on the toy
prior; paper forms on a tiny random Stable Diffusion with IP-Adapter), ``--set`` applies on top, and
``distill3d presets`` prints each with its sources and deviations."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.guidance import find_method
from distill3d.pipeline.config import RunConfig, check_config, method_config, resolve_run_config
from distill3d.pipeline.generate import generate
from distill3d.pipeline.presets import PRESETS, find_preset
from distill3d.scene.registry import REPRESENTATIONS

from .conftest import joint_run, make_tiny_prior

FAST = {"steps": "2", "views_per_step": "2", "checkpoint_every": "0", "preview_every": "0", "export_size": "16",
        "turntable_frames": "2", "mesh_resolution": "16"}
PROMPT = "a red cube on top of a blue sphere"
PAPER = [p for p in PRESETS if not p.name.endswith("-toy")]
TOY = [p for p in PRESETS if p.name.endswith("-toy")]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A tiny random Stable Diffusion with an IP-Adapter-Plus (tests/priors/sd_tiny.py)."""
    pytest.importorskip("diffusers", reason="the Stable Diffusion prior needs the 'sd' extra")
    sys.path.insert(0, str(Path(__file__).parents[1] / "priors"))
    from sd_tiny import IP_WEIGHT, tiny_dirs

    from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior

    dirs = tiny_dirs(tmp_path_factory)
    return StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), ip_adapter=str(dirs.ip_adapter),
                                                      ip_adapter_weight=IP_WEIGHT))


@pytest.fixture(scope="module")
def tiny_mvdream(tmp_path_factory):
    """A tiny random MVDream checkpoint in MVDream's own key layout (tests/priors/mvdream_tiny.py)."""
    pytest.importorskip("diffusers", reason="the MVDream prior needs the 'sd' extra")
    sys.path.insert(0, str(Path(__file__).parents[1] / "priors"))
    from mvdream_tiny import IMAGE_SIZE, build_mvdream_checkpoint

    from distill3d.priors.mvdream import MVDreamConfig, MVDreamPrior

    path = build_mvdream_checkpoint(tmp_path_factory.mktemp("mvdream") / "tiny-4view.pt")
    return MVDreamPrior(MVDreamConfig(model=str(path), tokenizer=str(path.parent), image_size=IMAGE_SIZE))


def test_every_paper_preset_has_a_toy_form_and_valid_settings():
    assert {p.name + "-toy" for p in PAPER} == {p.name for p in TOY} and len(PAPER) >= 6
    known = {f.name for f in dataclasses.fields(RunConfig)} | {f.name for e in REPRESENTATIONS.values()
                                                                for f in dataclasses.fields(e.config_type)}
    for p in PRESETS:
        assert isinstance(p.method_config, find_method(p.method, p.kind).config_type), p.name
        assert set(p.settings) <= known, p.name
        check_config(p.method_config)  # in range, as --set values would be


def test_every_number_a_preset_sets_has_a_source():
    for p in PRESETS:
        missing = [k for k in p.changes() if not p.sources.get(k)]
        assert not missing, (p.name, missing)
        assert set(p.sources) <= set(p.changes()), p.name  # every source names a value the preset holds


def test_the_authors_anchords_setup():
    c = find_preset("anchords-3dgs-ip").method_config
    assert (c.form.guidance_scale, c.form.negative_prompt[:23]) == (101.0, "oversaturated, smooth, ")
    assert (c.form.grad_clamp.start, c.form.grad_clamp.end, c.form.grad_clamp.end_step) == (1.5, 2.0, 1000)
    s = c.timesteps
    assert (s.t_max, s.t_max_after) == (0.98, 0.55) and s.switch_step == 501  # GaussianDreamer: step > 500
    assert c.finetune.lr == 1e-4 and c.finetune.adapter_layer is None  # the prior's default: last up block
    # manqiwu/AnchorDS configs/gaussiandreamer-sd1.5-anchorDS-ipadapter-finetune.yaml: trainer.max_steps 1800
    assert find_preset("anchords-3dgs-ip").settings["steps"] == 1800 and c.filter_source == "authors"
    toy = find_preset("anchords-3dgs-ip-toy")
    assert toy.settings["steps"] == 200 and toy.method_config.form.negative_prompt == ""
    assert toy.method_config.timesteps.switch_step == round(501 * 200 / 1800)  # the same fraction of the run
    assert toy.method_config.form.grad_clamp.end_step == round(1000 * 200 / 1800)


def test_set_applies_on_top_of_a_preset_and_the_method_must_match():
    cfg, rest = resolve_run_config(None, {"steps": "5", "timesteps.switch_step": "3"}, preset="anchords-3dgs-ip-toy")
    assert cfg.method == "anchords" and cfg.steps == 5 and cfg.views_per_step == 4
    c = method_config(cfg, rest)
    assert c.timesteps.switch_step == 3 and c.form.guidance_scale == 101.0
    with pytest.raises(UserError, match="runs the method 'anchords', not 'sds'"):
        resolve_run_config("sds", {}, preset="anchords-3dgs-ip")
    with pytest.raises(UserError, match="unknown preset 'nope'.*anchords-3dgs-ip"):
        resolve_run_config(None, {}, preset="nope")


@pytest.mark.parametrize("preset", [p.name for p in TOY])
def test_each_toy_preset_runs_on_the_toy_prior(preset, tmp_path):
    """(a preset of a method guiding groups of views, mvdream-release-toy, on the tiny prior inflated across them)"""
    p = find_preset(preset)
    prior, views = joint_run(find_method(p.method, p.kind), make_tiny_prior())
    cfg, rest = resolve_run_config(None, {**FAST, "num_gaussians": "400", **views} if find_preset(preset).settings.get(
        "representation", "gaussians") == "gaussians" else {**FAST, "grid_resolution": "8"}, preset=preset)
    result = generate(PROMPT, cfg, rest, tmp_path / preset, prior=prior, progress=False)
    run = json.loads((result.out_dir / "run.json").read_text())
    assert run["steps"] == 2 and run["method"] == find_preset(preset).method
    saved = json.loads((result.out_dir / "preset.json").read_text())["method_config"]
    assert saved == json.loads(json.dumps(dataclasses.asdict(find_preset(preset).method_config), default=str))


@pytest.mark.parametrize("preset", [p.name for p in PAPER])
def test_each_paper_preset_runs_on_a_tiny_stable_diffusion(preset, tmp_path, request):
    """(a preset of a method guiding groups of views, mvdream-release, on a tiny MVDream checkpoint)"""
    from distill3d.pipeline.loop import build_method, optimise

    p = find_preset(preset)
    joint = getattr(find_method(p.method, p.kind).cls, "joint_views", 1) > 1
    prior = request.getfixturevalue("tiny_mvdream" if joint else "tiny_sd")
    extra = {"grid_resolution": "8"} if p.settings.get("representation") == "radiance" else {"num_gaussians": "100"}
    fast = {k: v for k, v in FAST.items() if not (joint and k == "views_per_step")}  # the preset's 4 views at 90°
    cfg, rest = resolve_run_config(None, {**fast, **extra}, preset=preset)
    method = build_method(cfg, rest)
    _, state = optimise("a red cube", cfg, method, prior, tmp_path / preset)
    assert state.step == 2 and state.prior_calls >= 2


def test_presets_command_prints_sources_and_deviations(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for p in PRESETS:
        assert f"{p.name} (--method {p.method})" in out
    assert "form.negative_prompt='oversaturated, smooth" in out and "deviation: " in out
    assert "timesteps.switch_step=501    [hustvl/GaussianDreamer" in out
    assert main(["presets", "luciddreamer-ism"]) == 0
    assert capsys.readouterr().out.startswith("luciddreamer-ism (--method ism)")
