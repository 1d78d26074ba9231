"""Bench tests run on a tiny random toy prior and judge (in this process), so a grid takes seconds."""

import pytest
from tiny_toy import install_tiny_judge, lively_prior, make_tiny_judge

__all__ = ["lively_prior", "make_tiny_judge"]


@pytest.fixture(autouse=True)
def tiny_judge(monkeypatch):
    return install_tiny_judge(monkeypatch)
