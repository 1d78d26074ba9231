"""Saving nested training state (model, optimiser, RNG, counters) without pickles.

A state is nested dicts / lists of tensors and JSON scalars, like ``optimizer.state_dict()``. Tensors go
into one safetensors file under their path ("opt/state/3/exp_avg"); everything else goes into a JSON
skeleton stored in the safetensors metadata, with each tensor replaced by a ``{"__tensor__": path}``
marker. Loading rebuilds the same structure. Writes are atomic.
"""

from __future__ import annotations

import json
import os
from typing import Any

from torch import Tensor

from distill3d.core.io import atomic_path

_MARK = "__tensor__"


def _split(obj: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {_MARK: path}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"state keys must be str or int at {path!r}")
        # int keys (optimizer state) survive JSON as strings: remember which were ints
        return {"__dict__": [[k, _split(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a checkpoint")


def _join(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict) and _MARK in obj:
        return tensors[obj[_MARK]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _join(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    skeleton = _split(state, "", tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"skeleton": json.dumps(skeleton)})


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        skeleton = json.loads(f.metadata()["skeleton"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    return _join(skeleton, tensors)
