"""docs/architecture.md's layer table, enforced: every module imports only the layers it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "distill3d"

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "toyworld": {"core"},
    "priors": {"core", "toyworld"},
    "scene": {"core"},
    "export": {"core", "scene"},
    "guidance": {"core", "priors"},
    "evaluation": {"core", "toyworld", "scene"},
    "pipeline": {"core", "toyworld", "priors", "scene", "export", "guidance", "evaluation"},
    "bench": {"core", "toyworld", "priors", "scene", "export", "guidance", "evaluation", "pipeline"},
    "viewer": {"core", "scene", "export", "pipeline"},
    "cli": {"core", "toyworld", "priors", "scene", "export", "guidance", "evaluation", "pipeline", "bench", "viewer"},
}


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            rel = path.relative_to(SRC).parts
            base = rel[: len(rel) - node.level]
            names = [".".join(("distill3d", *base, *(node.module.split(".") if node.module else [])))]
        for n in names:
            parts = n.split(".")
            if parts[0] == "distill3d" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def test_layer_table_covers_every_package():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), f"packages missing from docs/architecture.md: {packages - set(ALLOWED)}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports(layer):
    bad = []
    for path in sorted((SRC / layer).rglob("*.py")):
        extra = _imported_layers(path) - ALLOWED[layer] - {layer}
        if extra:
            bad.append(f"{path.relative_to(SRC)} imports {sorted(extra)}")
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_checker_sees_violations(tmp_path):
    """The checker must catch a forbidden import, including a function-level one."""
    pkg = tmp_path / "distill3d" / "core"
    pkg.mkdir(parents=True)
    f = pkg / "bad.py"
    f.write_text("def f():\n    from distill3d.guidance import sds\n")
    assert _imported_layers(f) == {"guidance"}
