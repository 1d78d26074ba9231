"""The benchmark grid in this process: suites, run identity, measurements, the merged CSV, resume, presets,
tuning and the report (tiny random prior and judge; a few steps per run)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch

from distill3d.bench import grid
from distill3d.bench.engines import serial
from distill3d.bench.grid import (
    COLUMNS,
    RunSpec,
    check_specs,
    downsample,
    make_specs,
    measure_run,
    merge,
    parse_series,
    run_grid,
)
from distill3d.bench.report import Table, _distinct, _drawn, moving_variance, oscillation
from distill3d.bench.stats import bootstrap, paired
from distill3d.bench.suite import load_suite, parse_suite, shipped_suites
from distill3d.bench.tune import candidates, read_presets, tune
from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.evaluation.toy import AZIMUTHS, color_error, silhouette_iou
from distill3d.pipeline.config import resolve_run_config
from distill3d.pipeline.loop import build_method
from distill3d.pipeline.priors import PriorSpec
from distill3d.priors.toy.prior import ToyPrior
from distill3d.toyworld.grammar import parse_caption

from .conftest import lively_prior

#: Runs small enough for a test: 2 steps, 1 view, 150 Gaussians, tiny exports.
TINY = {"steps": "2", "views_per_step": "1", "num_gaussians": "150", "export_size": "16", "turntable_frames": "2",
        "mesh_resolution": "12"}


@pytest.fixture
def tiny_prior(monkeypatch):
    prior = lively_prior()
    monkeypatch.setattr(grid, "_PRIORS", {})
    monkeypatch.setattr(grid, "load_prior", lambda spec: prior)
    return prior


# ---------------------------------------------------------------- suites


def test_shipped_suites_split_dev_and_test_and_cover_every_kind():
    assert {"toy-core", "toy-hard"} <= set(shipped_suites())
    core = load_suite("toy-core")
    assert core.split and not set(core.dev) & set(core.test)
    assert {parse_caption(p).kind for p in core.test} == {"single", "on top of", "next to", "face"}
    hard = load_suite("toy-hard")
    assert all(parse_caption(p).kind != "single" for p in hard.dev + hard.test)


def test_toy_claims_is_drawn_by_its_rule_with_power_per_kind():
    from distill3d.bench.suite import CLAIMS_DEV, CLAIMS_TEST, SUITES_DIR, draw_claims_suite
    from distill3d.toyworld.grammar import is_heldout

    assert (SUITES_DIR / "toy-claims.txt").read_text() == draw_claims_suite()  # the shipped file is current
    claims = load_suite("toy-claims")
    assert claims.split and not set(claims.dev) & set(claims.test)
    kinds = [parse_caption(p).kind for p in claims.test]
    assert {k: kinds.count(k) for k in CLAIMS_TEST} == {"next to": 12, "on top of": 12, "single": 8, "face": 8}
    dev_kinds = [parse_caption(p).kind for p in claims.dev]
    assert {k: dev_kinds.count(k) for k in CLAIMS_DEV} == CLAIMS_DEV and CLAIMS_DEV["next to"] >= 12
    pairs = [parse_caption(p) for p in claims.dev + claims.test if parse_caption(p).relation]
    assert all(s.objects[0].color != s.objects[1].color and not s.has_face for s in pairs)
    text = draw_claims_suite()
    marked = {line.split("#")[0].strip() for line in text.splitlines() if "held out" in line and not line.startswith("#")}
    assert marked == {p for p in claims.dev + claims.test if is_heldout(parse_caption(p))} and marked


def test_any_prompt_file_is_a_suite_and_bad_files_are_one_line_errors(tmp_path):
    plain = tmp_path / "mine.txt"
    plain.write_text("# my prompts\na red cube\n\na blue sphere  # trailing comment\na red cube\n")
    s = load_suite(str(plain))
    assert s.test == s.dev == ("a red cube", "a blue sphere") and not s.split
    with pytest.raises(UserError, match="both"):
        parse_suite("[dev]\na red cube\n[test]\na red cube\n", "x")
    with pytest.raises(UserError, match="unknown section"):
        parse_suite("[train]\na red cube\n", "x")
    with pytest.raises(UserError, match="no prompts"):
        parse_suite("# nothing\n", "x")
    with pytest.raises(UserError, match="no suite"):
        load_suite(str(tmp_path / "missing.txt"))


# ---------------------------------------------------------------- run identity and the grid's specs


def test_run_id_names_the_settings_not_the_preset_label():
    a = RunSpec("a red cube", "sds", "default", "toy", 0, (("steps", "2"),))
    assert a.run_id == RunSpec("a red cube", "sds", "tuned", "toy", 0, (("steps", "2"),)).run_id
    for other in (RunSpec("a red cube", "sds", "default", "toy", 1, (("steps", "2"),)),
                  RunSpec("a red cube", "sds", "default", "toy-words", 0, (("steps", "2"),)),
                  RunSpec("a red cube", "sds", "default", "toy", 0, (("steps", "3"),)),
                  RunSpec("a red cube", "uds", "default", "toy", 0, (("steps", "2"),))):
        assert other.run_id != a.run_id
    assert RunSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_make_specs_is_the_full_product_with_presets_under_the_overrides():
    specs = make_specs(["a red cube", "a blue face"], ["sds", "uds"],
                       {"default": {}, "tuned": {"sds": {"guidance_scale": "50", "steps": "9"}}},
                       ["toy", "toy-words"], [0, 1, 2], {"steps": "4"})
    assert len(specs) == 2 * 2 * 2 * 2 * 3
    tuned_sds = [s for s in specs if s.preset == "tuned" and s.method == "sds"]
    assert all(dict(s.overrides)["guidance_scale"] == "50" and dict(s.overrides)["steps"] == "4" for s in tuned_sds)
    tuned_uds = {s.run_id for s in specs if s.preset == "tuned" and s.method == "uds"}
    assert tuned_uds == {s.run_id for s in specs if s.preset == "default" and s.method == "uds"}


# ---------------------------------------------------------------- measurements


def test_silhouette_iou_and_colour_error_on_known_masks():
    alpha = torch.zeros(2, 1, 4, 4)
    truth = torch.zeros(2, 1, 4, 4)
    alpha[0, :, :2, :] = 1  # 8 px
    truth[0, :, :, :2] = 1  # 8 px, 4 shared
    alpha[1, :, 0, 0] = 1  # view 1: disjoint
    truth[1, :, 3, 3] = 1
    iou = silhouette_iou(alpha, truth)
    assert iou.tolist() == pytest.approx([4 / 12, 0.0])
    assert silhouette_iou(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)).tolist() == [1.0]
    image, gt = torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    image[0, 0] = 0.5  # red channel off by 0.5 everywhere: 0.5 / 3 per pixel
    err = color_error(image, alpha, gt, truth)
    assert err.tolist() == pytest.approx([0.5 / 3, 1.0])  # view 1 shares no pixel


def _fake_run(kind: str, history: list[dict]) -> dict:
    views = [{"azimuth": a, "seen": "x", "objects_ok": i < 4, "relation_ok": True, "all_ok": i < 4,
              "front_seen": kind == "face" and i in (0, 4),
              "front_truth": kind == "face" and i in (0, 1, 7), "image_mse": 0.01, "count_ok": True,
              "shapes_ok": i < 6, "colors_ok": True, "iou": 0.5 + 0.01 * i, "color_error": 0.1}
             for i, a in enumerate(AZIMUTHS)]
    return {"steps": 600, "history": history, "prior_calls": 600, "prior_evaluations": 4800,
            "seconds": {"optimisation": 50.0, "total_this_session": 60.0},
            "judge": {"kind": kind, "match_rate": 0.5, "views": views, "janus_views": 1, "iou": 0.535,
                      "color_error": 0.1}}


def test_measure_run_reads_the_judge_the_truth_metrics_and_the_gradient_series():
    history = [{"step": s, "loss": 1.0, "grad_norm": float(s % 7), "t": 500.0} for s in [1, *range(10, 601, 10)]]
    spec = RunSpec("a blue face", "sds", "default", "toy", 0, tuple(sorted({**grid.BENCH_OVERRIDES,
                                                                            "steps": "600"}.items())))
    row = measure_run(spec, _fake_run("face", history))
    assert set(row) <= set(COLUMNS)
    assert row["match"] == 0.5 and row["shapes_ok"] == 6 / 8 and row["objects_ok"] == 0.5
    assert row["front_seen"] == "10001000" and row["front_truth"] == "11000001"
    assert row["front_error"] == pytest.approx(3 / 8)  # views 1 and 7 (eyes missed), 4 (eyes not there)
    assert row["iou_a045"] == pytest.approx(0.51) and row["color_a315"] == 0.1
    values = [h["grad_norm"] for h in history]
    assert row["grad_norm_mean"] == pytest.approx(sum(values) / len(values))
    series = parse_series(row["grad_norm_series"])
    assert len(series) == grid.SERIES_POINTS and series[0] == (1, 1.0) and series[-1][0] == 600
    assert row["overrides"] == "steps=600"  # the bench's own light-export settings are left out
    assert row["l_rec"] is None and row["keep_rate"] is None  # the history logs neither
    single = measure_run(spec, _fake_run("single", history))
    assert "front_seen" not in single and "front_error" not in single


def test_downsample_keeps_the_ends_and_short_series_whole():
    pts = [(i, float(i)) for i in range(100)]
    out = parse_series(downsample(pts, 5))
    assert [s for s, _ in out] == [0, 25, 50, 74, 99]
    assert parse_series(downsample(pts[:3], 5)) == pts[:3]


# ---------------------------------------------------------------- the merged CSV


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grid_runs_records_resumes_and_never_duplicates(tmp_path, tiny_prior, monkeypatch):
    out = tmp_path / "bench"
    specs = make_specs(["a red cube", "a blue face"], ["sds"], {"default": {}}, ["toy"], [0], TINY)
    rows = run_grid(specs, out, serial(), log=lambda line: None)
    assert len(rows) == 2 and {r["prompt"] for r in rows} == {"a red cube", "a blue face"}
    face = next(r for r in rows if r["prompt"] == "a blue face")
    assert face["kind"] == "face" and len(face["front_seen"]) == 8 and face["steps"] == "2"
    for r in rows:
        assert 0 <= float(r["match"]) <= 1 and 0 <= float(r["iou"]) <= 1 and float(r["seconds"]) > 0
        assert int(r["prior_calls"]) > 0 and float(r["peak_rss_mb"]) > 0 and r["grad_norm_series"]
    assert _rows(out / "results.csv") == rows

    ran = []

    def count(spec, out_dir, clip=None):
        ran.append(spec.prompt)
        return real(spec, out_dir, clip)

    real = grid.execute
    monkeypatch.setattr(grid, "execute", count)
    monkeypatch.setattr("distill3d.bench.engines.execute", count)
    cube = next(s for s in specs if s.prompt == "a red cube")
    (out / "runs" / cube.dir_name / grid.RESULT_FILE).unlink()  # a partial run: its directory stays
    assert run_grid(specs, out, serial(), log=lambda line: None) and ran == ["a red cube"]  # only it is redone
    # the same runs under a second preset label: nothing runs, each run is listed twice
    both = specs + make_specs(["a red cube", "a blue face"], ["sds"], {"tuned": {}}, ["toy"], [0], TINY)
    rows = run_grid(both, out, serial(), log=lambda line: None)
    assert ran == ["a red cube"] and len(rows) == 4 and {r["preset"] for r in rows} == {"default", "tuned"}
    # rows of another machine arrive in results.csv: kept, and merging again duplicates nothing
    with open(out / "results.csv", "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), lineterminator="\n")
        w.writerow(rows[0])  # a duplicate
        w.writerow(rows[0] | {"run_id": "elsewhere000", "seed": "7"})
    merged = merge(out)
    assert len(merged) == 5 and sum(r["run_id"] == "elsewhere000" for r in merged) == 1
    assert len(merge(out)) == 5


def test_a_toy_pair_runs_as_one_prior_named_in_the_run_and_judged(tmp_path, monkeypatch):
    """``--priors toy+toy-mv``: AnchorDS's rows on the base, the multi-view term's on the second prior; the run id,
    the directory and the row name the pair, and the asset is judged against the toy world."""
    from distill3d.priors.paired import PairedPrior
    from distill3d.priors.toy.model import with_views

    loaded = []

    def load(spec):
        loaded.append(spec)
        base = lively_prior()
        return PairedPrior(base, ToyPrior(with_views(lively_prior(1).model, 4)))

    monkeypatch.setattr(grid, "_PRIORS", {})
    monkeypatch.setattr(grid, "load_prior", load)
    four = {**TINY, "views_per_step": "4", "view_azimuths": "even"}
    specs = make_specs(["a red cube next to a blue sphere"], ["anchords-mv"], {"default": {}}, ["toy+toy-mv"], [0],
                       four)
    check_specs(specs)
    rows = run_grid(specs, tmp_path / "b", serial(), log=lambda line: None)
    assert loaded == [PriorSpec("toy", mv_prior="toy-mv")]
    assert rows[0]["prior"] == "toy+toy-mv" and not rows[0]["note"] and rows[0]["kind"] == "next to"
    assert "_toy+toy-mv_" in specs[0].dir_name and specs[0].run_id != replace(specs[0], prior="toy-mv").run_id


def test_bench_run_command_checks_input_before_running(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "run", "--suite", "toy-core", "--methods", "sds,magic", "--seeds", "0", "--out", str(out)]) == 2
    assert "unknown generate method 'magic'" in capsys.readouterr().err
    assert main(["bench", "run", "--suite", "toy-core", "--priors", "toy,nope", "--out", str(out)]) == 2
    assert "unknown prior 'nope'" in capsys.readouterr().err
    assert main(["bench", "run", "--suite", "toy-core", "--priors", "toy+sd", "--out", str(out)]) == 2
    assert "unknown prior 'sd' in 'toy+sd'" in capsys.readouterr().err
    assert main(["bench", "run", "--suite", "toy-core", "--seeds", "x", "--out", str(out)]) == 2
    assert main(["bench", "run", "--suite", "no-such-suite", "--out", str(out)]) == 2
    assert not out.exists()


# ---------------------------------------------------------------- statistics and the report


def test_bootstrap_interval_and_pairing():
    assert bootstrap([]) is None and bootstrap([0.3]).n == 1
    flat = bootstrap([0.5] * 10)
    assert (flat.mean, flat.low, flat.high) == (0.5, 0.5, 0.5)
    wide, narrow = bootstrap([0, 1] * 5), bootstrap([0, 1] * 50)
    assert wide.low < 0.5 < wide.high and narrow.high - narrow.low < wide.high - wide.low
    assert bootstrap([0, 1] * 5) == wide  # a fixed seed: reports are reproducible
    prompt_effect = {(p, 0): float(p) for p in range(8)}  # prompts differ a lot; the method adds 0.1
    better = {k: v + 0.1 for k, v in prompt_effect.items()}
    d = paired(better, prompt_effect)
    assert d.mean == pytest.approx(0.1) and d.high - d.low < 1e-9
    unpaired = bootstrap(list(better.values()))
    assert unpaired.high - unpaired.low > 1.0


def test_moving_variance():
    assert moving_variance([1, 1, 1, 5, 5, 5], 3) == pytest.approx([0, 32 / 9, 32 / 9, 0])


def test_oscillation_is_free_of_the_gradient_scale():
    row = {"grad_norm_series": ";".join(f"{s}:{v}" for s, v in enumerate([1, 3, 1, 3, 1, 3, 1, 3]))}
    big = {"grad_norm_series": ";".join(f"{s}:{1000 * v}" for s, v in enumerate([1, 3, 1, 3, 1, 3, 1, 3]))}
    flat = {"grad_norm_series": ";".join(f"{s}:7" for s in range(8))}
    assert oscillation(row) == pytest.approx(oscillation(big)) and oscillation(row) > 0.2
    assert oscillation(flat) == 0
    assert oscillation({"grad_norm_series": "0:1;1:2"}) is None  # shorter than a window


def test_a_preset_with_the_same_runs_as_another_is_drawn_once():
    rows = [{"method": "sds", "preset": p, "run_id": i} for p in ("default", "tuned") for i in ("a", "b")]
    rows += [{"method": "isd", "preset": "default", "run_id": "c"}, {"method": "isd", "preset": "tuned", "run_id": "d"}]
    t = Table(rows)
    assert _drawn(t, "sds", ["default", "tuned"]) == [("default", "sds (default = tuned)")]
    assert _drawn(t, "isd", ["default", "tuned"]) == [("default", "isd (default)"), ("tuned", "isd (tuned)")]
    # paired against sds: a method whose tuned runs are its default runs still has two distinct differences
    # when the baseline's tuned runs differ from its default ones
    rows = rows[:4] + [{"method": "uds", "preset": p, "run_id": "e"} for p in ("default", "tuned")]
    diffs = [("uds", "default", "d0"), ("uds", "tuned", "d1")]
    assert _distinct(Table(rows), diffs, ["default", "tuned"]) == [("uds (default = tuned)", "d0")]
    rows[1]["run_id"] = "z"  # sds (default) now differs from sds (tuned)
    assert _distinct(Table(rows), diffs, ["default", "tuned"]) == [("uds (default)", "d0"), ("uds (tuned)", "d1")]


def _synthetic_csv(out_dir):
    """Rows where anchords beats sds by exactly 0.25 match on every (prompt, seed)."""
    out_dir.mkdir(parents=True)
    rows = []
    for method, bonus in (("sds", 0.0), ("anchords", 0.25)):
        for preset in ("default", "tuned"):
            for p, (prompt, kind) in enumerate((("a red cube", "single"), ("a blue face", "face"))):
                for seed in range(3):
                    row = {c: "" for c in COLUMNS}
                    row |= {"run_id": f"{method}{preset}{p}{seed}", "prompt": prompt, "kind": kind, "method": method,
                            "preset": preset, "prior": "toy", "seed": str(seed), "steps": "10",
                            "match": str(0.25 * seed / 2 + 0.1 * p + bonus), "iou": "0.5", "color_error": "0.1",
                            "grad_norm_var": "0.01", "grad_norm_series": ";".join(f"{s}:{1 + (s % 3)}" for s in
                                                                                  range(0, 100, 10)),
                            "seconds": "5", "seconds_total": "6", "prior_calls": "10", "prior_evals": "80",
                            "peak_rss_mb": "300"}
                    if method == "anchords":
                        row |= {"l_rec": "0.01", "keep_rate": "0.5"}
                    if kind == "face":
                        row |= {"front_seen": "11000001", "front_truth": "11000011", "front_error": "0.125",
                                "janus_views": "0"}
                    rows.append(row)
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_report_is_made_from_results_csv_alone(tmp_path, capsys):
    out = tmp_path / "bench"
    _synthetic_csv(out)
    assert main(["bench", "report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| anchords | default |" in md and "| anchords | tuned |" in md and "| sds | tuned |" in md
    assert "| anchords | default | 25% [25%, 25%] |" in md  # the paired difference: exactly +0.25 everywhere
    assert "anchords: L_rec 0.01 [0.01, 0.01], keep-rate 50% [50%, 50%]" in md and "sds: L_rec" not in md
    iou = md[md.index("### Silhouette IoU against the truth per method, preset and kind"):]
    assert "| sds | default | 0.5 [0.5, 0.5] | 0.5 [0.5, 0.5] | 0.5 [0.5, 0.5] |" in iou  # all, single, face
    for png in ("match_by_kind", "paired_vs_sds", "accuracy_vs_time", "grad_variance", "front_vs_azimuth"):
        assert (out / f"{png}.png").stat().st_size > 1000 and f"({png}.png)" in md
    assert main(["bench", "report", str(tmp_path)]) == 2
    assert "holds no results.csv" in capsys.readouterr().err


# ---------------------------------------------------------------- tuning


def test_candidates_are_an_equal_budget_default_first():
    for method in ("sds", "anchords", "uds"):
        cands, _ = candidates(method, 4, {})
        assert len(cands) == 4 and cands[0] == {} and len({json.dumps(c, sort_keys=True) for c in cands}) == 4
    sds, _ = candidates("sds", 100, {})
    cfg, rest = resolve_run_config("sds", {})
    preset = build_method(cfg, rest).config.guidance_scale
    scales = {c.get("guidance_scale") for c in sds}
    assert scales == {None, f"{preset / 2:g}", f"{preset * 2:g}"}  # x0.5 and x2 of the preset's
    assert any("lr_means" in c for c in sds)
    no_scale, missing = candidates("anchords", 100, {})
    assert "guidance scale" in missing and all("guidance_scale" not in c for c in no_scale)


def test_tune_writes_presets_that_bench_run_reads(tmp_path, tiny_prior):
    suite = parse_suite("[dev]\na red cube\n[test]\na blue sphere\n", "mini")
    presets = tmp_path / "presets.json"
    result = tune(suite, ["sds"], 2, [0], "toy", TINY, tmp_path / "tune", serial(), presets, log=lambda line: None)
    chosen = result["methods"]["sds"]
    assert len(chosen["candidates"]) == 2 and chosen["candidates"][0]["overrides"] == {}
    assert chosen["score"] == max(c["score"] for c in chosen["candidates"])
    assert read_presets(presets) == {"sds": chosen["overrides"]}
    rows = _rows(tmp_path / "tune" / "results.csv")
    assert {r["preset"] for r in rows} == {"tune-0", "tune-1"} and {r["prompt"] for r in rows} == {"a red cube"}
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UserError, match="not a presets file"):
        read_presets(bad)
    # bench run --presets: every test run with the defaults and with the tuned settings, side by side
    suite_file = tmp_path / "mini.txt"
    suite_file.write_text("[dev]\na red cube\n[test]\na blue sphere\n")
    sets = [a for k, v in TINY.items() if k != "steps" for a in ("--set", f"{k}={v}")]
    out = tmp_path / "run"
    assert main(["bench", "run", "--suite", str(suite_file), "--methods", "sds", "--seeds", "0", "--steps", "2",
                 *sets, "--presets", str(presets), "--out", str(out)]) == 0
    rows = _rows(out / "results.csv")
    assert sorted(r["preset"] for r in rows) == ["default", "tuned"] and {r["prompt"] for r in rows} == {"a blue sphere"}
    tuned = next(r for r in rows if r["preset"] == "tuned")
    same = chosen["overrides"] == {}
    assert (tuned["run_id"] == rows[0]["run_id"]) == same  # settings equal to the defaults: one run, two rows
    assert all(f"{k}={v}" in tuned["overrides"] for k, v in chosen["overrides"].items())


def test_a_failed_run_is_a_scored_result_not_a_crash(tmp_path, tiny_prior, monkeypatch):
    from distill3d.scene.gaussians import GaussianModel

    def export_fails(prompt, cfg, rest, run_dir, prior_spec, prior=None, progress=True):
        run_dir.mkdir(parents=True)
        GaussianModel.random_in_sphere(200, radius=0.5, opacity=0.9,
                                       generator=torch.Generator().manual_seed(0)).save(run_dir / "gaussians.ply")
        raise UserError("density threshold 0.5 is outside the density range")

    def gradient_fails(prompt, cfg, rest, run_dir, prior_spec, prior=None, progress=True):
        raise UserError("step 3: the guidance gradient is not finite")

    spec = make_specs(["a red cube"], ["sds"], {"default": {}}, ["toy"], [0], TINY)[0]
    monkeypatch.setattr(grid, "generate", export_fails)
    row = grid.execute(spec, str(tmp_path))
    assert "density threshold" in row["note"] and row["kind"] == "single"
    assert 0 < row["iou"] < 1 and row["prior_calls"] == 0  # judged from the asset file it saved
    monkeypatch.setattr(grid, "generate", gradient_fails)
    row = grid.execute(spec, str(tmp_path))  # the partial directory of the first attempt is removed first
    assert "not finite" in row["note"]
    assert (row["match"], row["iou"], row["color_error"], row["objects_ok"]) == (0.0, 0.0, 1.0, 0.0)


def test_remeasure_rejudges_saved_assets_without_optimising(tmp_path, tiny_prior, monkeypatch):
    """A run measured by an older evaluation gets today's judgement from its saved asset; seconds are kept."""
    specs = make_specs(["a red cube next to a blue sphere"], ["sds"], {"default": {}}, ["toy"], [0], TINY)
    run_grid(specs, tmp_path, serial(), log=lambda s: None)
    path = grid.result_path(tmp_path, specs[0])
    before = json.loads(path.read_text())
    stale = {**before, "row": {**before["row"], "layout": "", "consistent": "", "match": 0.123, "seconds": 42.0}}
    path.write_text(json.dumps(stale))
    calls = []
    monkeypatch.setattr(grid, "generate", lambda *a, **k: calls.append(a))  # nothing may be optimised
    rows = grid.remeasure(tmp_path, log=lambda s: None)
    assert not calls and len(rows) == 1
    assert float(rows[0]["match"]) == pytest.approx(before["row"]["match"], abs=1e-6)
    assert rows[0]["layout"] != "" and rows[0]["consistent"] in ("0", "1", "0.0", "1.0")
    assert float(rows[0]["seconds"]) == 42.0


