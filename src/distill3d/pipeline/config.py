"""Typed, flat run presets and ``--set key=value`` overrides.

A run is described by a :class:`RunConfig` (the loop's own settings), the representation's run config
(``RunConfig.representation_config``: a dataclass next to the representation's class, e.g.
``GaussianRunConfig.num_gaussians``) and the guidance method's config overrides (fields of the method's
config dataclass, e.g. ``guidance_scale``). A ``--set`` key names a RunConfig field, else a field of the
chosen representation's config, else the method's (which rejects unknown fields); the three sets of names
are disjoint (a test checks it). Values are parsed with the field's type:
``--set steps=300 --set num_gaussians=800 --set guidance_scale=50``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields, replace
from typing import Any

from distill3d.core.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_DEG, MAX_ABS_ELEVATION
from distill3d.core.errors import UserError, shorten
from distill3d.guidance.registry import MethodKind, find_method
from distill3d.scene.registry import representation_entry


@dataclass(frozen=True)
class RunConfig:
    """Settings of one generation run (field docs are the ``distill3d methods`` help)."""

    method: str = "sds"
    steps: int = 600  # optimisation steps
    views_per_step: int = 4  # random views rendered and guided per step
    representation: str = "gaussians"  # a name of distill3d.scene.registry.REPRESENTATIONS
    #: The representation's run config (init, learning rates, densification), e.g. GaussianRunConfig;
    #: None: its defaults. Its fields are --set keys.
    representation_config: Any = None
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

    def validate(self) -> None:
        """A ``UserError`` naming the first setting out of range (checked before a run writes anything)."""
        _in_range("steps", self.steps, 1, 1_000_000)
        _in_range("views_per_step", self.views_per_step, 1, 64)
        _in_range("elevation_min", self.elevation_min, -MAX_ABS_ELEVATION, MAX_ABS_ELEVATION)
        _in_range("elevation_max", self.elevation_max, self.elevation_min, MAX_ABS_ELEVATION)
        _in_range("front_bias", self.front_bias, 0.0, 1.0)
        _in_range("distance_min", self.distance_min, 0.1, 100.0)
        _in_range("distance_max", self.distance_max, self.distance_min, 100.0)
        _in_range("fov_min", self.fov_min, 1.0, 170.0)
        _in_range("fov_max", self.fov_max, self.fov_min, 170.0)
        _in_range("checkpoint_every", self.checkpoint_every, 0, None)
        _in_range("preview_every", self.preview_every, 0, None)
        _in_range("seed", self.seed, 0, 2**63 - 1)
        _in_range("threads", self.threads, 0, 1024)
        _in_range("export_size", self.export_size, 16, 2048)
        _in_range("turntable_frames", self.turntable_frames, 2, 3600)
        _in_range("mesh_resolution", self.mesh_resolution, 8, 512)


def _in_range(key: str, value: float, lo: float, hi: float | None) -> None:
    if not lo <= value <= (math.inf if hi is None else hi):
        bounds = f"at least {lo}" if hi is None else f"within [{lo}, {hi}]"
        raise UserError(f"{key} must be {bounds}, got {value}")


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
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        if kind in (int, str):
            return kind(text)
    except ValueError:
        expected = "a finite float" if kind is float else kind.__name__
        raise UserError(f"--set {shorten(key)}={shorten(text)!r}: expected {expected}") from None
    raise UserError(f"--set {shorten(key)}: this field ({kind}) cannot be set from the command line")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {shorten(pair)!r}")
        out[key.strip()] = value.strip()
    return out


def typed_overrides(cls: type, raw: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split raw overrides into (typed values for ``cls``'s fields, the rest as strings)."""
    hints = typing.get_type_hints(cls)
    mine = {f.name for f in fields(cls)}
    typed = {k: _parse_value(v, hints[k], k) for k, v in raw.items() if k in mine}
    return typed, {k: v for k, v in raw.items() if k not in mine}


def representation_config(cfg: RunConfig) -> Any:
    """The run's representation config: ``cfg.representation_config``, or the representation's defaults."""
    entry = representation_entry(cfg.representation)
    rep_cfg = cfg.representation_config if cfg.representation_config is not None else entry.config_type()
    if not isinstance(rep_cfg, entry.config_type):
        raise UserError(f"representation {cfg.representation!r} takes a {entry.config_type.__name__}, "
                        f"got a {type(rep_cfg).__name__}")
    return rep_cfg


def method_config_overrides(config_cls: type, raw: dict[str, str], other_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Parse method-level overrides against the method's config dataclass; unknown keys are an error that
    lists every known key (the method's and ``other_keys``, the run's and the representation's)."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(config_cls)
    typed, rest = typed_overrides(config_cls, raw)
    if rest:
        names = sorted({f.name for f in fields(config_cls)} | set(other_keys))
        unknown = ", ".join(repr(shorten(k, 40)) for k in sorted(rest)[:5]) + (", …" if len(rest) > 5 else "")
        raise UserError(f"unknown --set key(s) {unknown}; known: {', '.join(names)}")
    for key, value in typed.items():  # a method's numbers are scales, thresholds, rates and step counts
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise UserError(f"--set {key}={value:g}: must not be negative")
    return typed


#: RunConfig fields that are not --set keys: the method comes from --method, the representation's
#: config from its own keys.
NOT_SET_KEYS = ("method", "representation_config")


def run_keys(cfg: RunConfig) -> tuple[str, ...]:
    """The --set keys of the run and of its representation (for error messages)."""
    rep = representation_entry(cfg.representation).config_type
    return tuple(f.name for f in fields(RunConfig) if f.name not in NOT_SET_KEYS) + tuple(f.name for f in fields(rep))


def resolve_run_config(method: str, raw: dict[str, str], kind: MethodKind = "generate") -> tuple[RunConfig, dict[str, str]]:
    """The preset of ``method`` (a registered method of ``kind``) with run- and representation-level
    overrides applied; returns the method-level rest."""
    find_method(method, kind)  # UserError naming the kind's methods
    reserved = sorted(set(raw) & set(NOT_SET_KEYS))
    if reserved:
        raise UserError(f"--set {reserved[0]} is not a setting (choose the method with --method)")
    typed, rest = typed_overrides(RunConfig, raw)
    cfg = replace(RunConfig(), method=method, **typed)
    entry = representation_entry(cfg.representation)
    rep_typed, rest = typed_overrides(entry.config_type, rest)
    rep_cfg = entry.config_type(**rep_typed)
    rep_cfg.validate()
    cfg = replace(cfg, representation_config=rep_cfg)
    cfg.validate()
    return cfg, rest


__all__ = ["RunConfig", "method_config_overrides", "parse_overrides", "representation_config",
           "resolve_run_config", "run_keys"]
