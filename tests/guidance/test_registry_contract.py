"""The contract runs on every registered method as the registry builds it (its preset), edit methods with a
source: a method added to the registry is covered without a test of its own."""

from __future__ import annotations

import pytest

from distill3d.guidance import METHODS

from .contract import PROMPT, GuidanceContract
from .tiny_prior import TinyPrior

#: Presets whose gradient on the contract's random renders is legitimately zero, with the override that keeps
#: it alive (their own tests check the preset as is): random renders reconstruct badly, so AnchorDS' filter
#: (Eq. 14) would drop every view.
ALIVE = {("generate", "anchords-filter"): {"filter_threshold": 1e9}}


class TestEveryRegisteredMethod(GuidanceContract):
    @pytest.fixture(autouse=True, params=METHODS, ids=lambda e: f"{e.kind}:{e.name}")
    def _entry(self, request):
        self.entry = request.param
        self.with_source = request.param.kind == "edit"

    def make_method(self):
        method = self.entry.build(**ALIVE.get((self.entry.kind, self.entry.name), {}))
        method.setup(TinyPrior(), PROMPT, seed=0)  # e.g. ISD's reference image, as a run makes it
        return method
