"""distill3d: text-to-3D generation and 3D editing by score distillation from 2D diffusion priors.

Layers (see docs/architecture.md): core <- toyworld, priors, scene <- export, guidance <- pipeline <- cli.
The package imports nothing heavy at import time; submodules import torch when they need it.
"""

__version__ = "0.1.0"
