"""Typed, flat run presets and ``--set key=value`` overrides.

A run is described by a :class:`RunConfig` (the loop's own settings) plus the guidance method's config
overrides (fields of the method's config dataclass, e.g. ``guidance_scale``). ``--set`` keys that name a
RunConfig field change the run; any other key is handed to the method's factory, which rejects unknown
fields. Values are parsed with the field's type: ``--set steps=300 --set guidance_scale=50``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, fields, replace
from typing import Any

from distill3d.core.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_DEG
from distill3d.core.errors import UserError


@dataclass(frozen=True)
class RunConfig:
    """Settings of one generation run (field docs are the ``distill3d methods`` help)."""

    method: str = "sds"
    steps: int = 600  # optimisation steps
    views_per_step: int = 4  # random views rendered and guided per step
    representation: str = "gaussians"  # "gaussians" or "radiance"
    num_gaussians: int = 1500  # initial Gaussians, uniform in a ball
    init_radius: float = 0.6  # radius of that ball
    init_scale: float = 0.05  # initial Gaussian size
    init_opacity: float = 0.3
    lr_means: float = 0.002
    lr_scales: float = 0.005
    lr_quats: float = 0.001
    lr_opacity: float = 0.05
    lr_colors: float = 0.01
    lr_radiance: float = 0.05  # radiance field grid learning rate
    grid_resolution: int = 32  # radiance field grid side
    densify: str = "none"  # densification preset: "none", "toy", "gaussiandreamer", "luciddreamer"
    elevation_min: float = 0.0  # random training cameras
    elevation_max: float = 40.0
    front_bias: float = 0.0  # share of views drawn near azimuth 0 (0: uniform azimuth)
    distance_min: float = DEFAULT_DISTANCE  # the embedded prior was trained at this distance and fov
    distance_max: float = DEFAULT_DISTANCE
    fov_min: float = DEFAULT_FOV_DEG
    fov_max: float = DEFAULT_FOV_DEG
    checkpoint_every: int = 100  # steps between checkpoints (0: only at the end)
    preview_every: int = 100  # steps between preview grids (0: none)
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: leave as is)
    export_size: int = 128  # pixels of views.png tiles and turntable frames
    turntable_frames: int = 36
    mesh_resolution: int = 64  # marching-cubes grid side


#: The methods ``generate`` runs. Every one uses RunConfig's loop settings; its own hyperparameters (CFG,
#: timesteps, weighting, λ_ip, ...) are the defaults of its config dataclass in ``distill3d.guidance``.
#: Editing methods (uds-edit, dds) need a source asset and are not listed.
GENERATE_METHODS: tuple[str, ...] = ("sds", "anchords", "anchords-filter", "anchords-finetune", "isd", "uds",
                                     "sds-bridge", "csd", "nfsd", "ism")


def _parse_value(text: str, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.lower() == "none":
            return None
        kind = args[0]
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float, str):
            return kind(text)
    except ValueError:
        raise UserError(f"--set {key}={text}: expected {kind.__name__}") from None
    raise UserError(f"--set {key}: this field ({kind}) cannot be set from the command line")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def typed_overrides(cls: type, raw: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split raw overrides into (typed values for ``cls``'s fields, the rest as strings)."""
    hints = typing.get_type_hints(cls)
    mine = {f.name for f in fields(cls)}
    typed = {k: _parse_value(v, hints[k], k) for k, v in raw.items() if k in mine}
    return typed, {k: v for k, v in raw.items() if k not in mine}


def method_config_overrides(config_cls: type, raw: dict[str, str]) -> dict[str, Any]:
    """Parse method-level overrides against the method's config dataclass; unknown keys are an error."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(config_cls)
    typed, rest = typed_overrides(config_cls, raw)
    if rest:
        names = sorted({f.name for f in fields(config_cls)} | {f.name for f in fields(RunConfig)})
        raise UserError(f"unknown --set key(s) {', '.join(sorted(rest))}; known: {', '.join(names)}")
    return typed


def resolve_run_config(method: str, raw: dict[str, str]) -> tuple[RunConfig, dict[str, str]]:
    """The preset of ``method`` with run-level overrides applied; returns the method-level rest."""
    if method not in GENERATE_METHODS:
        raise UserError(f"unknown method {method!r}; choose one of {', '.join(GENERATE_METHODS)}")
    typed, rest = typed_overrides(RunConfig, raw)
    cfg = replace(RunConfig(), method=method, **typed)
    if cfg.representation not in ("gaussians", "radiance"):
        raise UserError(f"representation must be 'gaussians' or 'radiance', got {cfg.representation!r}")
    if cfg.steps < 1 or cfg.views_per_step < 1:
        raise UserError("steps and views_per_step must be at least 1")
    return cfg, rest


__all__ = ["GENERATE_METHODS", "RunConfig", "method_config_overrides", "parse_overrides", "resolve_run_config"]
