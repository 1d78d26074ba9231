"""The toy world's judge: the shipped checkpoint on a small fixed ground-truth set, "nothing
recognisable" on junk, the match rules, labels, degradations, save/load and the CLI's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from distill3d.cli.main import main
from distill3d.core.cameras import Cameras
from distill3d.toyworld.dataset import sample_scenes
from distill3d.toyworld.grammar import COLOR_NAMES, SHAPES, ObjectSpec, SceneSpec, parse_caption
from distill3d.toyworld.judge import (
    DEFAULT_WEIGHTS,
    Judge,
    JudgeConfig,
    JudgeLogits,
    JudgeNet,
    JudgeResult,
    match,
)
from distill3d.toyworld.judge_data import (
    LAYOUTS,
    NEGATIVE_KINDS,
    blur,
    canonical_objects,
    degrade,
    front_visible,
    labels_for,
    negatives,
)
from distill3d.toyworld.judge_eval import accuracy, unseen_images
from distill3d.toyworld.judge_train import JudgeTrainConfig, TrainingImages, judge_loss, train_judge
from distill3d.toyworld.render import render

# The shipped judge on this set (48 scenes, seed 1234) measured 1.0 on every attribute but front (47/48);
# asserted with a margin for retrained checkpoints (the 4096-view report is the precise figure).
MIN_ACCURACY = 0.9


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge.load()


@pytest.fixture(scope="module")
def fixed_set() -> tuple[torch.Tensor, list[SceneSpec], list[bool]]:
    """48 ground-truth views at 32 px, scenes and cameras from a fixed seed."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(1234)
    specs = sample_scenes(48, rng, "all")
    az = torch.from_numpy(rng.uniform(0, 360, 48)).float()
    el = torch.from_numpy(rng.uniform(-5, 45, 48)).float()
    out = render(specs, Cameras.from_angles(az, el), 32)
    return out.image, specs, [front_visible(s, int(e), 32) for s, e in zip(specs, out.eye_pixels)]


def test_shipped_judge_is_accurate_on_a_fixed_ground_truth_set(judge, fixed_set):
    images, specs, fronts = fixed_set
    acc = accuracy(judge, images, specs, fronts)
    for name in ("recognised", "count", "relation", "shapes", "colors", "objects", "front"):
        assert getattr(acc, name) >= MIN_ACCURACY, (name, acc)


def test_larger_inputs_are_area_resized(judge, fixed_set):
    images = fixed_set[0]
    big = images.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # [48, 3, 64, 64], same content
    assert [r.describe() for r in judge(big)] == [r.describe() for r in judge(images)]


@pytest.mark.parametrize("kind", ["white", "uniform noise", "gaussian noise"])
def test_says_nothing_recognisable_on_blank_and_noise(judge, kind):
    gen = torch.Generator().manual_seed(0)
    images = {"white": torch.ones(4, 3, 32, 32), "uniform noise": torch.rand(4, 3, 32, 32, generator=gen),
              "gaussian noise": (0.5 + 0.25 * torch.randn(4, 3, 32, 32, generator=gen)).clamp(0, 1)}[kind]
    results = judge(images)
    assert all(not r.recognisable and r.objects == () and r.relation is None for r in results)
    assert all(r.describe() == "nothing recognisable" for r in results)


def test_says_nothing_on_most_inputs_it_never_trained_on(judge):
    gen = torch.Generator().manual_seed(0)
    images = torch.cat([unseen_images(k, 16, gen) for k in ("black", "checkerboard")])
    assert sum(not r.recognisable for r in judge(images)) >= 0.8 * len(images)


def _result(objects: tuple[ObjectSpec, ...], relation: str | None, front: bool = False) -> JudgeResult:
    return JudgeResult(True, objects, relation, front, 0.9, tuple(0.9 for _ in objects), 0.1)


