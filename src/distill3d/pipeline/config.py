"""Typed run settings and ``--set key=value`` overrides.

A run is described by a :class:`RunConfig` (the loop's own settings), the representation's run config
(``RunConfig.representation_config``: a dataclass next to the representation's class, e.g.
``GaussianRunConfig.num_gaussians``) and the guidance method's config (``RunConfig.method_config``: the
registry entry's preset, or a paper preset's from ``distill3d.pipeline.presets``). A ``--set`` key names a
RunConfig field, else a field of the chosen representation's config, else the method's (which rejects
unknown fields); the three sets of names are disjoint (a test checks it).

Method keys may be dotted, into nested configs: ``--set finetune.lr=1e-4``. A field whose type is a union of
frozen dataclasses (the variants, each with a ``name`` ClassVar) is chosen by that name and its fields set
with dots: ``--set form=code --set form.negative_prompt="blurry"``, ``--set timesteps=max-switch --set
timesteps.switch_step=300``; ``none`` turns an optional one off, ``on`` turns on a lone unnamed one
(``finetune=on``). Choosing a variant starts from its defaults, then applies the dotted keys given with it,
whatever their order on the command line. Every value is parsed with its field's type (``Literal`` fields
against their choices) and the resulting configs are checked (their ``validate()``, numbers of a method
non-negative) before a run writes anything. Field docs are the ``#`` comments next to the fields
(:func:`field_docs`), which ``distill3d methods METHOD`` prints.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import math
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from distill3d.core.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_DEG, MAX_ABS_ELEVATION
from distill3d.core.errors import UserError, shorten
from distill3d.guidance.registry import MethodKind, find_method
from distill3d.pipeline.presets import find_preset
from distill3d.scene.registry import representation_entry


@dataclass(frozen=True)
class RunConfig:
    """Settings of one generation run (field docs are the ``distill3d methods`` help)."""

    method: str = "sds"  # the registry name of the guidance method (--method)
    #: The method's config (its dataclass, e.g. AnchorDSConfig); None: the registry entry's preset. A paper
    #: preset (--preset) sets it; --set keys of the method apply on top of it.
    method_config: Any = None
    steps: int = 200  # optimisation steps at most (the early stop may end the run sooner)
    views_per_step: int = 4  # random views rendered and guided per step
    #: How a step's views are spread: "random" (each azimuth drawn alone) or "even" (one random azimuth per
    #: step, the views 360°/views_per_step apart: 4 views at 90° as MVDream trains and guides).
    view_azimuths: Literal["random", "even"] = "random"
    #: With view_azimuths=even: the step's views in consecutive groups of this many, each group from its own
    #: random azimuth, its views 360°/views_per_group apart (8 views in groups of 4: threestudio-mvdream's
    #: batch of 8); None: all the step's views one group.
    views_per_group: int | None = None
    representation: str = "gaussians"  # a name of distill3d.scene.registry.REPRESENTATIONS
    #: The representation's run config (init, learning rates, densification), e.g. GaussianRunConfig;
    #: None: its defaults. Its fields are --set keys.
    representation_config: Any = None
    elevation_min: float = 0.0  # lowest elevation of the random training cameras, degrees
    elevation_max: float = 40.0  # highest elevation of the random training cameras, degrees
    front_bias: float = 0.0  # share of views drawn near azimuth 0 (0: uniform azimuth)
    distance_min: float = DEFAULT_DISTANCE  # the embedded prior was trained at this distance and fov
    distance_max: float = DEFAULT_DISTANCE  # farthest training camera
    fov_min: float = DEFAULT_FOV_DEG  # narrowest field of view of the training cameras, degrees
    fov_max: float = DEFAULT_FOV_DEG  # widest field of view of the training cameras, degrees
    checkpoint_every: int = 100  # steps between checkpoints (0: only at the end)
    preview_every: int = 100  # steps between preview grids (0: none)
    seed: int = 0  # seed of every random draw of the run
    threads: int = 0  # torch CPU threads (0: leave as is)
    export_size: int = 128  # pixels of views.png tiles and turntable frames
    turntable_frames: int = 36  # frames of turntable.mp4
    mesh_resolution: int = 64  # marching-cubes grid side
    #: Early stop (``pipeline/loop.py``, ``Convergence``): every ``converge_every`` steps the asset is
    #: rendered from 4 fixed cameras; the run stops once the mean absolute change of those renders since
    #: the previous check stays below ``converge_tol`` for ``converge_patience`` checks in a row, and not
    #: before ``min_steps``. converge_every=0 runs every one of ``steps``.
    converge_every: int = 25
    converge_tol: float = 0.025  # mean |Δ| of the check renders in [0, 1] colour units (the jitter floor of a settled SDS run)
    converge_patience: int = 2  # consecutive calm checks needed to stop
    min_steps: int = 100  # never stop before this step

    def validate(self) -> None:
        """A ``UserError`` naming the first setting out of range (checked before a run writes anything)."""
        _in_range("steps", self.steps, 1, 1_000_000)
        _in_range("views_per_step", self.views_per_step, 1, 64)
        if self.views_per_group is not None:
            _in_range("views_per_group", self.views_per_group, 1, self.views_per_step)
        if self.views_per_group and self.views_per_step % self.views_per_group:
            raise UserError(f"views_per_step ({self.views_per_step}) must be a multiple of views_per_group "
                            f"({self.views_per_group})")
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
        _in_range("converge_every", self.converge_every, 0, 1_000_000)
        _in_range("converge_tol", self.converge_tol, 0.0, 1.0)
        _in_range("converge_patience", self.converge_patience, 1, 1000)
        _in_range("min_steps", self.min_steps, 0, 1_000_000)


def _in_range(key: str, value: float, lo: float, hi: float | None) -> None:
    if not lo <= value <= (math.inf if hi is None else hi):
        bounds = f"at least {lo}" if hi is None else f"within [{lo}, {hi}]"
        raise UserError(f"{key} must be {bounds}, got {value}")


# ----------------------------------------------------------------------------------------------------
# field docs: the comments next to a config's fields
# ----------------------------------------------------------------------------------------------------


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The doc of each field of the dataclass ``cls``: the ``#`` comment on the field's line, else the
    ``#:`` comment lines just above it ("" when it has neither)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
    lines = source.splitlines()
    docs: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, row = [], node.lineno - 1
        while row >= 1 and lines[row - 1].strip().startswith("#:"):
            above.insert(0, lines[row - 1].strip()[2:].strip())
            row -= 1
        trailing = next((comments[r] for r in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                         if r in comments and not lines[r - 1].strip().startswith("#")), "")
        docs[node.target.id] = trailing.lstrip("#").strip() or " ".join(above)
    return docs


# ----------------------------------------------------------------------------------------------------
# types of fields: scalars, and variants (dataclasses chosen by name)
# ----------------------------------------------------------------------------------------------------

_ON = "on"  # the name that turns on a lone dataclass without a ``name`` (``finetune=on``)


def _union_args(kind: Any) -> tuple[list[Any], bool]:
    """The members of a union type other than None, and whether None is one ([kind], False otherwise)."""
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(kind)
        return [a for a in args if a is not type(None)], type(None) in args
    return [kind], False


def variants(kind: Any) -> dict[str, type] | None:
    """The dataclasses a field of type ``kind`` may hold, by the name that chooses each on the command line
    (their ``name`` ClassVar; ``on`` for a lone one without); None when the field is not a dataclass."""
    members, _ = _union_args(kind)
    classes = [m for m in members if dataclasses.is_dataclass(m)]
    if not classes:
        return None
    if len(classes) == 1 and not hasattr(classes[0], "name"):
        return {_ON: classes[0]}
    return {c.name: c for c in classes}


def variant_name(value: Any) -> str:
    """The name that chooses ``value``'s variant (``on`` for a lone unnamed dataclass, ``none`` for None)."""
    return "none" if value is None else getattr(type(value), "name", _ON)


