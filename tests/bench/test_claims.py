"""The claims ledger (bench.claims): its verdict rule, pairing, run plan, edits and claims.md."""

from __future__ import annotations

import csv

import pytest

from distill3d.bench.claims import (
    CLAIMS,
    MIN_PAIRS,
    PRIORS,
    TWO_OBJECTS,
    Arm,
    Claim,
    claim_priors,
    claim_prompts,
    claims_edit_pairs,
    evaluate_generation,
    generation_specs,
    run_claims,
    verdict,
)
from distill3d.bench.grid import BENCH_OVERRIDES, COLUMNS
from distill3d.bench.stats import Interval
from distill3d.cli.main import main
from distill3d.toyworld.grammar import parse_caption

HIGHER = Claim("h", "a beats b", "paper", Arm("a"), Arm("b"), "match", "higher")
LOWER = Claim("l", "a lowers it", "paper", Arm("a"), Arm("b"), "oscillation", "lower")
SAME = Claim("s", "same cost", "paper", Arm("a"), Arm("b"), "seconds", "same", margin=0.25)


def test_verdict_rule_reads_the_interval_against_the_claimed_side():
    assert verdict(HIGHER, Interval(0.2, 0.1, 0.3, 9)) == "supported"
    assert verdict(HIGHER, Interval(-0.2, -0.3, -0.1, 9)) == "contradicted"
    assert verdict(HIGHER, Interval(0.05, -0.1, 0.2, 9)) == "inconclusive"
    assert verdict(LOWER, Interval(-0.2, -0.3, -0.1, 9)) == "supported"
    assert verdict(LOWER, Interval(0.2, 0.1, 0.3, 9)) == "contradicted"
    assert verdict(SAME, Interval(0.1, -0.2, 0.2, 9)) == "supported"
    assert verdict(SAME, Interval(0.5, 0.3, 0.7, 9)) == "contradicted"
    assert verdict(SAME, Interval(0.2, 0.1, 0.3, 9)) == "inconclusive"
    assert verdict(HIGHER, None) == "not run yet"
    assert verdict(HIGHER, Interval(0.5, 0.5, 0.5, 3)).startswith("inconclusive")  # too few pairs decide nothing


def _row(prompt, method, seed, prior="toy", **values):
    row = {c: "" for c in COLUMNS} | {"prompt": prompt, "method": method, "preset": "default", "prior": prior,
                                      "seed": str(seed), "kind": parse_caption(prompt).kind}
    return row | {k: str(v) for k, v in values.items()}


def test_effects_are_paired_by_prompt_and_seed_and_cost_is_a_ratio():
    prompts = claim_prompts(HIGHER)
    rows = [_row(p, "a", s, match=0.5 + 0.1 * s, seconds_total=30) for p in prompts for s in (0, 1)]
    rows += [_row(p, "b", s, match=0.3 + 0.1 * s, seconds_total=20) for p in prompts for s in (0, 1)]
    rows.append(_row(prompts[0], "a", 7, match=1.0, seconds_total=1))  # no baseline for it: not paired
    r = evaluate_generation(HIGHER, "toy", rows)
    assert r.effect.n == 2 * len(prompts) and r.effect.mean == pytest.approx(0.2) and r.verdict == "supported"
    cost = evaluate_generation(SAME, "toy", rows)
    assert cost.effect.mean == pytest.approx(0.5) and cost.verdict == "contradicted"  # 30 s vs 20 s: +50%


def test_the_run_plan_is_seed_major_shares_runs_and_keeps_the_word_prior_to_two_objects():
    specs = generation_specs(CLAIMS, [0, 1])
    seeds = [s.seed for s in specs]
    assert seeds == sorted(seeds)  # every seed-0 run first: a ledger stopped early has every claim's first seed
    assert len({(s.run_id, s.preset) for s in specs}) == len(specs)
    sds_toy = [s for s in specs if s.method == "sds" and s.preset == "default" and s.prior == "toy" and s.seed == 0
               and s.overrides == tuple(sorted(BENCH_OVERRIDES.items()))]
    baseline_prompts = {p for c in CLAIMS if not c.edit and Arm("sds") in (c.treatment, c.baseline)
                        for p in claim_prompts(c)}
    assert len(sds_toy) == len(baseline_prompts) >= 24  # the baseline of many claims, made once per prompt
    for c in (c for c in CLAIMS if not c.edit):  # the budget still leaves every row enough pairs with 3 seeds
        assert all(3 * len(claim_prompts(c, p)) >= MIN_PAIRS for p in claim_priors(c)), c.key
    words = [s for s in specs if s.prior == "toy-words"]
    assert words and all(parse_caption(s.prompt).kind in TWO_OBJECTS for s in words)
    # the multi-view arms run on their own prior, the -mv methods on the toy pair
    assert {s.prior for s in specs} == set(PRIORS) | {"toy-mv", "toy+toy-mv"}
    pair = [s for s in specs if s.prior == "toy+toy-mv"]
    assert {s.method for s in pair} == {"anchords-mv", "sds-mv"}
    assert {parse_caption(s.prompt).kind for s in pair} == {"next to"}
    mv = [s for s in specs if s.prior == "toy-mv"]
    assert mv and {s.method for s in mv} == {"mvdream-sds", "isd"} and all(s.preset == "multiview" for s in mv)
    assert all(dict(s.overrides)["views_per_step"] == "4" for s in mv)


