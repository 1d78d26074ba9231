"""Faults a run must survive: killed at a step, while writing a checkpoint or while exporting, it resumes
to byte-identical files; a NaN in the guidance gradient stops it with a ``UserError``, keeping the last good
checkpoint; ``--resume`` refuses other settings than the run's own, and refuses cleanly where there is
nothing to resume. Runs are tiny (tiny prior and judge from conftest, 6 steps, 16 px)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
import tqdm.std

from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.core.state import load_state
from distill3d.guidance.sds import SDS
from distill3d.pipeline import generate as generate_module
from distill3d.pipeline.config import resolve_run_config
from distill3d.pipeline.generate import generate
from distill3d.pipeline.priors import PriorSpec
from distill3d.toyworld import judge as judge_module

from .conftest import make_tiny_judge, make_tiny_prior

RAW = {"steps": "6", "views_per_step": "2", "num_gaussians": "200", "checkpoint_every": "2", "preview_every": "0",
       "export_size": "16", "turntable_frames": "4", "mesh_resolution": "16"}
PROMPT = "a red cube on top of a blue sphere"


class _Kill(Exception):
    """Stands for kill -9: raised from a patched function, it ends the run where it is."""


TOY = PriorSpec()


def _generate(out: Path, resume: bool = False, method: str = "sds", prompt: str = PROMPT,
              prior_spec: PriorSpec = TOY, progress: bool = False, **extra: str | None):
    """A tiny run; ``extra`` overrides RAW (None drops a key)."""
    raw = {k: v for k, v in {**RAW, **extra}.items() if v is not None}
    cfg, rest = resolve_run_config(method, raw)
    return generate(prompt, cfg, rest, out, prior_spec, prior=make_tiny_prior(), resume=resume, progress=progress)


def _files(run: Path) -> dict[str, bytes]:
    """Every file of a run by relative path; run.json without its timings, no checkpoint (it holds timings)."""
    out = {}
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        name = str(path.relative_to(run))
        if name == "checkpoint.safetensors":
            continue
        data = path.read_bytes()
        if name == "run.json":
            record = json.loads(data)
            record.pop("seconds")
            data = json.dumps(record, sort_keys=True).encode()
        out[name] = data
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, bytes]:
    """The files of the run never interrupted (module-scoped fixtures come before the autouse tiny judge:
    this one installs the same judge itself)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    judge = make_tiny_judge()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(judge_module.Judge, "load", staticmethod(lambda path=None: judge))
        _generate(run)
    return _files(run)


def _kill_at_step(k: int):
    original = generate_module.optimise

    def optimise(*args, on_step=None, **kwargs):
        def dying(step, log):
            on_step(step, log)
            if step == k:
                raise _Kill

        return original(*args, on_step=dying, **kwargs)

    return optimise


@pytest.mark.parametrize("step", [1, 3, 6])
def test_killed_at_a_step_resumes_to_identical_files(straight, tmp_path, monkeypatch, step):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(generate_module, "optimise", _kill_at_step(step))
        with pytest.raises(_Kill):
            _generate(run)
    if step < 2:  # killed before its first checkpoint: nothing to resume, and a plain rerun starts it
        with pytest.raises(UserError, match="nothing to resume.*without --resume"):
            _generate(run, resume=True)
        _generate(run)
    else:
        _generate(run, resume=True)
    assert _files(run) == straight


def test_killed_while_writing_a_checkpoint_resumes_to_identical_files(straight, tmp_path, monkeypatch):
    run, calls = tmp_path / "run", []
    original = safetensors.torch.save_file

    def save_file(tensors, path, metadata=None):
        calls.append(path)
        original(tensors, path, metadata=metadata)
        if len(calls) == 2:  # the step-4 checkpoint: half written when the process dies
            Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])
            raise _Kill

    with monkeypatch.context() as m:
        m.setattr(safetensors.torch, "save_file", save_file)
        with pytest.raises(_Kill):
            _generate(run)
    assert load_state(run / "checkpoint.safetensors")["step"] == 2  # the step-2 checkpoint survived whole
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "preset.json"]  # no temp file left
    _generate(run, resume=True)
    assert _files(run) == straight


@pytest.mark.parametrize("writer", ["write_obj", "save_turntable"])
def test_killed_while_exporting_resumes_to_identical_files(straight, tmp_path, monkeypatch, writer):
    run = tmp_path / "run"

    def dying(*args, **kwargs):
        raise _Kill

    with monkeypatch.context() as m:
        m.setattr(generate_module, writer, dying)
        with pytest.raises(_Kill):
            _generate(run)
    assert not (run / "run.json").exists()
    _generate(run, resume=True)
    assert _files(run) == straight


