"""Text of ``distill3d methods METHOD`` and ``distill3d presets``: config fields with their types, values and
docs (the ``#`` comments next to the fields), read from the configs themselves."""

from __future__ import annotations

from typing import Any


def field_lines(config: Any, prefix: str = "", indent: str = "  ") -> list[str]:
    """One line per field of the dataclass ``config``: ``path: type = value  doc``; a field holding a
    dataclass variant is followed by the fields of its current variant and then by each other variant's
    fields at their defaults (what choosing it with ``--set path=NAME`` starts from)."""
    import dataclasses
    import typing

    from distill3d.pipeline.config import field_docs, type_text, variants
    from distill3d.pipeline.presets import value_text

    hints = typing.get_type_hints(type(config))
    docs = field_docs(type(config))
    lines = []
    for f in dataclasses.fields(config):
        path, value = prefix + f.name, getattr(config, f.name)
        doc = docs.get(f.name, "")
        lines.append(f"{indent}{path}: {type_text(hints[f.name])} = {value_text(value)}" + (f"  — {doc}" if doc else ""))
        named = variants(hints[f.name]) or {}
        for name, cls in named.items():
            current = value is not None and type(value) is cls
            fields_of = dataclasses.fields(cls)
            if not fields_of:
                continue
            if current:
                lines += field_lines(value, path + ".", indent + "    ")
            else:
                required = [g for g in fields_of if g.default is dataclasses.MISSING
                            and g.default_factory is dataclasses.MISSING]
                if required:  # no defaults to show: name what choosing it needs
                    lines.append(f"{indent}    with {path}={name}: set " + ", ".join(f"{path}.{g.name}" for g in required))
                    continue
                lines.append(f"{indent}    with {path}={name}:")
                lines += field_lines(cls(), path + ".", indent + "      ")
    return lines


__all__ = ["field_lines"]
