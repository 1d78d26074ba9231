"""The multi-view capability and the multi-view toy prior ``toy-mv``: groups of views denoised jointly (MVDream's
3D self-attention), inflated from single-view weights without new parameters; sampling, dataset groups and
training on groups. Tiny random networks, seconds on CPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_toy_prior import tiny_config, tiny_prior
from test_toy_train import fake_data

from distill3d.cli.main import main
from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.pipeline.priors import PriorSpec, load_prior, parse_prior
from distill3d.priors.base import Condition, ViewCapabilities, require_joint_views, view_groups, views_of
from distill3d.priors.paired import PairedPrior
from distill3d.priors.sampling import sample
from distill3d.priors.toy import prior as prior_module
from distill3d.priors.toy.evaluate import group_rates, judge_group, judged_group_accuracy
from distill3d.priors.toy.model import with_views
from distill3d.priors.toy.prior import ToyPrior, save_model
from distill3d.priors.toy.report import ReportConfig, prior_report, report_markdown
from distill3d.priors.toy.train import TrainConfig, draw_group_batch, loss_on_batch, train
from distill3d.toyworld.dataset import DatasetConfig, build_dataset, build_shard, load_dataset
from distill3d.toyworld.grammar import parse_caption
from distill3d.toyworld.judge import Judge
from distill3d.toyworld.render import render

PROMPT = "a red cube"


def mv_prior(seed: int = 0) -> ToyPrior:
    """The tiny random toy prior, inflated across groups of 4 views."""
    return ToyPrior(with_views(tiny_prior(seed).model, 4))


def _rows(n_groups: int, *, grouped: bool = True, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[Condition]]:
    """n_groups groups of 4 views 90° apart, mixed conditions, one t per group."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4 * n_groups, 3, 16, 16, generator=g)
    t = torch.tensor([300, 700][:n_groups]).repeat_interleave(4)
    image = torch.rand(3, 16, 16, generator=g)
    conds = [Condition(PROMPT if i % 2 == 0 else "", image if i == 2 else None, 0.5 if i == 2 else 0.0,
                       (90.0 * (i % 4) + 10.0, 15.0), view_group=i // 4 if grouped else None)
             for i in range(4 * n_groups)]
    return z, t, conds


def test_inflation_adds_no_parameter_and_keeps_every_weight():
    model = tiny_prior().model
    inflated = with_views(model, 4)
    assert inflated.config == replace(model.config, views=4)
    a, b = model.state_dict(), inflated.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert views_of(ToyPrior(inflated)).joint_views == 4 and views_of(ToyPrior(model)).joint_views == 1


def test_groups_of_one_are_exactly_the_single_view_network():
    single, joint = tiny_prior(), mv_prior()
    z, t, conds = _rows(2, grouped=False)  # no view_group: every row alone
    with torch.no_grad():
        assert torch.equal(joint.predict_noise(z, t, conds), single.predict_noise(z, t, conds))


def test_a_view_depends_on_the_other_views_of_its_group_and_only_on_them():
    z, t, conds = _rows(2)
    moved = z.clone()
    moved[1] += 0.5  # another view of group 0
    for prior, joint in ((mv_prior(), True), (tiny_prior(), False)):
        with torch.no_grad():
            before, after = prior.predict_noise(z, t, conds), prior.predict_noise(moved, t, conds)
        assert torch.equal(before[4:], after[4:])  # group 1 never sees group 0
        assert (not torch.equal(before[0], after[0])) == joint  # view 0 sees view 1 only through 3D attention


def test_a_joint_batch_equals_its_groups_one_by_one():
    prior = mv_prior()
    z, t, conds = _rows(2)
    singles = [Condition(PROMPT, camera=(5.0, 0.0)), Condition("", camera=None)]
    z_all = torch.cat([z[:4], torch.randn(2, 3, 16, 16), z[4:]])  # group, two rows alone, group
    t_all = torch.cat([t[:4], torch.tensor([50, 950]), t[4:]])
    c_all = conds[:4] + singles + conds[4:]
    with torch.no_grad():
        batched = prior.predict_noise(z_all, t_all, c_all)
        parts = [prior.predict_noise(z_all[a:b], t_all[a:b], c_all[a:b]) for a, b in ((0, 4), (4, 5), (5, 6), (6, 10))]
    torch.testing.assert_close(batched, torch.cat(parts), rtol=1e-5, atol=1e-5)


def test_view_groups_reads_consecutive_groups_and_refuses_broken_ones():
    c = lambda g=None: Condition(PROMPT, view_group=g)
    assert view_groups([c(), c(0), c(0), c(0), c(0), c(), c(7), c(7), c(7), c(7)], 4) == (1, 4, 1, 4)
    assert view_groups([c(0)] * 4, 1) == (1, 1, 1, 1)  # a single-view prior denoises every row alone
    for broken in ([c(0)] * 3, [c(0), c(0), c(1), c(0), c(0)], [c(0)] * 4 + [c(1)] * 4 + [c(0)] * 4):
        with pytest.raises(ValueError, match="consecutive"):
            view_groups(broken, 4)


def test_require_joint_views_is_one_line():
    with pytest.raises(UserError, match="needs a multi-view prior such as toy-mv") as err:
        require_joint_views(tiny_prior(), "mvdream-sds", 4)
    assert "\n" not in str(err.value) and "each view alone" in str(err.value)
    require_joint_views(mv_prior(), "mvdream-sds", 4)
    assert views_of(object()) == ViewCapabilities(conditions_on_cameras=False, joint_views=1)


def test_toy_mv_without_its_weights_says_how_to_train_it(tmp_path, monkeypatch):
    from distill3d.pipeline.priors import PRIOR_KINDS, PriorSpec, load_prior

    monkeypatch.setitem(prior_module.TRAINED_HERE, "toy-mv", tmp_path / "toy_mv.safetensors")
    assert "toy-mv" in PRIOR_KINDS
    with pytest.raises(UserError) as err:
        load_prior(PriorSpec("toy-mv"))
    msg = str(err.value)
    assert "\n" not in msg and "distill3d toy dataset" in msg and "--views 4" in msg
    assert "distill3d toy train" in msg and "--init toy --views 4" in msg
    mv_prior().save(tmp_path / "toy_mv.safetensors")  # once trained and exported, the name loads it
    assert views_of(load_prior(PriorSpec("toy-mv"))).joint_views == 4


class _Recording:
    """A prior that records the conditions of every call (and predicts ε̂ = 0)."""

    def __init__(self, prior: ToyPrior) -> None:
        self.inner, self.calls = prior, []
        self.num_timesteps, self.image_size = prior.num_timesteps, prior.image_size
        self.view_capabilities, self.alphas_cumprod = prior.view_capabilities, prior.alphas_cumprod
        self.device = prior.device
        self.encode, self.decode = prior.encode, prior.decode

    def predict_noise(self, z_t, t, conditions):
        self.calls.append(list(conditions))
        return torch.zeros_like(z_t)


def test_sampling_draws_groups_of_views_at_even_azimuths():
    rec = _Recording(mv_prior())
    images = sample(rec, PROMPT, n=2, steps=2, views=4, camera=(30.0, 20.0))
    assert images.shape == (8, 3, 16, 16)
    conds = rec.calls[0]
    assert view_groups(conds, 4) == (4, 4, 4, 4)  # 2 conditional groups, then 2 unconditional ones
    assert [c.camera for c in conds[:4]] == [(30.0, 20.0), (120.0, 20.0), (210.0, 20.0), (300.0, 20.0)]
    assert [c.text for c in conds] == [PROMPT] * 8 + [""] * 8
    with pytest.raises(UserError, match="multi-view prior"):
        sample(tiny_prior(), PROMPT, n=1, steps=2, views=4, camera=(0.0, 20.0))


def test_cli_samples_a_group_per_row(tmp_path, capsys):
    from PIL import Image

    weights = tmp_path / "mv.safetensors"
    mv_prior().save(weights)
    out = tmp_path / "out"
    code = main(["toy", "sample", PROMPT, "--weights", str(weights), "--out", str(out), "--n", "2", "--steps", "2",
                 "--views", "4"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(out / "grid.png").size == (4 * 16, 2 * 16)  # one row of 4 views per group
    assert (out / "sample_01_view3.png").is_file()
    code = main(["toy", "sample", PROMPT, "--weights", str(tmp_path / "mv.safetensors"), "--out", str(tmp_path / "o2"),
                 "--views", "3"])
    assert code == 2 and "groups of 3 views" in capsys.readouterr().err


def test_dataset_groups_are_views_90_degrees_apart_of_the_same_scene(tmp_path):
    cfg = DatasetConfig(count=3, size=8, seed=4, group_views=4, elevation_range=(0.0, 30.0))
    shard = build_shard(cfg, 0, 3)
    plain = build_shard(replace(cfg, group_views=0), 0, 3)
    for k in plain:  # the two views do not change with the option
        assert np.array_equal(shard[k], plain[k])
    cams = shard["group_cameras"]  # [3, 4, 2]
    assert np.allclose((cams[:, :, 0] - cams[:, :1, 0]) % 360.0, [0.0, 90.0, 180.0, 270.0], atol=1e-3)
    assert np.all(cams[:, :, 1] == cams[:, :1, 1]) and np.all((cams[..., 1] >= 0) & (cams[..., 1] <= 30))
    spec = parse_caption(str(shard["captions"][1]))
    truth = render(spec, Cameras.from_angles(torch.from_numpy(cams[1, :, 0]), torch.from_numpy(cams[1, :, 1])), 8)
    assert np.abs(shard["group_images"][1].astype(int) - (truth.image * 255).round().numpy()).max() <= 1
    root = build_dataset(tmp_path / "d", cfg, progress=False)
    data = load_dataset(root)
    assert data.group_images.shape == (3, 4, 3, 8, 8) and data.group_cameras.shape == (3, 4, 2)
    plain_data = load_dataset(build_dataset(tmp_path / "p", replace(cfg, group_views=0), progress=False))
    assert plain_data.group_images is None
    assert "group_views" not in (tmp_path / "p" / "meta.json").read_text()  # older datasets' meta unchanged


def group_data(n: int = 24, views: int = 4):
    """fake_data with a group of ``views`` views per scene: the scene's two views alternating, cameras 90° apart."""
    data = fake_data(n)
    data.group_images = torch.stack([data.images, data.images2] * (views // 2), dim=1)  # [n, G, 3, S, S]
    start = torch.rand(n, 1) * 360.0
    az = (start + 90.0 * torch.arange(views)) % 360.0
    data.group_cameras = torch.stack([az, torch.full_like(az, 20.0)], dim=-1)
    return data


def _cfg(**kw) -> TrainConfig:
    return replace(TrainConfig(steps=4, batch=3, lr=2e-3, warmup=2, holdout=8, seed=0, eval_captions=0,
                               checkpoint_minutes=1e6), **kw)


def test_group_batches_hold_whole_groups_after_the_single_views():
    data, g = group_data(), torch.Generator().manual_seed(0)
    batch = draw_group_batch(data, 16, _cfg(batch=6, p_single_view=0.5), g, 4)
    single = batch.groups.count(1)
    assert batch.groups == (1,) * single + (4,) * (6 - single) and 0 < single < 6
    rows = batch.x0.shape[0]
    assert rows == single + 4 * (6 - single) == len(batch.captions) == len(batch.camera)
    for k in range(single, rows, 4):  # one caption per group, the cameras 90° apart and always kept
        assert len(set(batch.captions[k:k + 4])) == 1 and not any(", " in c for c in batch.captions[k:k + 4])
        assert torch.allclose((batch.camera[k:k + 4, 0] - batch.camera[k, 0]) % 360, torch.tensor([0., 90, 180, 270]),
                              atol=1e-3)
        assert batch.camera_mask[k:k + 4].all()
    with pytest.raises(UserError, match="--views 4"):
        draw_group_batch(fake_data(), 16, _cfg(), g, 4)  # no groups in the dataset


def test_a_group_is_noised_at_one_timestep():
    seen = {}

    class Spy(torch.nn.Module):
        config = tiny_config(views=4)

        def encode_text(self, texts):
            return torch.zeros(len(texts), 2, 16), torch.ones(len(texts), 2, dtype=torch.bool)

        def forward(self, z_t, t, cond):
            seen["t"], seen["groups"] = t, cond.groups
            return torch.zeros_like(z_t)

    from distill3d.priors.base import alphas_cumprod_cosine

    batch = draw_group_batch(group_data(), 16, _cfg(batch=8, p_single_view=0.5), torch.Generator().manual_seed(1), 4)
    loss_on_batch(Spy(), batch, alphas_cumprod_cosine(), torch.Generator().manual_seed(2))
    t, start = seen["t"], 0
    assert seen["groups"] == batch.groups
    for size in batch.groups:
        assert (t[start:start + size] == t[start]).all()
        start += size
    assert len(set(t.tolist())) > 1  # and the groups' timesteps are drawn independently


def test_training_on_groups_runs_and_resumes_bit_identically(tmp_path):
    data, model_cfg = group_data(), tiny_config(attention=(False, True), views=4)
    straight = train(data, model_cfg, _cfg(), tmp_path / "a", progress=False, log=lambda s: None)
    train(data, model_cfg, _cfg(), tmp_path / "b", progress=False, log=lambda s: None, stop_at=2)
    resumed = train(data, model_cfg, _cfg(), tmp_path / "b", resume=True, progress=False, log=lambda s: None)
    assert resumed.model.config.views == 4
    for x, y in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(x, y)



@pytest.mark.parametrize("views", [3, 4])
def test_a_single_view_method_sees_the_multi_view_prior_as_the_single_view_one(views):
    """SDS marks no view_group: each row is denoised alone, whatever views_per_step, so the inflated prior
    gives exactly the gradient of the single-view prior it was inflated from."""
    from distill3d.guidance.base import GuidanceInput
    from distill3d.guidance.sds import SDS

    single, joint = tiny_prior(), mv_prior()
    images = torch.rand(views, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    inp = GuidanceInput(single.encode(images), images, Cameras.from_angles([90.0 * i for i in range(views)], 15.0),
                        PROMPT)
    a = SDS()(single, inp, torch.Generator().manual_seed(1))
    b = SDS()(joint, inp, torch.Generator().manual_seed(1))
    assert torch.equal(a.grad, b.grad) and a.grad.abs().sum() > 0


def _truth_group(caption: str, azimuths, size: int = 32) -> torch.Tensor:
    return render(parse_caption(caption), Cameras.from_angles(list(azimuths), 20.0), size).image


@pytest.mark.parametrize("caption", ["a blue face", "a red cube next to a green sphere",
                                     "a yellow sphere on top of a purple cube"])
def test_a_ground_truth_group_is_judged_right(caption):
    az = [30.0, 120.0, 210.0, 300.0]
    v = judge_group(Judge.load(), _truth_group(caption, az), caption, az)
    face = "face" in caption
    assert v.judged_ok and v.eyes_ok is (True if face else None) and v.layout_ok is (None if face else True)


def test_a_group_that_repeats_its_front_is_judged_wrong():
    """The multi-view failures the group check is for: a face with eyes on every side (Janus), and two objects
    whose front layout comes back from behind (the two-object Janus)."""
    az = [0.0, 90.0, 180.0, 270.0]
    face = _truth_group("a blue face", [0.0] * 4)  # the front seen from every camera
    v = judge_group(Judge.load(), face, "a blue face", az)
    assert v.eyes_ok is False and not v.judged_ok and v.layout_ok is None
    pair = "a red cube next to a green sphere"
    front_twice = _truth_group(pair, [0.0, 90.0, 0.0, 270.0])  # the front's order shown again at 180°
    v = judge_group(Judge.load(), front_twice, pair, az)
    assert v.layout_ok is False and not v.judged_ok and v.eyes_ok is None
    assert group_rates([v, judge_group(Judge.load(), _truth_group(pair, az), pair, az)]) == \
        {"judged": 0.5, "eyes": None, "layout": 0.5}


def test_judged_group_accuracy_of_a_random_multi_view_prior_is_zero():
    acc = judged_group_accuracy(mv_prior().model, Judge.load(), per_kind=1, groups_per_caption=1, steps=2)
    assert acc == {"mv single": 0.0, "mv on top of": 0.0, "mv next to": 0.0, "mv face": 0.0, "mv eyes": 0.0,
                   "mv layout": 0.0}


@pytest.mark.slow
def test_the_report_of_a_multi_view_prior_has_a_multi_view_section():
    cfg = ReportConfig(samples_per_kind=2, pairs_per_relation=1, steps=2, face_samples_per_azimuth=1, recon_images=2,
                       groups_per_kind=2)
    report, grids = prior_report(mv_prior(), Judge.load(), cfg)
    assert report.views == 4 and set(report.multi_view) == {"single", "on top of", "next to", "face"}
    assert all(g.judged.n == 2 and g.judged.hits == 0 for g in report.multi_view.values())  # a random network
    assert report.multi_view["face"].eyes.n == 2 and report.multi_view["face"].layout is None
    assert report.multi_view["next to"].layout.n == 2 and report.multi_view["single"].eyes is None
    assert grids["mv next to"].shape == (8, 3, 16, 16)  # two groups of four views
    assert "Groups of 4 views drawn jointly" in report_markdown(report, "distill3d toy report")
    single, _ = prior_report(tiny_prior(), Judge.load(), cfg)
    assert single.multi_view is None and "Groups of" not in report_markdown(single, "x")


# ------------------------------------------------------------- a toy pair: --prior toy --mv-prior toy-mv


def test_load_prior_pairs_two_toy_priors(tmp_path):
    """``--prior toy --mv-prior FILE``: a toy checkpoint for the camera rows, the toy world's own split."""
    base, mv = tmp_path / "base.safetensors", tmp_path / "mv.safetensors"
    save_model(tiny_prior().model, base, half=False)
    save_model(mv_prior(seed=1).model, mv, half=False)
    prior = load_prior(PriorSpec("toy", str(base), mv_prior=str(mv)))
    assert isinstance(prior, PairedPrior) and isinstance(prior.base, ToyPrior) and isinstance(prior.multi_view, ToyPrior)
    assert views_of(prior).joint_views == 4 and views_of(prior.base).joint_views == 1
    with pytest.raises(UserError, match="takes a toy-world prior .* or a toy checkpoint file; got .*missing") as err:
        load_prior(PriorSpec("toy", str(base), mv_prior=str(tmp_path / "missing.safetensors")))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("name", "spec"), [("toy", PriorSpec("toy")), ("sd", PriorSpec("sd")),
                                            ("toy+toy-mv", PriorSpec("toy", mv_prior="toy-mv")),
                                            ("toy-words+toy-mv", PriorSpec("toy-words", mv_prior="toy-mv"))])
def test_a_bench_prior_name_is_a_kind_or_a_toy_pair(name, spec):
    assert parse_prior(name) == spec


@pytest.mark.parametrize("name", ["toy+", "sd+toy-mv", "toy+mvdream", "nope", "toy+toy-mv+toy"])
def test_a_bench_prior_name_that_is_neither_is_a_one_line_error(name):
    with pytest.raises(UserError, match="unknown prior .* choose from") as err:
        parse_prior(name)
    assert "\n" not in str(err.value)
