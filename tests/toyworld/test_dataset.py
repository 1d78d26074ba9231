import json

import numpy as np
import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.toyworld.dataset import DatasetConfig, build_dataset, load_dataset
from distill3d.toyworld.grammar import is_heldout, parse_caption

CFG = DatasetConfig(count=10, size=16, seed=3, shard_size=4)


def test_dataset_is_deterministic_under_a_seed(tmp_path):
    a = load_dataset(build_dataset(tmp_path / "a", CFG, progress=False))
    b = load_dataset(build_dataset(tmp_path / "b", CFG, progress=False))
    assert len(a) == 10 and a.images.shape == (10, 3, 16, 16) and a.images2.shape == (10, 3, 16, 16)
    assert a.captions == b.captions
    assert torch.equal(a.images, b.images) and torch.equal(a.images2, b.images2)
    assert torch.equal(a.cameras, b.cameras)
    c = load_dataset(build_dataset(tmp_path / "c", DatasetConfig(count=10, size=16, seed=4, shard_size=4),
                                   progress=False))
    assert c.captions != a.captions


def test_split_and_views(tmp_path):
    d = load_dataset(build_dataset(tmp_path / "d", CFG, progress=False))
    assert not any(is_heldout(parse_caption(c)) for c in d.captions)
    assert not torch.equal(d.images, d.images2)  # a second, different view of the same scene
    assert d.cameras.shape == (10, 2, 2)
    h = load_dataset(build_dataset(tmp_path / "h", DatasetConfig(count=6, size=16, split="heldout"),
                                   progress=False))
    assert all(is_heldout(parse_caption(c)) for c in h.captions)


def test_resume_keeps_finished_shards_and_refuses_other_config(tmp_path):
    root = build_dataset(tmp_path / "r", CFG, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["format"] == "distill3d-toy/1" and len(meta["shards"]) == 3
    (root / meta["shards"][1]).unlink()
    first = (root / meta["shards"][0]).stat().st_mtime_ns
    build_dataset(root, CFG, progress=False)
    assert (root / meta["shards"][0]).stat().st_mtime_ns == first
    with np.load(root / meta["shards"][1]) as z:
        assert z["images"].shape == (4, 3, 16, 16)
    with pytest.raises(UserError):
        build_dataset(root, DatasetConfig(count=10, size=16, seed=9, shard_size=4), progress=False)


def test_missing_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        load_dataset(tmp_path / "nothing")
