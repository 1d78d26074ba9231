"""The toy prior's two text encoders: object tokens parsed from the caption, and word tokens."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.priors.toy.model import ToyUNet, ToyUNetConfig
from distill3d.priors.toy.text import ROLES, ObjectEncoder, SceneIds, SceneTokenizer
from distill3d.toyworld.grammar import COLOR_NAMES, RELATIONS, SHAPES, VIEWS, parse_caption


def _decode(ids: SceneIds) -> str:
    """SceneIds -> the canonical caption (the inverse of SceneTokenizer.ids on grammar captions)."""
    objs = [f"{'an' if COLOR_NAMES[c][0] in 'aeiou' else 'a'} {COLOR_NAMES[c]} {SHAPES[s]}"
            for c, s in zip(ids.colour, ids.shape) if c >= 0]
    text = objs[0] if ids.relation < 0 else f"{objs[0]} {RELATIONS[ids.relation]} {objs[1]}"
    return text if ids.view < 0 else f"{text}, {VIEWS[ids.view]} view"


@pytest.mark.parametrize("caption", [
    "a red cube", "an orange torus", "a purple sphere on top of a green cube",
    "a blue face next to a gray cylinder", "a yellow cone, back view",
    "a pink cube next to a red sphere, overhead view",
])
def test_scene_ids_round_trip(caption):
    ids = SceneTokenizer().ids(caption)
    assert ids is not None and _decode(ids) == caption


def test_roles_follow_the_object_order():
    tok = SceneTokenizer()
    single, pair = tok.ids("a red cube"), tok.ids("a red cube on top of a blue sphere")
    assert single.role == (ROLES.index("single"), -1)
    assert pair.role == (ROLES.index("first"), ROLES.index("second"))
    assert pair.colour == (COLOR_NAMES.index("red"), COLOR_NAMES.index("blue"))


def test_case_and_alias_are_normalised_like_the_grammar():
    tok = SceneTokenizer()
    assert tok.ids("A Grey Cube") == tok.ids("a gray cube")


@pytest.mark.parametrize("prompt", ["", "   "])
def test_null_prompt_is_the_null_token_alone(prompt):
    enc = ObjectEncoder(len(COLOR_NAMES), len(SHAPES), len(RELATIONS), len(VIEWS), 8)
    ids = SceneTokenizer()([prompt])
    assert ids.tolist() == [[-1] * 8]
    tokens, mask = enc(ids)
    assert tokens.shape == (1, 5, 8)
    assert mask.tolist() == [[False, False, False, False, True]]
    # the null token is a learned vector (through the shared LayerNorm), not a zero pad
    expected = torch.nn.functional.layer_norm(enc.null, (8,), enc.norm.weight, enc.norm.bias)
    torch.testing.assert_close(tokens[0, 4], expected)


def test_masks_per_caption_kind():
    enc = ObjectEncoder(len(COLOR_NAMES), len(SHAPES), len(RELATIONS), len(VIEWS), 8)
    _, mask = enc(SceneTokenizer()(["a red cube", "a red cube next to a blue cone", "a red cube, side view"]))
    assert mask.tolist() == [[True, False, False, False, False], [True, True, True, False, False],
                             [True, False, False, True, False]]


@pytest.mark.parametrize("prompt", ["a red dragon", "a red cube on a blue cube", "a cube", "red cube red"])
def test_unknown_words_and_broken_captions_are_one_line_user_errors(prompt):
    with pytest.raises(UserError) as e:
        SceneTokenizer()([prompt])
    assert "\n" not in str(e.value) and "grammar" in str(e.value)


def _tiny(**kw) -> ToyUNet:
    cfg = ToyUNetConfig(vocabulary=("a",), image_size=16, channels=(8, 16), attention=(True, True), heads=2,
                        emb_dim=16, text_dim=16, image_dim=16, image_grid=2, groups=4)
    torch.manual_seed(0)
    model = ToyUNet(replace(cfg, **kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def test_swapping_the_two_objects_changes_the_conditioning_and_the_prediction():
    from distill3d.priors.base import Condition
    from distill3d.priors.toy.prior import ToyPrior

    model = _tiny()
    a, b = "a red cube on top of a blue sphere", "a blue sphere on top of a red cube"
    assert parse_caption(a).objects == parse_caption(b).objects[::-1]
    tokens, mask = model.encode_text([a, b])
    assert bool(mask[0].eq(mask[1]).all())
    assert (tokens[0] - tokens[1]).abs().max() > 1e-3  # same words, other roles: other tokens
    prior = ToyPrior(model)
    z, t = torch.randn(2, 3, 16, 16), torch.full((2,), 500)
    eps = prior.predict_noise(torch.cat([z[:1], z[:1]]), t, [Condition(a), Condition(b)])
    assert (eps[0] - eps[1]).abs().max() > 1e-4


def test_the_word_encoder_cannot_tell_a_swap_by_its_token_set():
    """The contrast the object encoder fixes: with words, the swapped captions hold the same multiset of
    word ids, and only positions tell colours' owners apart."""
    model = _tiny(text_encoder="words", vocabulary=tuple(sorted({*COLOR_NAMES, *SHAPES, "a", "on", "top", "of"})))
    ids = model.tokenizer(["a red cube on top of a blue sphere", "a blue sphere on top of a red cube"])
    assert sorted(ids[0].tolist()) == sorted(ids[1].tolist()) and ids[0].tolist() != ids[1].tolist()


def test_config_json_round_trip_and_old_configs_read_as_words():
    cfg = ToyUNetConfig(vocabulary=("a", "b"), text_encoder="objects", prediction="v")
    assert ToyUNetConfig.from_json(cfg.to_json()) == cfg
    old = cfg.to_json()
    del old["text_encoder"], old["prediction"]
    assert ToyUNetConfig.from_json(old).text_encoder == "words"
    assert ToyUNetConfig.from_json(old).prediction == "eps"
    with pytest.raises(ValueError):
        ToyUNetConfig(vocabulary=("a",), text_encoder="bag")


def test_v_prediction_converts_to_eps():
    """For a v-model, eps() = √ᾱ v̂ + √(1−ᾱ) z_t: a network that outputs the true v gives back the true ε."""
    from distill3d.priors.base import alphas_cumprod_cosine

    model = _tiny(prediction="v")
    ac = alphas_cumprod_cosine()
    x0, eps = torch.rand(3, 3, 16, 16) * 2 - 1, torch.randn(3, 3, 16, 16)
    t = torch.tensor([10, 500, 990])
    a = ac[t][:, None, None, None]
    z = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    model.forward = lambda z_t, t_, cond: v  # an oracle network
    torch.testing.assert_close(model.eps(z, t, None, ac), eps, atol=1e-5, rtol=1e-4)