def test_a_finished_run_is_reused_only_with_the_settings_it_was_made_with(tmp_path):
    from distill3d.bench.grid import check_reusable, result_path
    from distill3d.pipeline.config import resolve_run_config
    from distill3d.pipeline.generate import PRESET_FILE, run_preset
    from distill3d.pipeline.priors import PriorSpec

    spec = RunSpec("a red cube", "sds", "default", "toy", 0, (("steps", "2"),))
    run_dir = result_path(tmp_path, spec).parent
    run_dir.mkdir(parents=True)
    check_reusable(tmp_path, spec)  # no preset.json (results.csv only): nothing to check
    cfg, rest = resolve_run_config("sds", {"steps": "2", "seed": "0"})
    preset = run_preset(spec.prompt, cfg, rest, PriorSpec(kind="toy"))[2]
    (run_dir / PRESET_FILE).write_text(json.dumps(preset))
    check_reusable(tmp_path, spec)  # made with what the spec resolves to today
    preset["method_config"]["guidance_scale"] = 42.0  # a registry default that has changed since
    (run_dir / PRESET_FILE).write_text(json.dumps(preset))
    with pytest.raises(UserError, match="guidance_scale 42.0, and the same run would now use 15.0") as err:
        check_reusable(tmp_path, spec)
    assert "\n" not in str(err.value)
    del preset["run"]["views_per_step"]  # a setting added after the run: refused unless None now
    preset["method_config"]["guidance_scale"] = 15.0
    (run_dir / PRESET_FILE).write_text(json.dumps(preset))
    with pytest.raises(UserError, match="views_per_step"):
        check_reusable(tmp_path, spec)
    del preset["run"]["views_per_group"]  # ... and accepted where the new setting is None (its old meaning)
    preset["run"]["views_per_step"] = cfg.views_per_step
    (run_dir / PRESET_FILE).write_text(json.dumps(preset))
    check_reusable(tmp_path, spec)
