"""Fuzzing what a user types or hands over: captions against the toy grammar, ``--set`` strings against the
preset parser, PLY bytes against the Gaussian PLY loader. Each input either works or raises the project's
one-line ``UserError``, never anything else. Derandomised (the same examples in every run) and fast."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill3d.core.errors import UserError
from distill3d.export.ply import gaussian_ply_properties, load_gaussians_ply
from distill3d.guidance import GENERATE_METHODS
from distill3d.pipeline.config import RunConfig, parse_overrides, resolve_run_config
from distill3d.pipeline.loop import build_method
from distill3d.scene.registry import REPRESENTATIONS
from distill3d.toyworld.grammar import VOCABULARY, all_specs, parse_caption

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _one_line(err: UserError) -> None:
    text = str(err)
    assert "\n" not in text and "\r" not in text, text
    assert len(text) < 1200, f"{len(text)} characters: long inputs must be cut"


# ---------------------------------------------------------------- captions

WORDS = [*VOCABULARY, "grey", "dragon", "photo", "of", ",", ".", "view", "A", "RED", "on top of", "next to"]
SPECS = all_specs()
captions = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join),
    st.builds(lambda spec, suffix: spec.caption + suffix, st.sampled_from(SPECS),
              st.sampled_from(["", ", front view", ", back view.", " ,side view", ", sideways view", "!", "\n"])),
    st.lists(st.sampled_from(WORDS), min_size=150, max_size=250).map(" ".join),  # a 200-word prompt
)


@FUZZ
@given(captions)
def test_a_caption_parses_or_is_refused_in_one_line(text):
    try:
        spec = parse_caption(text)
    except UserError as err:
        _one_line(err)
    else:
        assert parse_caption(spec.caption) == spec  # what was read can be written back and read again


def test_every_scene_of_the_grammar_round_trips():
    for spec in SPECS:
        assert parse_caption(spec.caption) == spec


def test_a_200_word_caption_is_cut_in_its_error():
    with pytest.raises(UserError) as e:
        parse_caption(" ".join(["a red dragon"] * 67))
    assert "a red dragon a red dragon" in str(e.value) and "…" in str(e.value) and len(str(e.value)) < 500


# ---------------------------------------------------------------- --set strings

def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


KEYS = sorted({*_field_names(RunConfig),
               *(n for e in REPRESENTATIONS.values() for n in _field_names(e.config_type)),
               *(n for e in GENERATE_METHODS.values() for n in _field_names(e.config_type))})
VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "2", "0.5", "1e309", "-1e309", "nan", "NaN", "inf", "-inf", "none", "None",
                     "true", "off", "", " ", "abc", "1_000", "0x10", "9" * 5000, "1e-320", "radiance", "gaussians",
                     "toy", "sds", "a red cube", "sqrt"]),
    st.integers().map(str),
    st.floats().map(str),
    st.text(max_size=20),
)
PAIRS = st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), VALUES),
                  st.builds(lambda k, v: f"{k}={v}", st.text(max_size=12), VALUES),
                  st.text(max_size=30))


@FUZZ
@given(st.sampled_from(list(GENERATE_METHODS)), st.lists(PAIRS, max_size=4))
def test_set_strings_work_or_are_refused_in_one_line(method, pairs):
    try:
        cfg, rest = resolve_run_config(method, parse_overrides(pairs))
        build_method(cfg, rest)
    except UserError as err:
        _one_line(err)
    else:
        cfg.validate()  # what was accepted is in range


# ---------------------------------------------------------------- PLY bytes

_TYPES = {"float": "f4", "double": "f8", "uchar": "u1", "int": "i4", "short": "i2"}
_ORDER = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "<"}
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def gaussian_plys(draw) -> bytes:
    """A Gaussian-splatting PLY, often broken: properties shuffled, dropped, repeated or unknown, other
    types and encodings, NaN/inf values, a wrong or huge vertex count, truncated anywhere."""
    n = draw(st.integers(0, 4))
    names = gaussian_ply_properties(draw(st.sampled_from([0, 3])))
    if draw(st.booleans()):
        names = draw(st.permutations(names))  # another producer's property order
    names = [p for p in names if p not in draw(st.lists(st.sampled_from(names), max_size=2))]
    names += draw(st.lists(st.sampled_from(["red", "nx", "f_rest_x", "f_rest_45", "x", "scale_0"]), max_size=2))
    kind = draw(st.sampled_from(sorted(_TYPES)))
    encoding = draw(st.sampled_from(sorted(_ORDER)))
    count = draw(st.one_of(st.just(str(n)), st.sampled_from(["0", "-1", "abc", "1e3", "²", str(n + 1),
                                                               str(10**12), str(2**64), str(10**40)])))
    header = (f"ply\nformat {encoding} 1.0\ncomment fuzz\nelement vertex {count}\n"
              + "".join(f"property {kind} {p}\n" for p in names) + "end_header\n").encode()
    if draw(st.booleans()):
        values = np.array(draw(st.lists(_FLOATS, min_size=n * len(names), max_size=n * len(names))), np.float64)
    else:
        values = np.zeros(n * len(names))
    if kind not in ("float", "double"):
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0).clip(0, 100)
    if encoding == "ascii":
        body = "".join(" ".join(repr(float(v)) for v in values[i * len(names):(i + 1) * len(names)]) + "\n"
                       for i in range(n)).encode()
    else:
        body = values.astype(_ORDER[encoding] + _TYPES[kind]).tobytes()
    data = header + body
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # truncated anywhere, header included
    return data


ply_bytes = st.one_of(gaussian_plys(), st.binary(max_size=400),
                     st.binary(max_size=400).map(lambda b: b"ply\n" + b))


@pytest.fixture(scope="module")
def ply_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "gaussians.ply"


@FUZZ
@given(data=ply_bytes)
def test_ply_bytes_load_or_are_refused_in_one_line(ply_path, data):
    ply_path.write_bytes(data)
    try:
        model = load_gaussians_ply(ply_path)
    except UserError as err:
        _one_line(err)
    else:
        assert len(model) >= 1
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_huge_vertex_counts_are_refused_before_reading(tmp_path):
    names = gaussian_ply_properties(0)
    for count in (10**12, 2**64, 10**40):
        for encoding in ("binary_little_endian", "ascii"):
            path = tmp_path / "huge.ply"
            path.write_bytes((f"ply\nformat {encoding} 1.0\nelement vertex {count}\n"
                              + "".join(f"property float {p}\n" for p in names) + "end_header\n").encode()
                             + b"\0" * 68)
            with pytest.raises(UserError, match="truncated"):
                load_gaussians_ply(path)


def test_nan_and_inf_values_are_refused(tmp_path):
    names = gaussian_ply_properties(0)
    for bad in (float("nan"), float("inf"), -float("inf")):
        values = np.zeros((2, len(names)), "<f4")
        values[1, names.index("opacity")] = bad
        path = tmp_path / "bad.ply"
        path.write_bytes(("ply\nformat binary_little_endian 1.0\nelement vertex 2\n"
                          + "".join(f"property float {p}\n" for p in names) + "end_header\n").encode()
                         + values.tobytes())
        with pytest.raises(UserError, match="NaN or infinite"):
            load_gaussians_ply(path)
