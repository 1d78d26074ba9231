"""``generate --view``: the asset redrawn in the viewer at every preview step of the run."""

from __future__ import annotations

from pathlib import Path

from distill3d.export.load import load_representation
from distill3d.scene.representation import Representation
from distill3d.viewer.content import scene_content
from distill3d.viewer.panels import run_panels
from distill3d.viewer.server import Viewer

LIVE_EVERY = 10  # steps between live updates (the run's preview_every, unless --set)
LIVE_MESH_RESOLUTION = 32  # a radiance field's live point cloud: coarse, so previews stay cheap


class LiveView:
    """The ``on_preview`` callback of ``generate``: draw the asset as it is at ``step``."""

    def __init__(self, viewer: Viewer, steps: int) -> None:
        self.viewer = viewer
        self.steps = steps

    def __call__(self, step: int, rep: Representation) -> None:
        content = scene_content(rep, mesh_resolution=LIVE_MESH_RESOLUTION)
        self.viewer.show(content)
        self.viewer.status(f"step {step} of {self.steps}: {content.note}")

    def finish(self, run_dir: Path) -> None:
        """Show the finished run: its saved asset and its panels (views, judge scores, curves)."""
        content = scene_content(load_representation(run_dir))
        self.viewer.show(content)
        self.viewer.status(f"finished: {content.note}")
        self.viewer.panels(run_panels(run_dir))


__all__ = ["LiveView"]