def type_text(kind: Any) -> str:
    """A field's type as ``distill3d methods`` prints it: ``float``, ``'sds' | 'uniform'``, ``paper | code``."""
    members, optional = _union_args(kind)
    named = variants(kind)
    if named is not None:
        parts = list(named)
    else:
        parts = []
        for m in members:
            if typing.get_origin(m) is Literal:
                parts += [repr(a) for a in typing.get_args(m)]
            else:
                parts.append(getattr(m, "__name__", str(m)))
    return " | ".join(parts + (["none"] if optional else []))


def _scalar(kind: Any) -> Any:
    members, _ = _union_args(kind)
    return members[0] if len(members) == 1 else kind


def _parse_value(text: str, kind: Any, key: str) -> Any:
    _, optional = _union_args(kind)
    if optional and text.lower() == "none":
        return None
    kind = _scalar(kind)
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if text not in choices:
            raise UserError(f"--set {shorten(key)}={shorten(text)!r}: choose one of "
                            f"{', '.join(map(str, choices))}{', none' if optional else ''}")
        return text
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


# ----------------------------------------------------------------------------------------------------
# dotted overrides of a method's (nested) config
# ----------------------------------------------------------------------------------------------------


#: Upper bounds of a method's numbers by the end of the field's name (the first that matches): far above
#: any published setting (CFG 100, λ_ip 1, lr 1e-3), low enough that a typo is caught before a run.
_UPPER_BOUNDS = (("guidance_scale", 1000.0), ("_scale", 10.0), ("lr", 1.0))


