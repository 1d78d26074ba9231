"""A tiny random toy prior and judge, so pipeline tests run in seconds without the shipped weights."""

import pytest
import torch

from distill3d.priors.toy.model import ToyUNet, ToyUNetConfig
from distill3d.priors.toy.prior import ToyPrior
from distill3d.toyworld import judge as judge_module
from distill3d.toyworld.grammar import VOCABULARY


def make_tiny_prior(seed: int = 0) -> ToyPrior:
    torch.manual_seed(seed)
    cfg = ToyUNetConfig(vocabulary=VOCABULARY, image_size=16, channels=(8, 16, 16), emb_dim=16, text_dim=16,
                        text_layers=1, image_dim=16, heads=2, groups=4)
    return ToyPrior(ToyUNet(cfg))


@pytest.fixture
def tiny_prior() -> ToyPrior:
    return make_tiny_prior()


def make_tiny_judge() -> judge_module.Judge:
    torch.manual_seed(1)
    return judge_module.Judge(judge_module.JudgeNet(judge_module.JudgeConfig(widths=(4, 4, 4), hidden=8)))


@pytest.fixture(autouse=True)
def tiny_judge(monkeypatch):
    judge = make_tiny_judge()
    monkeypatch.setattr(judge_module.Judge, "load", staticmethod(lambda path=None: judge))
    return judge
