"""``distill3d view``: a saved asset (a run directory or a representation's file, e.g. another producer's
3DGS .ply) in the viewer, with the run's panels beside it."""

from __future__ import annotations

from pathlib import Path

from distill3d.export.load import load_representation
from distill3d.viewer.content import scene_content
from distill3d.viewer.panels import run_panels
from distill3d.viewer.server import Viewer


def open_asset(path: Path, host: str = "127.0.0.1", port: int = 8080) -> Viewer:
    """Load ``path`` (``UserError`` if it holds no asset), start a viewer and show it; the server runs in
    a background thread until ``Viewer.stop``."""
    rep = load_representation(path)
    content = scene_content(rep)
    viewer = Viewer(host, port)
    viewer.show(content)
    viewer.status(content.note)
    viewer.panels(run_panels(path))
    return viewer


__all__ = ["open_asset"]
