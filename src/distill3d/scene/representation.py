"""The one protocol every 3D representation implements, and what a run needs from it.

The optimisation loop, ``generate``/``edit``, the exporters and the CLI see a representation only
through :class:`Representation` (plus ``nn.Module``'s ``parameters``, ``to``, ``train``/``eval``,
``state_dict``) and find its class and typed config in ``distill3d.scene.registry``. They never test
which representation they hold. A representation's run config (initialisation, learning rates,
densification) is a frozen dataclass next to its class; its fields are ``--set`` keys.

    rep = Entry.cls.build(config, generator)           # a fresh asset for a run
    groups = rep.param_groups(config)                  # what the optimiser trains, at which lr
    out = rep.render(cameras, size, background, backend)
    densifier = rep.densifier(config)                  # None: the representation does not densify
    rep.restore(checkpoint_state)                      # parameters from rep.state_dict(), sizes may differ
    rep.save(dir / rep.file_name); Cls.load(path)      # the file other tools open
    rep.density_grid(R), rep.color_at(points), rep.mesh_threshold   # marching cubes
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from distill3d.core.cameras import Cameras
from distill3d.scene.render_output import RenderOutput


@dataclass(frozen=True)
class ParamGroup:
    """One optimiser parameter group: a name (for logs), its tensors, its learning rate and Adam's ε."""

    name: str
    params: list[nn.Parameter]
    lr: float
    eps: float = 1e-8


class Densifier(Protocol):
    """Adaptive density control driven by the loop, once per step (see ``scene/densify.py``)."""

    def update(self, out: RenderOutput) -> None:
        """Accumulate statistics from a render, after ``loss.backward()``."""
        ...

    def step(self, representation: Any, optimizer: torch.optim.Optimizer, step: int) -> Any:
        """Apply the schedule at ``step`` (counted from 1), keeping the optimiser's state in step."""
        ...

    def state_dict(self) -> dict:
        ...

    def load_state_dict(self, state: dict) -> None:
        ...


@runtime_checkable
class Representation(Protocol):
    """A differentiable 3D asset (an ``nn.Module``)."""

    #: File name inside a run directory (``gaussians.ply``); its suffix says which files ``load`` reads.
    file_name: ClassVar[str]
    #: Density level a mesh is cut at by default (densities have different units per representation).
    mesh_threshold: ClassVar[float]

    @classmethod
    def build(cls, config: Any, generator: torch.Generator) -> Representation:
        """A fresh asset for a run, initialised as ``config`` says, drawing from ``generator``."""
        ...

    def param_groups(self, config: Any) -> list[ParamGroup]:
        """Every trainable tensor exactly once, grouped with the learning rates of ``config``."""
        ...

    def densifier(self, config: Any) -> Densifier | None:
        """The densification ``config`` asks for, bound to this asset; None for none."""
        ...

    def restore(self, state: dict[str, Tensor]) -> None:
        """Take the parameters of a checkpoint (``state_dict()`` of an asset of the same config; its
        sizes may differ where densification changed them). Build the optimiser afterwards."""
        ...

    def render(self, cameras: Cameras, size: int, background: Tensor, backend: str = "auto") -> RenderOutput:
        """Render every camera; background [3]. image [B, 3, size, size], alpha and depth [B, 1, size, size]."""
        ...

    def density_grid(self, resolution: int) -> Tensor:
        """Density at the grid points of [-1, 1]^3, indexed [x, y, z]. [R, R, R]"""
        ...

    def color_at(self, points: Tensor) -> Tensor:
        """RGB in [0, 1] at world points [N, 3]. [N, 3]"""
        ...

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the asset to ``path`` atomically (in its ``file_name`` format); returns the path."""
        ...

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Representation:
        """Read a file written by ``save`` (or another producer of the same format); ``UserError`` if not."""
        ...


__all__ = ["Densifier", "ParamGroup", "Representation"]