def test_a_nan_guidance_gradient_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = SDS.__call__

    def poisoned(self, prior, inp, generator):
        out = original(self, prior, inp, generator)
        if inp.step == 4:  # the fifth step; the checkpoint of step 4 was written just before it
            out = dataclasses.replace(out, grad=out.grad * float("nan"))
        return out

    monkeypatch.setattr(SDS, "__call__", poisoned)
    run = tmp_path / "run"
    with pytest.raises(UserError, match="step 5: the guidance gradient is not finite") as e:
        _generate(run)
    assert e.value.exit_code == 1 and "\n" not in str(e.value) and "checkpoint" in str(e.value)
    ck = load_state(run / "checkpoint.safetensors")
    assert ck["step"] == 4
    assert all(torch.isfinite(t).all() for t in ck["representation"].values())
    assert not (run / "run.json").exists() and not (run / "gaussians.ply").exists()


def test_a_resumed_progress_bar_shows_the_rate_of_the_steps_it_ran(tmp_path, monkeypatch, capsys):
    """Killed at step 5 (checkpoint at 4), resumed with a clock that moves one second per step: the bar
    ends at 6/6 and 1.00 step/s, not counting the steps of the first session (nor its first step twice)."""
    run, clock = tmp_path / "run", [1000.0]
    with monkeypatch.context() as m:
        m.setattr(generate_module, "optimise", _kill_at_step(5))
        with pytest.raises(_Kill):
            _generate(run)
    original = generate_module.optimise

    def ticking(*args, on_step=None, **kwargs):
        def tick(step, log):  # each step took one second when its callback comes
            clock[0] += 1.0
            on_step(step, log)

        return original(*args, on_step=tick, **kwargs)

    monkeypatch.setattr(generate_module, "optimise", ticking)
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    capsys.readouterr()
    _generate(run, resume=True, progress=True)
    frames = [f.strip() for f in capsys.readouterr().err.split("\r") if "step" in f]
    assert frames[0].startswith("sds:  83%") and "5/6" in frames[0], frames
    assert frames[-1].startswith("sds: 100%") and "6/6" in frames[-1] and "1.00step/s" in frames[-1], frames


# ---------------------------------------------------------------- --resume checks


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory) -> Path:
    """A run killed at step 3 (its checkpoint is at step 2)."""
    run = tmp_path_factory.mktemp("unfinished") / "run"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(generate_module, "optimise", _kill_at_step(3))
        with pytest.raises(_Kill):
            _generate(run)
    return run


@pytest.mark.parametrize("change, named", [
    ({"prompt": "a red cube"}, "prompt"),
    ({"method": "isd"}, "method"),
    ({"prior_spec": PriorSpec("toy-words")}, "prior"),
    ({"representation": "radiance", "num_gaussians": None}, "representation"),
    ({"steps": "4"}, "steps"),
    ({"seed": "1"}, "seed"),
    ({"num_gaussians": "300"}, "num_gaussians"),
    ({"guidance_scale": "50"}, "guidance_scale"),
])
def test_resume_refuses_other_settings_naming_the_first_difference(unfinished, change, named):
    before = {p.name: p.read_bytes() for p in unfinished.iterdir()}
    with pytest.raises(UserError, match=rf"cannot --resume .*: its {named} is ") as e:
        _generate(unfinished, resume=True, **change)
    assert "\n" not in str(e.value)
    assert {p.name: p.read_bytes() for p in unfinished.iterdir()} == before  # nothing rewritten


def test_resume_names_the_prompt_first_and_cuts_it(unfinished):
    long = " ".join(["a red cube"] * 40)
    with pytest.raises(UserError, match=r"cannot --resume \S+: its prompt is 'a red cube on top of a blue sphere' "
                                        r"but this command gives 'a blue cone'"):
        _generate(unfinished, resume=True, prompt="a blue cone", method="isd", steps="4")
    with pytest.raises(UserError) as e:  # a 40-caption prompt is refused by the grammar, its echo cut
        _generate(unfinished, resume=True, prompt=long)
    assert len(str(e.value)) < 600 and "…" in str(e.value)


def test_resume_without_a_checkpoint_says_so_in_one_line_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["generate", "a red cube", "--method", "sds", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: nothing to resume") and "without --resume" in err
    assert not out.exists()


def test_a_run_started_before_a_setting_existed_resumes_with_it_unset(tmp_path):
    """preset.json of a run made before ``prior.mv_prior`` existed: resuming with the setting left unset continues,
    setting it is a difference."""
    import json

    from distill3d.pipeline.generate import check_resume_matches

    old = {"prompt": "a red cube", "prior": {"kind": "toy", "model": None}, "run": {"steps": 3}}
    (tmp_path / "preset.json").write_text(json.dumps(old))
    check_resume_matches(tmp_path, {**old, "prior": {"kind": "toy", "model": None, "mv_prior": None}})
    with pytest.raises(UserError, match="its prior mv_prior is '\\(not recorded\\)' but this command gives 'x.pt'"):
        check_resume_matches(tmp_path, {**old, "prior": {"kind": "toy", "model": None, "mv_prior": "x.pt"}})
