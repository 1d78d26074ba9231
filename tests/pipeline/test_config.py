"""Typed ``--set``: dotted keys into nested method configs, variants chosen by name, Literal choices and ranges
checked before a run writes anything, and every config field documented for ``distill3d methods METHOD``."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.guidance import (
    METHODS,
    AnchorDSConfig,
    CodeForm,
    FinetuneConfig,
    LinearRamp,
    MaxSwitchTimesteps,
)
from distill3d.guidance.base import AnnealedTimesteps, Constant
from distill3d.pipeline.config import (
    RunConfig,
    apply_overrides,
    field_docs,
    method_config,
    resolve_run_config,
    variants,
)
from distill3d.scene.registry import REPRESENTATIONS


def _anchords(**raw: str) -> AnchorDSConfig:
    cfg, _ = resolve_run_config("anchords", {})
    return method_config(cfg, raw)


def test_dotted_keys_choose_variants_and_set_their_fields_in_any_order():
    c = _anchords(**{"form.negative_prompt": "blurry", "form": "code", "timesteps.switch_step": "300",
                     "timesteps": "max-switch", "timesteps.t_max": "0.9"})
    assert c.form == CodeForm(negative_prompt="blurry")  # the rest of the code form at its defaults
    assert c.timesteps == MaxSwitchTimesteps(t_max=0.9, switch_step=300)
    assert _anchords(timesteps="annealed", **{"timesteps.curve": "linear"}).timesteps == AnnealedTimesteps(curve="linear")


def test_a_nested_key_edits_the_current_variant_and_on_none_toggle_lone_ones():
    cfg, _ = resolve_run_config("anchords-finetune", {})
    c = method_config(cfg, {"finetune.lr": "1e-3", "finetune.loss": "latent"})
    assert c.finetune == FinetuneConfig(lr=1e-3, loss="latent")
    assert method_config(cfg, {"finetune": "none"}).finetune is None
    assert _anchords(finetune="on").finetune == FinetuneConfig()
    with pytest.raises(UserError, match=r"finetune is off \(none\).*--set finetune=on"):
        _anchords(**{"finetune.lr": "1e-3"})
    ramp = _anchords(form="code", **{"form.grad_clamp": "constant", "form.grad_clamp.value": "3"})
    assert ramp.form.grad_clamp == Constant(3.0)
    with pytest.raises(UserError, match="form.grad_clamp=constant needs form.grad_clamp.value=VALUE"):
        _anchords(form="code", **{"form.grad_clamp": "constant"})
    assert _anchords(form="code", **{"form.grad_clamp.end_step": "none"}).form.grad_clamp == LinearRamp(1.5, 2.0, 0, None)


@pytest.mark.parametrize("raw, message", [
    ({"weighting": "nope"}, "weighting='nope': choose one of sds, uniform, fantasia3d"),
    ({"form": "magic"}, "form='magic': choose one of paper, code"),
    ({"timesteps.t_max": "1.5"}, "timesteps: timestep fractions must lie within (0, 1)"),
    ({"timesteps.t_min": "0.9", "timesteps.t_max": "0.5"}, "t_min (0.9) must be below every t_max (0.5)"),
    ({"timesteps": "max-switch", "timesteps.t_max_after": "0.01"}, "must be below every t_max (0.01)"),
    ({"finetune": "on", "finetune.lr": "0"}, "finetune: lr must be positive"),
    ({"image_scale": "-1"}, "--set image_scale=-1: must not be negative"),
    ({"form": "code", "form.guidance_scale": "-3"}, "--set form.guidance_scale=-3: must not be negative"),
    ({"filter_threshold": "0"}, "filter_threshold must be positive"),
    ({"image_scale.x": "1"}, "image_scale is a single value, it has no fields"),
    ({"form": "none"}, "choose one of paper, code"),  # the form is not optional
    ({"guidance_scale": "50"}, ("guidance_scale is form.guidance_scale, a field of form=code; this config has "
                                "form=paper, so add --set form=code")),
    ({"timesteps.nope": "1"}, "unknown --set key(s) 'timesteps.nope'"),
])
def test_bad_values_are_refused_with_one_line(raw, message):
    with pytest.raises(UserError) as err:
        _anchords(**raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_method_validates_its_schedules_and_literals():
    for entry in METHODS:
        cfg, _ = resolve_run_config(entry.name, {"representation": "gaussians"} if entry.kind == "generate" else {},
                                    kind=entry.kind)
        hints = typing.get_type_hints(entry.config_type)
        if "timesteps" in hints:
            with pytest.raises(UserError, match="within"):
                method_config(cfg, {"timesteps": "uniform", "timesteps.t_min": "0"}, entry.kind)
        if "weighting" in hints:
            with pytest.raises(UserError, match="choose one of"):
                method_config(cfg, {"weighting": "cubic"}, entry.kind)


def test_the_readme_examples_work(tmp_path, capsys):
    """--method anchords --set form=code --set form.guidance_scale=50 and --method sds --set guidance_scale=50."""
    assert _anchords(form="code", **{"form.guidance_scale": "50"}).form.guidance_scale == 50.0
    cfg, rest = resolve_run_config("sds", {"guidance_scale": "50", "steps": "300"})
    assert cfg.steps == 300 and method_config(cfg, rest).guidance_scale == 50.0
    out = tmp_path / "run"
    assert main(["generate", "a red cube", "--method", "anchords", "--set", "guidance_scale=50", "--out", str(out)]) == 2
    assert "--set form=code" in capsys.readouterr().err and not out.exists()  # refused before writing


def test_run_and_representation_keys_stay_flat():
    cfg, rest = resolve_run_config("anchords", {"steps": "7", "lr_colors": "0.5", "form": "code"})
    assert cfg.steps == 7 and cfg.representation_config.lr_colors == 0.5 and rest == {"form": "code"}
    with pytest.raises(UserError, match="--set method_config is not a setting"):
        resolve_run_config("sds", {"method_config": "x"})


def _config_classes() -> set[type]:
    """RunConfig, every representation config, every method config and every dataclass nested in them."""
    seen: set[type] = set()
    todo = [RunConfig, *(e.config_type for e in REPRESENTATIONS.values()), *(m.config_type for m in METHODS)]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for kind in typing.get_type_hints(cls).values():
            todo += list((variants(kind) or {}).values())
    return seen


def test_every_config_field_has_a_doc():
    undocumented = [f"{cls.__name__}.{f.name}" for cls in _config_classes() for f in dataclasses.fields(cls)
                    if not field_docs(cls).get(f.name)]
    assert not undocumented, undocumented


def test_methods_method_prints_every_key_with_type_default_and_doc(capsys):
    assert main(["methods", "anchords"]) == 0
    out = capsys.readouterr().out
    assert "form: paper | code = paper  — " in out
    assert "form.guidance_scale: float = 101  — CFG s" in out and "with form=code:" in out
    assert "timesteps.switch_step: int = 500  — " in out and "finetune.lr: float = 0.0001  — Adam" in out
    assert main(["methods", "nope"]) == 2


def test_apply_overrides_leaves_the_config_untouched_without_keys():
    c = AnchorDSConfig(form=CodeForm(negative_prompt="x"))
    assert apply_overrides(c, {}) == c
