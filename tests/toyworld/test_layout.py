"""The per-view layout verdict (toyworld.layout): where each of two objects is, from every side."""

import pytest
import torch

from distill3d.core.cameras import Cameras
from distill3d.evaluation.toy import AZIMUTHS, ELEVATION, SIZE
from distill3d.toyworld.grammar import COLOR_NAMES, COLORS, ObjectSpec, SceneSpec, parse_caption
from distill3d.toyworld.judge import Judge
from distill3d.toyworld.layout import MAX_BLEED, check_on_truth, judge_layout, palette_labels
from distill3d.toyworld.render import render

NEXT_TO = parse_caption("a purple cube next to a yellow sphere")
CAMS = Cameras.from_angles(list(AZIMUTHS), ELEVATION)


@pytest.fixture(scope="module")
def truth():
    return render(NEXT_TO, CAMS, SIZE)


def _verdicts(spec, image, alpha, material):
    return judge_layout(spec, image, alpha, material)


def test_palette_labels_read_shaded_colours_and_ignore_white():
    cols = [torch.tensor(COLORS[c]) for c in COLOR_NAMES]
    px = torch.stack([c * k for c in cols for k in (0.5, 0.75, 1.0)] + [torch.ones(3)])  # shaded, then white
    img = px.T.reshape(1, 3, 1, -1)
    lab = palette_labels(img, torch.ones(1, 1, 1, img.shape[-1]))[0, 0]
    assert lab[:-1].tolist() == [i for i in range(len(cols)) for _ in range(3)]
    assert lab[-1] == -1
    assert (palette_labels(img, torch.zeros(1, 1, 1, img.shape[-1])) == -1).all()  # background


def test_the_truth_itself_is_right_from_every_side(truth):
    views = _verdicts(NEXT_TO, truth.image, truth.alpha, truth.material)
    assert all(v.layout_ok for v in views) and max(v.bleed for v in views) < 0.01  # edge pixels blend
    # the order is visible from the front and the back (left/right), and from the sides one hides the other
    assert [v.order for v in views] == ["left/right", "left/right", "front/behind", "left/right",
                                        "left/right", "left/right", "front/behind", "left/right"]


def test_a_two_object_janus_fails_where_the_order_shows(truth):
    """The front's layout repeated on the back: the asset seen from 180° shows what the front shows."""
    front_again = render(NEXT_TO, Cameras.from_angles([0.0] * 8, ELEVATION), SIZE)
    views = _verdicts(NEXT_TO, front_again.image, front_again.alpha, truth.material)
    assert views[0].layout_ok and not views[4].layout_ok  # right from the front, wrong from the back
    swapped = render(SceneSpec(NEXT_TO.objects[::-1], "next to"), CAMS, SIZE)  # places swapped
    assert not any(v.layout_ok for v in _verdicts(NEXT_TO, swapped.image, swapped.alpha, truth.material))


def test_bled_colours_fail_even_with_the_shapes_in_place(truth):
    """Both objects in the right places, each painted half in the other's colour."""
    a, b = (torch.tensor(COLORS[o.color]) for o in NEXT_TO.objects)
    img = truth.image.clone()
    left = torch.zeros_like(truth.material, dtype=torch.bool)
    left[:, :, : SIZE // 2 + 4] = True  # a band that covers part of each object in the front views
    for i in range(len(AZIMUTHS)):
        for mat, col in ((1, b), (2, a)):
            m = (truth.material[i] == mat) & left[i]
            img[i, :, m] = col[:, None]
    views = _verdicts(NEXT_TO, img, truth.alpha, truth.material)
    assert views[0].bleed > MAX_BLEED and not views[0].layout_ok


def test_the_front_object_must_show_more_from_the_side(truth):
    """At 90° the second object hides the first; an asset showing the first in front is wrong there."""
    side = render(SceneSpec(NEXT_TO.objects[::-1], "next to"), Cameras.from_angles([90.0], ELEVATION), SIZE)
    (v,) = _verdicts(NEXT_TO, side.image, side.alpha, truth.material[2:3])
    assert v.order == "front/behind" and not v.layout_ok


def test_scenes_without_two_colours_are_not_measured(truth):
    single = parse_caption("a red cube")
    assert _verdicts(single, truth.image, truth.alpha, truth.material) is None
    same = SceneSpec((ObjectSpec("cube", "red"), ObjectSpec("sphere", "red")), "next to")
    assert _verdicts(same, truth.image, truth.alpha, truth.material) is None


def test_check_on_truth_passes_the_truth_and_fails_the_mirror():
    specs = [NEXT_TO, parse_caption("a red sphere on top of a green cylinder")] * 2
    r = check_on_truth(specs, torch.tensor([10.0, 100.0, 200.0, 300.0]), torch.tensor([20.0, 30.0, 10.0, 25.0]),
                       SIZE, Judge.load())
    assert r.views == 4 and r.layout_right_on_truth == 1.0 and r.layout_wrong_on_mirror == 1.0
    assert r.ordered_views == 1.0
