"""A camera-conditioned LoRA of a prior's denoiser, attached with forward hooks (VSD's ε̂_φ).

ProlificDreamer (Wang et al. 2023, Sec. 4 and App. C) trains a LoRA of the pretrained UNet's attention
projections plus a camera embedding added to the timestep embedding. Here, for each chosen ``nn.Linear`` W
of the prior's network (the attention projections q, k, v, out):

    W'(x) = W x + (α/r) · B A x,     A [r, in] small random, B [out, r] zeros      (Hu et al. 2021, Eq. 3)

and, on the output e of the network's timestep-embedding module, for the rows whose condition has a camera π:

    e' = e + MLP(sin az, cos az, el/90),   the MLP's last layer zero-initialised

so the copy starts exactly equal to the frozen prior. Nothing of the prior is replaced: the deltas are added
by forward hooks that act only inside :meth:`LoRADenoiser.predict_noise` (``prior.predict_noise`` itself is
unchanged, bit for bit), and the prior's ``state_dict`` keeps its keys. The prior must run the hooked modules
once per call with the rows in order (one network call over the batch), as both shipped priors do.

The hooks stay registered on the prior's modules for the life of the prior (they cost a flag test when
inactive); :meth:`LoRADenoiser.remove` detaches them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from distill3d.priors.base import Condition


class LoRADelta(nn.Module):
    """(α/r)·B A x for one ``nn.Linear`` of shape [out, in]; zero at initialisation (B = 0)."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)  # A
        self.up = nn.Linear(rank, out_features, bias=False)  # B
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x.float())) * self.scale


def camera_features(conditions: Sequence[Condition], device: torch.device) -> tuple[Tensor, Tensor]:
    """(sin az, cos az, el/90) per row [N, 3] and whether the row has a camera [N] (bool)."""
    cams = [c.camera if c.camera is not None else (0.0, 0.0) for c in conditions]
    angles = torch.tensor(cams, dtype=torch.float32, device=device).reshape(len(conditions), 2)
    az = torch.deg2rad(angles[:, 0])
    feats = torch.stack([torch.sin(az), torch.cos(az), angles[:, 1] / 90.0], dim=-1)
    mask = torch.tensor([c.camera is not None for c in conditions], dtype=torch.bool, device=device)
    return feats, mask


class LoRADenoiser(nn.Module):
    """ε̂_φ of a prior: its ``predict_noise`` with LoRA deltas on ``linears`` and a camera embedding on the
    output of ``time_embedding`` (width ``embedding_dim``). A ``TrainableDenoiser``
    (``distill3d.priors.base``); the priors build it in their ``trainable_denoiser``."""

    def __init__(self, predict: Callable[[Tensor, Tensor, Sequence[Condition]], Tensor],
                 linears: dict[str, nn.Linear], time_embedding: nn.Module, embedding_dim: int, rank: int,
                 device: torch.device) -> None:
        super().__init__()
        if not linears:
            raise ValueError("a LoRA needs at least one linear layer to adapt")
        self._predict = predict
        self.lora = nn.ModuleDict({name.replace(".", "__"): LoRADelta(m.in_features, m.out_features, rank)
                                   for name, m in linears.items()})
        self.camera = nn.Sequential(nn.Linear(3, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim))
        nn.init.zeros_(self.camera[2].weight)
        nn.init.zeros_(self.camera[2].bias)
        self.to(device)
        self._active = False
        self._camera_rows: tuple[Tensor, Tensor] | None = None
        self._handles = [m.register_forward_hook(self._linear_hook(name.replace(".", "__")))
                         for name, m in linears.items()]
        self._handles.append(time_embedding.register_forward_hook(self._time_hook))

    def _linear_hook(self, key: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
            if not self._active:
                return None
            return output + self.lora[key](args[0]).to(output.dtype)
        return hook

    def _time_hook(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        if not self._active or self._camera_rows is None:
            return None
        feats, mask = self._camera_rows  # [N, 3], [N]
        if output.shape[0] != feats.shape[0]:
            raise RuntimeError("the prior's timestep embedding saw a batch other than the call's rows")
        delta = self.camera(feats) * mask[:, None].to(feats.dtype)  # [N, D]
        return output + delta.to(output.dtype)

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        """ε̂_φ [N, C, h, w]: the prior's prediction with the LoRA and camera embedding switched on."""
        self._camera_rows = camera_features(conditions, self.camera[0].weight.device)
        self._active = True
        try:
            return self._predict(z_t, t, conditions)
        finally:
            self._active = False
            self._camera_rows = None

    def remove(self) -> None:
        """Detach the hooks from the prior's modules (this copy then predicts like the frozen prior)."""
        for h in self._handles:
            h.remove()
        self._handles = []


__all__ = ["LoRADelta", "LoRADenoiser", "camera_features"]
