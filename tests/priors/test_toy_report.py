"""The prior report's measurements on a tiny random prior: shapes of the result, Wilson intervals, the
Fréchet distance, and the training recipe's pieces (min-SNR weights, cosine schedule, judged log)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from test_toy_prior import tiny_prior
from test_toy_train import _cfg, fake_data, small_config

from distill3d.priors.toy.evaluate import heldout_captions, judged_accuracy, wilson_interval
from distill3d.priors.toy.report import ReportConfig, frechet_distance, prior_report, report_markdown
from distill3d.priors.toy.train import TrainConfig, learning_rate, loss_weight, train
from distill3d.toyworld.grammar import is_heldout, parse_caption
from distill3d.toyworld.judge import Judge


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)  # textbook: 0.490 .. 0.943
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    g = np.random.default_rng(0)
    a = torch.from_numpy(g.normal(0.0, 1.0, (20000, 3)))
    b = torch.from_numpy(g.normal(0.0, 2.0, (20000, 3)) + np.array([1.0, 0.0, 0.0]))
    # N(0, I) vs N(m, 4I): |m|² + 3·(1 + 4 − 2·2) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_heldout_captions_are_held_out_and_stable():
    caps = heldout_captions(5)
    assert set(caps) == {"single", "on top of", "next to", "face"}
    assert all(is_heldout(parse_caption(c)) for kind in caps.values() for c in kind)
    assert heldout_captions(3)["next to"] == caps["next to"][:3]


def test_min_snr_weights():
    cfg = TrainConfig(snr_gamma=5.0)
    snr = torch.tensor([0.1, 5.0, 100.0])
    torch.testing.assert_close(loss_weight(snr, cfg, "eps"), torch.tensor([1.0, 1.0, 0.05]))
    torch.testing.assert_close(loss_weight(snr, cfg, "v"), torch.tensor([0.1 / 1.1, 5 / 6, 5 / 101]))
    torch.testing.assert_close(loss_weight(snr, TrainConfig(loss_weighting="uniform"), "eps"), torch.ones(3))


def test_cosine_schedule_warms_up_then_decays_to_the_final_rate():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup=100, lr_final=0.05)
    assert learning_rate(cfg, 0) == pytest.approx(1e-5)
    assert learning_rate(cfg, 99) == pytest.approx(1e-3)
    mid = 100 + 450
    assert learning_rate(cfg, mid) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5), rel=1e-6)
    assert learning_rate(cfg, 1000) == pytest.approx(5e-5)
    rates = [learning_rate(cfg, s) for s in range(100, 1001, 50)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert learning_rate(TrainConfig(steps=1000, lr_schedule="constant"), 900) == 1e-3
    assert not math.isnan(learning_rate(cfg, 5000))


@pytest.mark.slow
def test_training_logs_judged_accuracy_per_kind(tmp_path):
    data = fake_data()
    cfg = _cfg(4, eval_captions=1, eval_samples=1)
    train(data, small_config(), cfg, tmp_path, progress=False, log=lambda s: None, judge=Judge.load())
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 4
    assert set(records[-1]["judged"]) == {"single", "on top of", "next to", "face"}
    assert all(0.0 <= v <= 1.0 for v in records[-1]["judged"].values())


def test_judged_accuracy_is_zero_for_a_random_prior():
    """A random network draws noise: the judge must not call it a held-out caption."""
    acc = judged_accuracy(tiny_prior().model, Judge.load(), per_kind=1, samples_per_caption=2, steps=2)
    assert acc == {"single": 0.0, "on top of": 0.0, "next to": 0.0, "face": 0.0}


@pytest.mark.slow
def test_report_on_a_tiny_prior(tmp_path):
    cfg = ReportConfig(samples_per_kind=4, pairs_per_relation=2, steps=2, face_samples_per_azimuth=1,
                       recon_images=4)
    report, grids = prior_report(tiny_prior(), Judge.load(), cfg)
    assert {k: v.n for k, v in report.kinds.items()} == {"single": 4, "on top of": 4, "next to": 4, "face": 4}
    assert all(v.ci95[0] <= v.rate <= v.ci95[1] for v in report.kinds.values())
    assert {k: g.shape[0] for k, g in grids.items()} == {"single": 4, "on top of": 4, "next to": 4, "face": 4}
    # noise from a random network is far from the ground truth; two ground-truth sets are close
    assert report.frechet > 2 * report.frechet_floor
    assert set(report.recon_mse_image) == {"200", "500", "800"} and report.face_samples == 8
    assert report.text_steer > 0 and report.images_per_second > 0
    md = report_markdown(report, "distill3d toy report")
    assert "95% interval" in md and "Fréchet" in md
