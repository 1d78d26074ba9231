"""A tiny random toy prior and judge, so pipeline tests run in seconds without the shipped weights."""

import pytest
from tiny_toy import install_tiny_judge, joint_run, lively_prior, make_tiny_judge, make_tiny_prior

from distill3d.priors.toy.prior import ToyPrior

__all__ = ["joint_run", "lively_prior", "make_tiny_judge", "make_tiny_prior"]


@pytest.fixture
def tiny_prior() -> ToyPrior:
    return make_tiny_prior()


@pytest.fixture(autouse=True)
def tiny_judge(monkeypatch):
    return install_tiny_judge(monkeypatch)