def test_an_arm_on_its_own_prior_is_paired_with_the_baseline_on_the_claims_prior():
    claim = Claim("m", "a multi-view prior helps", "paper", Arm("mv", prior="toy-mv"), Arm("b"), "front_error",
                  "lower", ("face",), priors=("toy",))
    prompts = claim_prompts(claim)
    rows = [_row(p, "mv", s, prior="toy-mv", front_error=0.0) for p in prompts for s in (0, 1)]
    rows += [_row(p, "b", s, front_error=0.25) for p in prompts for s in (0, 1)]
    rows += [_row(p, "mv", s, front_error=0.5) for p in prompts for s in (0, 1)]  # same method on toy: not the arm
    r = evaluate_generation(claim, "toy", rows)
    assert r.effect.n == 2 * len(prompts) and r.effect.mean == pytest.approx(-0.25) and r.verdict == "supported"
    assert "on toy-mv" in claim.treatment.describe()


def test_edit_pairs_change_one_attribute_of_one_object():
    pairs = claims_edit_pairs()
    assert len(pairs) == 24 and len(set(pairs)) == 24
    for src, tgt in pairs:
        a, b = parse_caption(src), parse_caption(tgt)
        assert a.relation == b.relation and a.objects[1:] == b.objects[1:]
        changed = (a.objects[0].color != b.objects[0].color) + (a.objects[0].shape != b.objects[0].shape)
        assert changed == 1 and b.objects[0].shape != "face"


