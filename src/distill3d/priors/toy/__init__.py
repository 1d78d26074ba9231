"""The embedded default prior: a small pixel-space diffusion model trained on the toy world.

``ToyPrior`` (prior.py) is what guidance methods use; ``ToyUNet`` (model.py) is the network,
``Tokenizer``/``TextEncoder`` (text.py) read captions, train.py trains it; distill3d.priors.sampling draws images from it.
"""

from distill3d.priors.toy.model import ModelConditions, ToyUNet, ToyUNetConfig
from distill3d.priors.toy.prior import DEFAULT_WEIGHTS, ToyPrior

__all__ = ["DEFAULT_WEIGHTS", "ModelConditions", "ToyPrior", "ToyUNet", "ToyUNetConfig"]
