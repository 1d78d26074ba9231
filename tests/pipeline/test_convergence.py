"""The early stop (``RunConfig.converge_*``, ``pipeline.loop.Convergence``): when it stops, that it leaves the
random stream alone, that it survives resume, and what ``run.json`` records."""

import json

import pytest
import torch

from distill3d.pipeline.config import resolve_run_config
from distill3d.pipeline.generate import generate
from distill3d.pipeline.loop import Convergence, build_method, optimise
from distill3d.scene.gaussians import GaussianModel

from .conftest import make_tiny_prior

FAST = {"views_per_step": "2", "num_gaussians": "150", "checkpoint_every": "0", "preview_every": "0",
        "export_size": "16", "turntable_frames": "4", "mesh_resolution": "16"}
PROMPT = "a red cube"


def _optimise(out, **raw):
    base = {k: v for k, v in FAST.items() if k != "num_gaussians" or raw.get("representation") != "radiance"}
    cfg, rest = resolve_run_config("sds", {**base, **raw})
    return optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), out)


def test_check_measures_the_change_of_fixed_camera_renders():
    g = torch.Generator().manual_seed(0)
    rep = GaussianModel.random_in_sphere(100, generator=g)
    conv = Convergence()
    assert conv.check(rep, 16, tol=0.01) is None and conv.calm == 0  # nothing to compare with yet
    assert conv.check(rep, 16, tol=0.01) == 0.0 and conv.calm == 1  # unchanged asset: no change
    with torch.no_grad():
        rep.sh_dc.add_(1.0)  # every colour moves
    change = conv.check(rep, 16, tol=0.01)
    assert change > 0.01 and conv.calm == 0


def test_a_still_render_stops_after_patience_checks_but_not_before_min_steps(tmp_path):
    # tolerance 1: every check after the first is calm, so the stop comes at the first check at or after
    # min_steps with two calm checks behind it
    _, state = _optimise(tmp_path / "a", steps="40", converge_every="4", converge_tol="1", converge_patience="2",
                         min_steps="10")
    assert state.converged_at == 12 and state.step == 12  # checks at 4 (first), 8 (calm 1), 12 (calm 2, ≥ 10)
    _, state = _optimise(tmp_path / "b", steps="40", converge_every="4", converge_tol="1", converge_patience="2",
                         min_steps="30")
    assert state.converged_at == 32 and state.step == 32
    changes = [h["change"] for h in state.history if "change" in h]
    assert len(changes) == 32 // 4 - 1 and all(c >= 0 for c in changes)  # every check but the first logs it


def test_zero_tolerance_or_no_checks_run_every_step(tmp_path):
    _, state = _optimise(tmp_path / "a", steps="12", converge_every="4", converge_tol="0", min_steps="0")
    assert state.converged_at is None and state.step == 12
    _, state = _optimise(tmp_path / "b", steps="12", converge_every="0", converge_tol="1", min_steps="0")
    assert state.converged_at is None and state.step == 12


@pytest.mark.parametrize("rep", [{}, {"representation": "radiance"}])  # a field samples at random in training
def test_the_check_draws_nothing_from_the_run_random_stream(tmp_path, rep):
    a, _ = _optimise(tmp_path / "a", steps="8", converge_every="2", converge_tol="0", min_steps="0", **rep)
    b, _ = _optimise(tmp_path / "b", steps="8", converge_every="0", **rep)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


class _Stop(Exception):
    pass


def test_resume_keeps_the_convergence_state_bit_for_bit(tmp_path):
    raw = {**FAST, "steps": "40", "converge_every": "3", "converge_tol": "1", "converge_patience": "2",
           "min_steps": "10", "checkpoint_every": "4"}
    cfg, rest = resolve_run_config("sds", raw)
    straight, s_state = optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), tmp_path / "a")

    def crash(step, log):
        if step == 10:
            raise _Stop

    with pytest.raises(_Stop):  # last checkpoint at step 8: checks at 3 and 6 behind it, calm 1
        optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), tmp_path / "b", on_step=crash)
    resumed, r_state = optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), tmp_path / "b",
                                resume=True)
    assert s_state.converged_at == r_state.converged_at == 12
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name


def test_run_file_and_summary_say_where_the_run_stopped(tmp_path):
    cfg, rest = resolve_run_config("sds", {**FAST, "steps": "30", "converge_every": "2", "converge_tol": "1",
                                           "converge_patience": "1", "min_steps": "4"})
    result = generate(PROMPT, cfg, rest, tmp_path / "run", prior=make_tiny_prior(), progress=False)
    run = json.loads((result.out_dir / "run.json").read_text())
    assert run["steps"] == 30 and run["steps_run"] == 4 and run["converged_at"] == 4
    from distill3d.pipeline.report import run_summary

    assert "4 steps (converged; at most 30)" in run_summary(result.out_dir, run)


def test_logged_steps_carry_the_method_diagnostic_scalars(tmp_path):
    """AnchorDS reports L_rec (Eq. 13) and the filter's keep-rate (Eq. 14) through Diagnostics.scalars; the
    loop logs them on its recorded steps (the benchmark's L_rec / keep-rate columns read them)."""
    cfg, rest = resolve_run_config("anchords-filter", {**FAST, "steps": "10", "converge_every": "0"})
    _, state = optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), tmp_path / "a")
    logged = [h for h in state.history if "l_rec" in h]
    assert [h["step"] for h in logged] == [1, 10]
    assert all(h["l_rec"] > 0 and 0.0 <= h["keep_rate"] <= 1.0 for h in logged)
    cfg, rest = resolve_run_config("sds", {**FAST, "steps": "10", "converge_every": "0"})
    _, state = optimise(PROMPT, cfg, build_method(cfg, rest), make_tiny_prior(), tmp_path / "b")
    assert not any("l_rec" in h for h in state.history)  # SDS has no reconstruction