def test_the_ledger_has_a_row_per_claim_and_prior_with_the_rule(tmp_path):
    assert len(CLAIMS) >= 12
    prompts = claim_prompts(CLAIMS[0])
    rows = [_row(p, m, s, layout=v, match=v, seconds_total=10) for p in prompts for s in (0, 1)
            for m, v in (("anchords", 0.2), ("sds", 0.6))]
    with (tmp_path / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    text = run_claims(tmp_path, [0, 1], engine=None, run=False, claims=CLAIMS[:1])  # --only one claim ...
    assert (tmp_path / "claims.md").read_text() == text and "Verdict rule" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert len(table) >= len(CLAIMS)  # ... still writes every claim's row
    first = next(line for line in table if "`anchords-multi`" in line and "prior toy |" in line)
    assert "contradicted" in first and "-40 pts" in first
    assert any("not run yet" in line for line in table)


def test_unknown_claims_are_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "claims", "--only", "nope", "--no-run", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown claim 'nope'" in err and "Traceback" not in err


def test_the_ledger_leaves_out_runs_made_with_other_defaults_than_todays(tmp_path):
    """A run id holds the --set overrides, not the registry's defaults: a finished run whose preset.json differs
    from what its spec resolves to now (a default changed since) must not stand in the ledger for today's."""
    import json

    from distill3d.bench.grid import result_path
    from distill3d.pipeline.config import resolve_run_config
    from distill3d.pipeline.generate import PRESET_FILE, run_preset

    claim = CLAIMS[0]
    prompts = claim_prompts(claim)
    specs = {(s.prompt, s.method, s.seed): s for s in generation_specs((claim,), [0, 1]) if s.prior == "toy"}
    rows = [_row(p, m, s, layout=v, match=v, run_id=specs[(p, m, s)].run_id) for p in prompts for s in (0, 1)
            for m, v in ((claim.treatment.method, 0.2), (claim.baseline.method, 0.6))]
    with (tmp_path / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)

    logged: list[str] = []
    stale = specs[(prompts[0], claim.baseline.method, 0)]
    cfg, rest = resolve_run_config(stale.method, {**dict(stale.overrides), "seed": "0"})
    preset = run_preset(stale.prompt, cfg, rest, stale.prior_spec)[2]
    run_dir = result_path(tmp_path, stale).parent
    run_dir.mkdir(parents=True)
    (run_dir / PRESET_FILE).write_text(json.dumps(preset))
    full = run_claims(tmp_path, [0, 1], engine=None, run=False, claims=(claim,), ledger=(claim,), log=logged.append)
    assert not logged and f"| {2 * len(prompts)} |" in full  # made with today's settings: kept
    preset["method_config"]["guidance_scale"] = 42.0  # the baseline's CFG default has changed since this run
    (run_dir / PRESET_FILE).write_text(json.dumps(preset))
    text = run_claims(tmp_path, [0, 1], engine=None, run=False, claims=(claim,), ledger=(claim,), log=logged.append)
    assert len(logged) == 1 and "1 finished runs were made with other settings" in logged[0]
    assert f"| {2 * len(prompts) - 1} |" in text and f"| {2 * len(prompts)} |" not in text


def test_the_plan_counts_each_cells_runs_and_projects_hours_from_the_finished_ones():
    from distill3d.bench.claims import format_plan, run_plan

    claim = CLAIMS[0]
    specs = [s for s in generation_specs((claim,), [0]) if s.prior == "toy"]
    treat = [s for s in specs if s.method == claim.treatment.method]
    rows = [{"run_id": s.run_id, "seconds_total": "36"} for s in treat[:2]]
    edits = [{"method": "uds", "seed": 0, "seconds": 72.0}, {"method": "uds", "seed": 5, "seconds": 1.0}]
    uds = next(c for c in CLAIMS if c.edit and "uds" in (c.treatment.method, c.baseline.method))
    plan = {(r.method, r.prior): r for r in run_plan((claim, uds), [0], rows, edits)}
    cell = plan[(claim.treatment.method, "toy")]
    assert (cell.runs, cell.finished, cell.median_seconds) == (len(treat), 2, 36.0)
    assert plan[(claim.baseline.method, "toy")].median_seconds is None  # nothing finished: cost unknown
    assert plan[("uds", "edit")].runs == len(claims_edit_pairs()) and plan[("uds", "edit")].median_seconds == 72.0
    text = format_plan([cell, plan[("uds", "edit")]], workers=2)
    hours = (len(treat) * 36 + len(claims_edit_pairs()) * 72) / 3600 / 2
    left = ((len(treat) - 2) * 36 + len(claims_edit_pairs()) * 72) / 3600 / 2
    assert f"from nothing {hours:.1f} h, what is left {left:.1f} h" in text
    assert "Not in the projection" in format_plan(list(plan.values()), 2)


def test_edits_in_parallel_processes_measure_what_one_process_measures(tmp_path, monkeypatch):
    """The ledger's edits, two at a time in spawned processes, give the same metrics as one after another."""
    import json

    monkeypatch.undo()  # the spawned processes judge with the shipped judge: so does this one here

    from distill3d.bench.claims import run_edits
    from distill3d.bench.edit import make_pair

    pairs = [make_pair("a red cube", "a blue cube")]
    tiny = {"steps": "2", "views_per_step": "2", "export_size": "16", "turntable_frames": "2", "mesh_resolution": "16"}
    for workers in (1, 2):
        run_edits(["uds", "pds"], pairs, 0, tmp_path / f"w{workers}", workers, overrides=tiny, source_points=300)

    def metrics(workers):
        files = sorted((tmp_path / f"w{workers}" / "runs").glob("*/*/metrics.json"))
        return {f.parent.parent.name: {k: v for k, v in json.loads(f.read_text()).items() if k != "seconds"}
                for f in files}

    assert set(metrics(2)) == {"uds", "pds"} and metrics(2) == metrics(1)


def test_a_claim_the_toy_world_cannot_test_runs_nothing_and_says_why(tmp_path):
    nfsd = next(c for c in CLAIMS if c.key == "nfsd-quality")
    assert nfsd.untestable and not generation_specs((nfsd,), [0])
    text = run_claims(tmp_path, [0], engine=None, run=False, claims=(nfsd,), ledger=(nfsd,))
    row = next(line for line in text.splitlines() if "`nfsd-quality`" in line)
    assert "not testable here: NFSD's δ_D needs its negative prompt" in row
    assert all(not c.untestable for c in CLAIMS if c.key != "nfsd-quality")  # every other claim is run
