"""The β-weighted multi-view term (guidance/mv_term.py) against a hand-written Eq. 8-9, on the tiny priors."""

from __future__ import annotations

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.guidance.anchords import AnchorDS, AnchorDSConfig, CodeForm
from distill3d.guidance.base import Constant
from distill3d.guidance.mv_term import (
    SDSMV,
    UDSMV,
    AnchorDSMV,
    AnchorDSMVConfig,
    MultiViewTermConfig,
    SDSMVConfig,
    UDSMVConfig,
)
from distill3d.guidance.sds import SDS, SDSConfig
from distill3d.guidance.uds import UDS
from distill3d.priors.base import Condition, ViewCapabilities

from .contract import PROMPT, GuidanceContract, make_input
from .joint_prior import JointTinyPrior
from .tiny_prior import TinyPrior

BETA = 0.4
S = 15.0


class TestUDSMVContractOnTheJointPrior(GuidanceContract):
    batch = 8  # two groups of 4 views at 90°

    def make_prior(self):
        return JointTinyPrior()

    def make_method(self):
        return UDSMV(UDSMVConfig(mv=MultiViewTermConfig(guidance_scale=S)))


def _mv_reference(prior, inp, generator: torch.Generator, grouped: bool) -> torch.Tensor:
    """Eq. 8 written out: t' uniform in [20, 980] per view (the first view's for a whole group of 4), ε' per view,
    each group (or each view) denoised on its own, CFG S, w = 1 − ᾱ."""
    b = inp.latents.shape[0]
    t = torch.randint(20, 981, (b,), generator=generator)
    eps = torch.randn(inp.latents.shape, generator=generator)
    if grouped:
        t = t.reshape(-1, 4)[:, :1].expand(-1, 4).reshape(-1)
    a = prior.alphas_cumprod[t][:, None, None, None]
    z_t = a.sqrt() * inp.latents.detach() + (1 - a).sqrt() * eps
    cams = [(float(az), float(el)) for az, el in zip(inp.cameras.azimuth, inp.cameras.elevation)]
    size = 4 if grouped else 1
    out = []
    for k in range(0, b, size):
        rows = slice(k, k + size)
        pred = {text: prior.predict_noise(z_t[rows], t[rows], [Condition(text, camera=cams[i], view_group=0 if grouped
                                                                         else None) for i in range(k, k + size)])
                for text in (PROMPT, "")}
        out.append(pred[""] + S * (pred[PROMPT] - pred[""]))
    return (1 - a) * (torch.cat(out) - eps)


@pytest.mark.parametrize("joint", [False, True])
def test_the_term_is_the_base_gradient_plus_beta_times_eq_8(joint):
    prior = JointTinyPrior() if joint else TinyPrior()
    inp = make_input(prior, batch=8 if joint else 3)
    base_cfg = AnchorDSConfig(image_scale=0.3)
    method = AnchorDSMV(AnchorDSMVConfig(base_cfg, MultiViewTermConfig(beta=Constant(BETA), guidance_scale=S)))
    out = method(prior, inp, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    base = AnchorDS(base_cfg)(prior, inp, g)  # the base method draws first, from the same generator
    g_mv = _mv_reference(prior, inp, g, grouped=joint)
    assert torch.allclose(out.grad, base.grad + BETA * g_mv, atol=1e-5)
    assert torch.equal(out.t, base.t)
    assert out.num_prior_calls == base.num_prior_calls + 1 == method.prior_calls_per_step
    assert out.num_prior_evals == base.num_prior_evals + 2 * inp.latents.shape[0]


@pytest.mark.parametrize("wrapped", ["uds", "sds"])
def test_beta_zero_leaves_the_base_method_exactly(wrapped):
    prior = TinyPrior()
    inp = make_input(prior)
    zero = MultiViewTermConfig(beta=Constant(0.0))
    method, base = ((UDSMV(UDSMVConfig(mv=zero)), UDS()) if wrapped == "uds"
                    else (SDSMV(SDSMVConfig(SDSConfig(guidance_scale=S), zero)), SDS(SDSConfig(guidance_scale=S))))
    out = method(prior, inp, torch.Generator().manual_seed(2))
    assert torch.equal(out.grad, base(prior, inp, torch.Generator().manual_seed(2)).grad)
    assert method.prior_calls_per_step == base.prior_calls_per_step + 1


def test_a_prior_that_ignores_cameras_is_refused_at_set_up_in_one_line():
    class CameraBlind(TinyPrior):
        view_capabilities = ViewCapabilities()

    with pytest.raises(UserError, match="anchords-mv's multi-view term g_MV .* needs a prior that conditions on "
                                        "cameras") as err:
        AnchorDSMV().setup(CameraBlind(), PROMPT, seed=0)
    assert "\n" not in str(err.value)


def test_the_registry_entries_keep_the_base_methods_preset_and_name_their_keys():
    from distill3d.guidance import GENERATE_METHODS

    entry = GENERATE_METHODS["anchords-mv"]
    assert entry.config().base == GENERATE_METHODS["anchords"].config()
    assert GENERATE_METHODS["sds-mv"].config().base == GENERATE_METHODS["sds"].config()
    assert entry.config().mv.guidance_scale == GENERATE_METHODS["mvdream-sds"].config().guidance_scale  # CFG 5
    assert GENERATE_METHODS["sds-mv"].config().mv.guidance_scale == GENERATE_METHODS["sds"].config().guidance_scale
    code = AnchorDSMV(AnchorDSMVConfig(base=AnchorDSConfig(form=CodeForm())))
    assert code.grammar_fallbacks() and all(k.startswith("base.") for k in code.grammar_fallbacks())


def test_on_a_pair_the_base_method_reads_the_base_prior_and_the_term_the_multi_view_one():
    """``--prior toy --mv-prior toy-mv`` (ModeDreamer's split): AnchorDS's rows (text, image) go to the base, the
    term's camera rows to the multi-view prior, so the gradient is AnchorDS on the base alone + β·Eq. 8 on the
    multi-view prior alone."""
    from distill3d.priors.paired import PairedPrior

    base, mv = TinyPrior(seed=3), JointTinyPrior()
    inp = make_input(base, batch=8)
    base_cfg = AnchorDSConfig(image_scale=0.3)
    method = AnchorDSMV(AnchorDSMVConfig(base_cfg, MultiViewTermConfig(beta=Constant(BETA), guidance_scale=S)))
    out = method(PairedPrior(base, mv), inp, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    expected = AnchorDS(base_cfg)(base, inp, g).grad + BETA * _mv_reference(mv, inp, g, grouped=True)
    assert torch.allclose(out.grad, expected, atol=1e-5)
    assert not torch.allclose(out.grad, method(base, inp, torch.Generator().manual_seed(5)).grad, atol=1e-3)