def test_match_compares_next_to_as_a_set_and_on_top_of_in_order():
    red_cube, blue_face = ObjectSpec("cube", "red"), ObjectSpec("face", "blue")
    next_to = parse_caption("a red cube next to a blue face")
    assert match(_result((blue_face, red_cube), "next to"), next_to).all_ok
    on_top = parse_caption("a red cube on top of a blue face")
    assert match(_result((red_cube, blue_face), "on top of"), on_top).all_ok
    swapped = match(_result((blue_face, red_cube), "on top of"), on_top)
    assert not swapped.shapes_ok and not swapped.colors_ok and not swapped.all_ok and swapped.relation_ok
    wrong_binding = match(_result((ObjectSpec("cube", "blue"), ObjectSpec("face", "red")), "next to"), next_to)
    assert wrong_binding.shapes_ok and wrong_binding.colors_ok and not wrong_binding.objects_ok
    assert not match(_result((red_cube,), None), next_to).count_ok
    nothing = JudgeResult(False, (), None, False, 0.9, (), 0.0)
    m = match(nothing, parse_caption("a red cube"))
    assert not (m.count_ok or m.shapes_ok or m.colors_ok or m.relation_ok or m.all_ok)
    assert match(_result((blue_face,), None, front=True), parse_caption("a blue face"), front_visible=False).front_ok is False
    blue_sphere = _result((ObjectSpec("sphere", "blue"),), None)
    assert match(blue_sphere, parse_caption("a blue face"), front_visible=False).all_ok  # seen from behind
    assert match(blue_sphere, parse_caption("a blue face")).shapes_ok  # front unknown: lenient
    assert not match(blue_sphere, parse_caption("a blue face"), front_visible=True).shapes_ok
    assert not match(_result((blue_face,), None), parse_caption("a blue sphere")).shapes_ok


def test_labels_follow_the_canonical_slot_order():
    specs = [parse_caption(c) for c in ("a red torus next to a blue sphere", "a red torus on top of a blue sphere",
                                        "a green face")]
    labels = labels_for(specs, torch.tensor([0, 0, 40]), 32)
    assert [o.shape for o in canonical_objects(specs[0])] == ["sphere", "torus"]  # sorted by shape index
    assert labels.shape.tolist() == [[0, 4], [4, 0], [5, -1]]
    assert labels.layout.tolist() == [LAYOUTS.index("next to"), LAYOUTS.index("on top of"), LAYOUTS.index("single")]
    assert labels.front.tolist() == [0.0, 0.0, 1.0]
    face = specs[2:] * 4
    assert labels_for(face, torch.tensor([4, 5, 19, 20]), 32).front.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert labels_for(face, torch.tensor([4, 5, 19, 20]), 64).front.tolist() == [0.0, 0.0, 0.0, 1.0]  # by area
    out = render(specs[2], Cameras.from_angles([0.0, 60.0, 100.0, 180.0], 20.0), 32)
    assert labels_for(face, out.eye_pixels, 32).front.bool().tolist() == out.front_visible().tolist()


def _confident(layout: str, shapes: list[str], colors: list[str]) -> JudgeLogits:
    def one_hot(names: list[str], vocab: tuple[str, ...]) -> torch.Tensor:
        return 20.0 * torch.nn.functional.one_hot(torch.tensor([vocab.index(n) for n in names]), len(vocab))[None].float()

    return JudgeLogits(20.0 * torch.nn.functional.one_hot(torch.tensor([LAYOUTS.index(layout)]), 4).float(),
                       one_hot(shapes, SHAPES), one_hot(colors, COLOR_NAMES), torch.tensor([-20.0]))


def test_loss_accepts_either_order_for_next_to_and_a_sphere_for_a_hidden_face():
    spec = [parse_caption("a red face next to a blue cube")]
    hidden, shown = labels_for(spec, torch.tensor([0]), 32), labels_for(spec, torch.tensor([30]), 32)
    assert judge_loss(_confident("next to", ["face", "cube"], ["red", "blue"]), hidden) < 1e-3
    assert judge_loss(_confident("next to", ["cube", "face"], ["blue", "red"]), hidden) < 1e-3
    assert judge_loss(_confident("next to", ["cube", "sphere"], ["blue", "red"]), hidden) < 1e-3
    assert judge_loss(_confident("next to", ["cube", "face"], ["red", "blue"]), hidden) > 5  # colours swapped
    on_top = labels_for([parse_caption("a red face on top of a blue cube")], torch.tensor([0]), 32)
    assert judge_loss(_confident("on top of", ["cube", "face"], ["blue", "red"]), on_top) > 5  # order matters
    shown_sphere = _confident("next to", ["cube", "sphere"], ["blue", "red"])
    assert judge_loss(shown_sphere, shown) > 10  # eyes in view: "sphere" is wrong (front logit also wrong)
    shown_sphere = JudgeLogits(shown_sphere.layout, shown_sphere.shape, shown_sphere.color, torch.tensor([20.0]))
    assert judge_loss(shown_sphere, shown) > 5


def test_blur_matches_a_per_image_loop():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 12, 12, generator=gen)
    sigma = torch.tensor([0.4, 0.9, 1.3])
    for i in range(3):
        k = torch.exp(-0.5 * torch.arange(-2.0, 3.0) ** 2 / sigma[i] ** 2)
        k = k / k.sum()
        padded = torch.nn.functional.pad(x[i : i + 1], (2, 2, 2, 2), mode="replicate")[0]
        slow = torch.zeros(3, 12, 12)
        for a in range(5):
            for b in range(5):
                slow += k[a] * k[b] * padded[:, a : a + 12, b : b + 12]
        torch.testing.assert_close(blur(x, sigma)[i], slow, atol=1e-5, rtol=1e-5)


