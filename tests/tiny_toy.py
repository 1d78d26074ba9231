"""Tiny random stand-ins for the embedded prior and the judge, so pipeline and bench tests run in seconds
without the shipped weights (imported by tests/pipeline/conftest.py and tests/bench/conftest.py)."""

import torch

from distill3d.priors.toy.model import ToyUNet, ToyUNetConfig
from distill3d.priors.toy.prior import ToyPrior
from distill3d.toyworld import judge as judge_module
from distill3d.toyworld.grammar import VOCABULARY


def make_tiny_prior(seed: int = 0) -> ToyPrior:
    """A tiny toy prior as a fresh network: its zero-initialised output layer predicts ε̂ = 0 everywhere."""
    torch.manual_seed(seed)
    cfg = ToyUNetConfig(vocabulary=VOCABULARY, image_size=16, channels=(8, 16, 16), emb_dim=16, text_dim=16,
                        text_layers=1, image_dim=16, heads=2, groups=4)
    return ToyPrior(ToyUNet(cfg))


def lively_prior(seed: int = 0) -> ToyPrior:
    """The tiny toy prior with every weight redrawn at random, so gradients are not vacuously zero (an edit
    between two texts, a benchmark run)."""
    prior = make_tiny_prior(seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return prior


def make_tiny_judge() -> judge_module.Judge:
    torch.manual_seed(1)
    return judge_module.Judge(judge_module.JudgeNet(judge_module.JudgeConfig(widths=(4, 4, 4), hidden=8)))


def install_tiny_judge(monkeypatch) -> judge_module.Judge:
    """Make ``Judge.load`` hand out the tiny judge for the rest of the test."""
    judge = make_tiny_judge()
    monkeypatch.setattr(judge_module.Judge, "load", staticmethod(lambda path=None: judge))
    return judge


def joint_run(entry, prior):
    """A method guiding groups of views jointly (its ``joint_views`` > 1: mvdream-sds) runs on the tiny prior
    inflated across such groups, with its views in groups at even azimuths; others as they are."""
    views = getattr(entry.cls, "joint_views", 1)
    if views == 1:
        return prior, {}
    from distill3d.priors.toy.model import with_views
    from distill3d.priors.toy.prior import ToyPrior

    return ToyPrior(with_views(prior.model, views)), {"views_per_step": str(views), "view_azimuths": "even"}
