"""``distill3d bench edit`` on a tiny configuration: pairs, the per-view judgement, the metrics, the table."""

from __future__ import annotations

import json

import pytest
import torch

from distill3d.bench import edit as bench
from distill3d.bench.edit import (
    EditPair,
    default_pairs,
    interval,
    judge_edit,
    make_pair,
    measure,
    parse_pairs,
    truth_asset,
)
from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.toyworld.grammar import ObjectSpec, parse_caption
from distill3d.toyworld.judge import JudgeResult

from .conftest import lively_prior


def test_pairs_name_the_one_changed_object_and_attribute():
    assert make_pair("a red cube", "a blue cube") == EditPair("a red cube", "a blue cube", 0, "color")
    two = make_pair("a blue cone on top of a yellow cube", "a blue cone on top of a yellow sphere")
    assert (two.edited, two.attribute) == (1, "shape")
    assert make_pair("a red cube", "a red cube").attribute == "identity"
    for bad in (("a red cube", "a blue sphere"), ("a red cube", "a red cube next to a blue sphere"),
                ("a red cube next to a blue sphere", "a green cube next to a pink sphere")):
        with pytest.raises(UserError, match="layout|one attribute of one object"):
            make_pair(*bad)
    assert parse_pairs("a red cube -> a blue cube; a red cube -> a red cube")[1].attribute == "identity"
    with pytest.raises(UserError, match="from -> to"):
        parse_pairs("a red cube")
    pairs = default_pairs()
    kinds = {(len(parse_caption(p.source).objects), p.attribute) for p in pairs}
    assert {(1, "color"), (1, "shape"), (2, "color"), (2, "shape"), (1, "identity"), (2, "identity")} <= kinds


def _seen(*objects, relation=None):
    return JudgeResult(True, tuple(ObjectSpec(s, c) for s, c in objects), relation, False, 0.9, (0.9,) * 2, 0.0)


def test_judge_edit_reads_the_edited_object_and_the_rest():
    colour = make_pair("a red cube next to a blue sphere", "a red cube next to a green sphere")
    # a "next to" pair may be reported in either order: the order agreeing with the target counts
    assert judge_edit(_seen(("sphere", "green"), ("cube", "red"), relation="next to"), colour) == (True, True)
    assert judge_edit(_seen(("cube", "red"), ("sphere", "blue"), relation="next to"), colour) == (False, True)
    assert judge_edit(_seen(("cube", "gray"), ("sphere", "green"), relation="next to"), colour) == (True, False)
    assert judge_edit(_seen(("cube", "red")), colour) == (False, False)  # one object seen: neither
    shape = make_pair("a red cube", "a red sphere")
    assert judge_edit(_seen(("sphere", "red")), shape) == (True, True)
    assert judge_edit(_seen(("sphere", "blue")), shape) == (True, False)  # one object: the other attribute
    nothing = JudgeResult(False, (), None, False, 0.9, (), 0.0)
    assert judge_edit(nothing, shape) == (False, False)


class _TruthJudge:
    """Stands in for the judge: reports the caption it is told each image shows."""

    def __init__(self, caption):
        spec = parse_caption(caption)
        self.result = _seen(*((o.shape, o.color) for o in spec.objects), relation=spec.relation)

    def __call__(self, images):
        return [self.result] * images.shape[0]


def test_measure_an_ideal_edit_and_an_edit_that_spoils_the_rest():
    pair = make_pair("a red cube next to a blue sphere", "a red cube next to a green sphere")
    source = truth_asset(parse_caption(pair.source), 1500)
    ideal = truth_asset(parse_caption(pair.target), 1500)
    good = measure(ideal, source, pair, _TruthJudge(pair.target))
    assert good["changed"] == 1 and good["kept"] == 1
    spoiled = truth_asset(parse_caption("a gray cube next to a green sphere"), 1500)
    bad = measure(spoiled, source, pair, _TruthJudge("a gray cube next to a green sphere"))
    assert bad["changed"] == 1 and bad["kept"] == 0
    assert bad["outside_mse"] > 5 * good["outside_mse"]  # the cube changed outside the sphere's mask
    assert good["inside_mse"] < measure(source, source, pair, _TruthJudge(pair.source))["inside_mse"]
    assert measure(source, source, make_pair(pair.source, pair.source), None) == {"drift": 0.0}


def test_interval_is_the_student_t_95_percent_half_width():
    mean, half = interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    assert interval([5.0]) == (5.0, None)


def test_bench_edit_command_on_a_tiny_configuration(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "load_prior", lambda spec: lively_prior())
    out = tmp_path / "bench"
    argv = ["bench", "edit", "--methods", "uds,pds", "--pairs", "a red cube -> a blue cube; a red cube -> a red cube",
            "--seeds", "0,1", "--steps", "2", "--source-points", "300", "--set", "views_per_step=2",
            "--set", "export_size=16", "--set", "turntable_frames=2", "--set", "mesh_resolution=16",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert len(result["runs"]) == 2 * 2 * 2
    for method in ("uds", "pds"):
        s = result["summary"][method]
        assert set(s) >= {"changed", "kept", "outside_mse", "inside_mse", "drift", "mean_seconds"}
        assert len(s["changed"]["per_seed"]) == 2 and s["changed"]["ci95"] is not None
        assert 0 <= s["changed"]["mean"] <= 1 and s["drift"]["mean"] >= 0
    md = (out / "results.md").read_text()
    assert "| uds |" in md and "identity drift" in md and md in printed + "\n"
    assert (out / "sources" / "red_cube" / "gaussians.ply").is_file()
    run = out / "runs" / "pds" / "red_cube_to_blue_cube_s1"
    assert (run / "before_after.png").is_file() and (run / "metrics.json").is_file()

    def no_more_edits(*args, **kwargs):
        raise AssertionError("a finished edit ran again")

    monkeypatch.setattr(bench, "edit", no_more_edits)
    assert main(argv) == 0  # resumes: every run is kept
    assert json.loads((out / "results.json").read_text())["runs"] == result["runs"]
    assert main([*argv[:3], "magic", *argv[4:]]) == 2
    assert "unknown edit method 'magic'" in capsys.readouterr().err


def test_truth_assets_have_finite_sizes_where_samples_coincide(tmp_path):
    """A cone's tip draws coincident surface samples (zero spacing); their surfels still get a finite size."""
    from distill3d.scene.registry import load_representation

    asset = truth_asset(parse_caption("a blue cone on top of a yellow cube"), 5000)
    assert torch.isfinite(asset.log_scales).all()
    asset.save(tmp_path / "gaussians.ply")
    assert torch.isfinite(load_representation(tmp_path / "gaussians.ply").log_scales).all()