def test_degradations_and_negatives_stay_images_and_keep_colour():
    gen = torch.Generator().manual_seed(0)
    red = torch.ones(64, 3, 32, 32)
    red[:, :, 8:24, 8:24] = torch.tensor([0.86, 0.13, 0.13])[:, None, None]
    out = degrade(red, gen)
    assert out.shape == red.shape and out.min() >= 0 and out.max() <= 1
    centre = out[:, :, 14:18, 14:18].mean(dim=(2, 3))  # [64, 3]
    assert (centre[:, 0] > centre[:, 1] + 0.3).float().mean() > 0.9  # still red: no hue change
    kinds = torch.arange(len(NEGATIVE_KINDS)).repeat(4)
    neg = negatives(kinds, red[: len(kinds)], gen)
    assert neg.shape == (len(kinds), 3, 32, 32) and neg.min() >= 0 and neg.max() <= 1
    assert torch.equal(neg[kinds == NEGATIVE_KINDS.index("white")], torch.ones(4, 3, 32, 32))
    scrambled = neg[kinds == NEGATIVE_KINDS.index("scrambled")]
    torch.testing.assert_close(scrambled.sum(dim=(2, 3)), red[:4].sum(dim=(2, 3)))  # same pixels, moved


def test_training_is_deterministic_under_a_seed_and_lowers_the_loss(fixed_set):
    images, specs, fronts = fixed_set
    data = TrainingImages((images * 255 + 0.5).to(torch.uint8), labels_for(specs, torch.tensor(fronts) * 99, 32))
    cfg, net_cfg = JudgeTrainConfig(steps=12, batch=16, seed=3), JudgeConfig(widths=(8, 8, 8), hidden=16)
    losses: list[float] = []
    a = train_judge(data, cfg, net_cfg, on_step=lambda step, loss: losses.append(loss))
    b = train_judge(data, cfg, net_cfg)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert sum(losses[-3:]) < sum(losses[:3])


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = JudgeNet(JudgeConfig(widths=(8, 8, 8), hidden=16, min_confidence=0.4))
    path = tmp_path / "judge.safetensors"
    Judge(net).save(path)
    loaded = Judge.load(path)
    assert loaded.config == net.config
    x = torch.rand(5, 3, 32, 32)
    torch.testing.assert_close(loaded.probabilities(x).layout, Judge(net).probabilities(x).layout)


def test_shipped_checkpoint_is_small():
    assert DEFAULT_WEIGHTS.stat().st_size < 3 * 2**20


def test_cli_missing_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    image = tmp_path / "view.png"
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(image)
    assert main(["toy", "judge", str(image), "--weights", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no judge weights" in err and "judge-train" in err


def test_cli_judges_a_png_against_a_caption(tmp_path, capsys, fixed_set):
    images, specs, _ = fixed_set
    path = tmp_path / "view.png"
    Image.fromarray((images[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(path)
    assert main(["toy", "judge", str(path), "--caption", specs[0].caption]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and f"vs '{specs[0].caption}'" in out and "all " in out


def test_an_object_the_view_hides_need_not_be_read():
    """From the side of "next to" one object stands behind the other: its shape and colour cannot be read
    there, so the judge's reading of it is not held against the view; it must still be counted."""
    from distill3d.core.cameras import Cameras
    from distill3d.toyworld.judge import JudgeResult, hidden_objects, match
    from distill3d.toyworld.render import render

    spec = parse_caption("a red cube next to a blue sphere")
    side, front = (render(spec, Cameras.from_angles([az], 20.0), 64).material[0] for az in (90.0, 0.0))
    assert hidden_objects(spec, side) == {spec.objects[0]}  # at 90° the blue sphere (+y) hides the red cube
    assert hidden_objects(spec, front) == frozenset()
    misread = JudgeResult(True, (ObjectSpec("sphere", "blue"), ObjectSpec("cone", "green")), "next to", False,
                          0.9, (0.9, 0.9), 0.0)
    assert not match(misread, spec).all_ok
    assert match(misread, spec, hidden=hidden_objects(spec, side)).all_ok
    assert not match(misread, spec, hidden=hidden_objects(spec, front)).all_ok
    one = JudgeResult(True, (ObjectSpec("sphere", "blue"),), None, False, 0.9, (0.9,), 0.0)
    assert not match(one, spec, hidden=hidden_objects(spec, side)).all_ok  # still two objects and a relation
