"""The contract runs on every registered method as the registry builds it (its preset), edit methods with a
source: a method added to the registry is covered without a test of its own. Each runs twice: on the tiny
single-view prior (3 views) and on the tiny multi-view prior (4 views at 90°), so every single-view method is
also checked to keep working on a prior that denoises groups of views jointly."""

from __future__ import annotations

import pytest

from distill3d.core.errors import UserError
from distill3d.guidance import METHODS

from .contract import PROMPT, GuidanceContract
from .joint_prior import JointTinyPrior
from .tiny_prior import TinyPrior

#: Presets whose gradient on the contract's random renders is legitimately zero, with the override that keeps
#: it alive (their own tests check the preset as is): random renders reconstruct badly, so AnchorDS' filter
#: (Eq. 14) would drop every view.
ALIVE = {("generate", "anchords-filter"): {"filter_threshold": 1e9}}
#: Methods that need a multi-view prior (their set-up refuses the single-view one): the joint prior only.
JOINT_ONLY = {("generate", "mvdream-sds")}


class TestEveryRegisteredMethod(GuidanceContract):
    @pytest.fixture(autouse=True, params=[(e, joint) for e in METHODS for joint in (False, True)],
                    ids=lambda p: f"{p[0].kind}:{p[0].name}:{'joint' if p[1] else 'single'}")
    def _entry(self, request):
        self.entry, self.joint = request.param
        if not self.joint and (self.entry.kind, self.entry.name) in JOINT_ONLY:
            pytest.skip("needs a multi-view prior")
        self.with_source = self.entry.kind == "edit"
        self.batch = 4 if self.joint else 3

    def make_prior(self):
        return JointTinyPrior() if self.joint else TinyPrior()

    def make_method(self):
        method = self.entry.build(**ALIVE.get((self.entry.kind, self.entry.name), {}))
        method.setup(self.make_prior(), PROMPT, seed=0)  # e.g. ISD's reference image, as a run makes it
        return method


def test_joint_only_lists_exactly_the_methods_whose_setup_refuses_a_single_view_prior():
    refusing = set()
    for entry in METHODS:
        try:
            entry.build(**ALIVE.get((entry.kind, entry.name), {})).setup(TinyPrior(), PROMPT, seed=0)
        except UserError as err:
            assert "multi-view prior" in str(err)
            refusing.add((entry.kind, entry.name))
    assert refusing == JOINT_ONLY