def _check_number(key: str, value: Any) -> None:
    """A method's numbers are scales, thresholds, rates, step counts and t fractions: never negative;
    guidance scales at most 1000, other scales (λ_ip, ControlNet) at most 10, learning rates at most 1."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if value < 0:
        raise UserError(f"--set {key}={value:g}: must not be negative")
    name = key.rsplit(".", 1)[-1]
    bound = next((b for suffix, b in _UPPER_BOUNDS if name.endswith(suffix)), None)
    if bound is not None and value > bound:
        raise UserError(f"--set {key}={value:g}: must be at most {bound:g}")


def _build_variant(cls: type, name: str, sub: dict[str, str], path: str) -> Any:
    """A fresh ``cls`` from its defaults with the dotted keys ``sub`` applied; its required fields (those
    without a default) must be among them."""
    hints = typing.get_type_hints(cls)
    required = {f.name for f in fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(sub))
    if missing:
        raise UserError(f"--set {path}={name} needs {', '.join(f'{path}.{m}=VALUE' for m in missing)}")
    first = {k: _parse_value(sub[k], hints[k], f"{path}.{k}") for k in required}
    for k, v in first.items():
        _check_number(f"{path}.{k}", v)
    return apply_overrides(cls(**first), {k: v for k, v in sub.items() if k not in required}, f"{path}.")


def _nested_hint(config: Any, key: str) -> str:
    """Where a name unknown at the top of ``config`` is a field of one of its variants, say so."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        for name, cls in (variants(hints[f.name]) or {}).items():
            if key in {g.name for g in fields(cls)}:
                current = variant_name(getattr(config, f.name))
                now = "" if current == name else f"; this config has {f.name}={current}, so add --set {f.name}={name}"
                return f" ({key} is {f.name}.{key}, a field of {f.name}={name}{now})"
    return ""


def apply_overrides(config: Any, raw: dict[str, str], prefix: str = "", other_keys: tuple[str, ...] = ()) -> Any:
    """``config`` (a frozen dataclass) with the ``--set`` pairs ``raw`` applied; keys are relative to it
    (``prefix`` is its path, for messages), dotted into nested dataclasses. Unknown keys are an error that
    lists every known key (the config's and ``other_keys``, the run's and the representation's)."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    groups: dict[str, tuple[str | None, dict[str, str]]] = {}
    unknown = []
    for key, text in raw.items():
        head, dot, rest = key.partition(".")
        if head not in names or (dot and not rest):
            unknown.append(key)
            continue
        own, sub = groups.get(head, (None, {}))
        groups[head] = (own, {**sub, rest: text}) if dot else (text, sub)
    if unknown:
        listed = ", ".join(repr(shorten(prefix + k, 40)) for k in sorted(unknown)[:5]) + (", …" if len(unknown) > 5 else "")
        hint = _nested_hint(config, unknown[0]) if len(unknown) == 1 else ""
        raise UserError(f"unknown --set key(s) {listed}{hint}; known: {', '.join(sorted({*names, *other_keys}))}")
    updates = {}
    for head, (own, sub) in groups.items():
        path, kind = prefix + head, hints[head]
        named = variants(kind)
        _, optional = _union_args(kind)
        if named is None:
            if sub:
                raise UserError(f"--set {path}.{next(iter(sub))}: {path} is a single value, it has no fields")
            value = _parse_value(own, kind, path)  # type: ignore[arg-type]
            _check_number(path, value)
        elif own is not None:
            if own.lower() == "none" and optional:
                if sub:
                    raise UserError(f"--set {path}=none turns it off: it takes no {path}.* keys")
                value = None
            elif own in named:
                value = _build_variant(named[own], own, sub, path)
            else:
                choices = [*named, *(["none"] if optional else [])]
                raise UserError(f"--set {shorten(path)}={shorten(own)!r}: choose one of {', '.join(choices)}")
        else:
            current = getattr(config, head)
            if current is None:
                raise UserError(f"--set {path}.{next(iter(sub))}: {path} is off (none) in this config; choose one "
                                f"first: --set {path}={' or '.join(named)}")
            value = apply_overrides(current, sub, path + ".")
        updates[head] = value
    return replace(config, **updates)


def check_config(config: Any, prefix: str = "") -> None:
    """Run ``validate()`` of ``config`` and of every dataclass nested in it (a ``UserError`` naming where)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_config(value, f"{prefix}{f.name}.")
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except UserError as err:
            raise UserError(f"{prefix.rstrip('.')}: {err}" if prefix else str(err)) from None


