"""The toy prior has no ControlNet: it says so (``control_kind``) and refuses a map it would ignore."""

from __future__ import annotations

import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.priors.base import Condition
from distill3d.priors.toy.model import ToyUNet, ToyUNetConfig
from distill3d.priors.toy.prior import ToyPrior


@pytest.fixture(scope="module")
def toy() -> ToyPrior:
    torch.manual_seed(0)
    cfg = ToyUNetConfig(vocabulary=("a", "red", "cube"), image_size=16, channels=(8, 16), attention=(False, True),
                        heads=2, emb_dim=16, text_dim=16, text_layers=1, max_text_len=8, image_dim=16, image_grid=2,
                        groups=4)
    return ToyPrior(ToyUNet(cfg))


def test_toy_prior_takes_no_control_maps(toy):
    assert toy.control_kind is None and getattr(toy, "control_kind", "absent") is None
    z, t = torch.randn(2, 3, 16, 16), torch.tensor([100, 600])
    control = torch.rand(3, 16, 16)
    with torch.no_grad():
        plain = toy.predict_noise(z, t, [Condition("a red cube")] * 2)
        zero = toy.predict_noise(z, t, [Condition("a red cube", control=control, control_scale=0.0)] * 2)
    assert torch.equal(plain, zero)  # scale 0 is exactly no control, so it is accepted
    with pytest.raises(UserError, match="no ControlNet") as info:
        toy.predict_noise(z, t, [Condition("a red cube"),
                                 Condition("a red cube", control=control, control_scale=1.0)])
    assert "\n" not in str(info.value)
