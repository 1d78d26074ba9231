import pytest

from distill3d.core.errors import UserError
from distill3d.toyworld.grammar import (
    COLOR_NAMES,
    HELDOUT_SINGLES,
    SHAPES,
    SceneSpec,
    all_specs,
    is_heldout,
    parse_caption,
    split_view_suffix,
)


def test_vocabulary_sizes():
    assert {"sphere", "cube", "cone", "cylinder", "torus", "face"} <= set(SHAPES)
    assert len(COLOR_NAMES) >= 7


@pytest.mark.parametrize("spec", all_specs()[::37])
def test_caption_round_trip(spec):
    assert parse_caption(spec.caption) == spec


def test_every_scene_round_trips_and_is_unique():
    specs = all_specs()
    assert len({s.caption for s in specs}) == len(specs)
    assert all(parse_caption(s.caption) == s for s in specs)


def test_articles_aliases_case_and_view_suffix():
    spec = parse_caption("A Grey face next to a orange cone, front view.")
    assert spec.caption == "a gray face next to an orange cone"
    assert spec.kind == "next to" and spec.has_face
    assert split_view_suffix("a red cube, overhead view") == ("a red cube", "overhead")


def test_kinds():
    assert parse_caption("a red cube").kind == "single"
    assert parse_caption("a red face").kind == "face"
    assert parse_caption("a red cube on top of a blue sphere").kind == "on top of"


@pytest.mark.parametrize("bad", ["a red dog", "a red cube on a blue sphere", "red cube", "",
                                 "a red cube next to", "a red cube next to a blue sphere cube", "a red cube!"])
def test_outside_grammar_is_a_one_line_error_listing_words(bad):
    with pytest.raises(UserError) as err:
        parse_caption(bad)
    msg = str(err.value)
    assert "\n" not in msg
    assert "torus" in msg and "purple" in msg


def test_heldout_split():
    specs = all_specs()
    held = [s for s in specs if is_heldout(s)]
    assert {s.caption for s in held if s.relation is None} == set(HELDOUT_SINGLES)
    pairs = [s for s in specs if s.relation is not None]
    assert 0.05 < sum(map(is_heldout, pairs)) / len(pairs) < 0.15
    # every colour and shape still appears in some training single
    train_singles = [s for s in specs if s.relation is None and not is_heldout(s)]
    assert {s.objects[0].shape for s in train_singles} == set(SHAPES)
    assert {s.objects[0].color for s in train_singles} == set(COLOR_NAMES)


def test_scene_spec_validates():
    with pytest.raises(ValueError):
        SceneSpec(())


def test_the_documented_heldout_list_is_the_rule():
    from pathlib import Path

    from distill3d.toyworld.grammar import HELDOUT_SINGLES, all_specs, is_heldout

    text = (Path(__file__).resolve().parents[2] / "docs" / "heldout_captions.txt").read_text()
    listed = [line for line in text.splitlines() if line and not line.startswith("#")]
    expected = list(HELDOUT_SINGLES) + [s.caption for s in all_specs() if s.relation and is_heldout(s)]
    assert listed == expected
    assert len(listed) == len(set(listed)) > 400