# ----------------------------------------------------------------------------------------------------
# run, representation and method configs of a run
# ----------------------------------------------------------------------------------------------------


def representation_config(cfg: RunConfig) -> Any:
    """The run's representation config: ``cfg.representation_config``, or the representation's defaults."""
    entry = representation_entry(cfg.representation)
    rep_cfg = cfg.representation_config if cfg.representation_config is not None else entry.config_type()
    if not isinstance(rep_cfg, entry.config_type):
        raise UserError(f"representation {cfg.representation!r} takes a {entry.config_type.__name__}, "
                        f"got a {type(rep_cfg).__name__}")
    return rep_cfg


def method_config(cfg: RunConfig, raw: dict[str, str], kind: MethodKind = "generate") -> Any:
    """The run's method config: ``cfg.method_config`` (or the registry entry's preset) with the method-level
    ``--set`` pairs ``raw`` applied, checked (``UserError`` for an unknown key or a value out of range)."""
    entry = find_method(cfg.method, kind)
    base = cfg.method_config if cfg.method_config is not None else entry.config()
    if not isinstance(base, entry.config_type):
        raise UserError(f"method {cfg.method!r} takes a {entry.config_type.__name__}, got a {type(base).__name__}")
    config = apply_overrides(base, raw, other_keys=run_keys(cfg))
    check_config(config)
    return config


#: RunConfig fields that are not --set keys: the method comes from --method (or --preset), the method's
#: and the representation's configs from their own keys.
NOT_SET_KEYS = ("method", "method_config", "representation_config")


def run_keys(cfg: RunConfig) -> tuple[str, ...]:
    """The --set keys of the run and of its representation (for error messages)."""
    rep = representation_entry(cfg.representation).config_type
    return tuple(f.name for f in fields(RunConfig) if f.name not in NOT_SET_KEYS) + tuple(f.name for f in fields(rep))


def resolve_run_config(method: str | None, raw: dict[str, str], kind: MethodKind = "generate",
                       preset: str | None = None) -> tuple[RunConfig, dict[str, str]]:
    """The settings of a run of ``method`` (a registered method of ``kind``), or of the paper preset
    ``preset`` (``distill3d.pipeline.presets``; its method, unless ``method`` names the same one), with the
    run- and representation-level overrides of ``raw`` applied; returns them and the method-level rest (which
    :func:`method_config` applies to ``RunConfig.method_config``)."""
    chosen = find_preset(preset) if preset is not None else None
    if chosen is not None:
        if chosen.kind != kind:
            raise UserError(f"preset {chosen.name!r} is for {chosen.kind} runs (distill3d {chosen.kind})")
        if method is not None and method != chosen.method:
            raise UserError(f"preset {chosen.name!r} runs the method {chosen.method!r}, not {method!r}; "
                            "drop --method or choose another preset")
        method = chosen.method
    if method is None:
        raise UserError("choose a method (--method) or a preset (--preset)")
    find_method(method, kind)  # UserError naming the kind's methods
    reserved = sorted(set(raw) & set(NOT_SET_KEYS))
    if reserved:
        raise UserError(f"--set {reserved[0]} is not a setting (choose the method with --method or --preset)")
    base = RunConfig(method=method, method_config=chosen.method_config if chosen else None)
    run_names = {f.name for f in fields(RunConfig)}
    preset_run = {k: v for k, v in (chosen.settings if chosen else {}).items() if k in run_names}
    typed, rest = typed_overrides(RunConfig, raw)
    cfg = replace(base, **{**preset_run, **typed})
    entry = representation_entry(cfg.representation)
    rep_names = {f.name for f in fields(entry.config_type)}
    preset_rep = {k: v for k, v in (chosen.settings if chosen else {}).items() if k in rep_names}
    rep_typed, rest = typed_overrides(entry.config_type, rest)
    rep_cfg = entry.config_type(**{**preset_rep, **rep_typed})
    rep_cfg.validate()
    cfg = replace(cfg, representation_config=rep_cfg)
    cfg.validate()
    return cfg, rest



__all__ = ["NOT_SET_KEYS", "RunConfig", "apply_overrides", "check_config", "field_docs", "method_config",
           "parse_overrides", "representation_config", "resolve_run_config", "run_keys",
           "type_text", "variant_name", "variants"]
