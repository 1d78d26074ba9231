"""The web viewer: a viser server (the optional extra ``view``, imported lazily) drawing one asset, with
the camera where the toy world's conventions put the front view, and panels beside it."""

from __future__ import annotations

import contextlib
import io
import math
import socket
import time
from typing import Any

import numpy as np

from distill3d.core.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_DEG, Cameras
from distill3d.core.errors import UserError
from distill3d.viewer.content import Content, SplatArrays
from distill3d.viewer.panels import Panels

ASSET = "/asset"
START_AZIMUTH, START_ELEVATION = 0.0, 20.0  # the front (+x), a little above, as views.png's first view


def _viser() -> Any:
    try:
        import viser
    except ImportError:
        raise UserError("the viewer needs viser: pip install -e '.[view]' (or pip install viser)") from None
    return viser


def _check_host(host: str) -> None:
    """``UserError`` unless this machine can listen on ``host`` (viser would retry it forever)."""
    try:
        family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError as err:
        raise UserError(f"cannot listen on --host {host}: {err.strerror or err}") from None


class Viewer:
    """One viser server on ``host:port`` (port 0: any free port; a busy port: the next free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        viser = _viser()
        _check_host(host)
        with contextlib.redirect_stdout(io.StringIO()):  # viser prints its own banner; we print one URL
            self._server = viser.ViserServer(host=host, port=port, verbose=False)
        self.host = host
        self._server.scene.set_up_direction("+z")  # the world frame is +z up
        self._status = self._server.gui.add_markdown("")
        self._gui: list[Any] = []
        self._asset: Any = None  # the scene handle of what is drawn
        self._splats = False  # whether it is a Gaussian-splat handle
        self._camera_radius = 0.0

    @property
    def port(self) -> int:
        return self._server.get_port()

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def _place_camera(self, radius: float) -> None:
        """Orbit camera at the front (azimuth 0 on +x, 20° up) at the default distance and fov, pulled
        back for content larger than the unit cube (another producer's scene)."""
        self._camera_radius = radius
        cam = Cameras.from_angles(START_AZIMUTH, START_ELEVATION, DEFAULT_DISTANCE * max(1.0, radius))
        initial = self._server.initial_camera
        initial.position = tuple(float(v) for v in cam.positions()[0])
        initial.look_at = (0.0, 0.0, 0.0)
        initial.up = (0.0, 0.0, 1.0)
        initial.fov = math.radians(DEFAULT_FOV_DEG)

    def show(self, content: Content) -> None:
        """Draw ``content`` in place of what was drawn before."""
        scene, shapes = self._server.scene, content.shapes
        splats = isinstance(shapes, SplatArrays)
        # Updates go into the drawn node (one buffer message; viser's documented path for per-frame updates).
        with self._server.atomic():
            if self._asset is not None and splats == self._splats:
                if splats:
                    self._asset.set_gaussians(shapes.centers, shapes.covariances, shapes.rgbs, shapes.opacities)
                else:
                    self._asset.points, self._asset.colors = shapes.points, shapes.colors
            else:
                if self._asset is not None:
                    self._asset.remove()
                self._asset = (scene.add_gaussian_splats(ASSET, shapes.centers, shapes.covariances, shapes.rgbs,
                                                         shapes.opacities) if splats else
                               scene.add_point_cloud(ASSET, shapes.points, shapes.colors, point_size=0.02,
                                                     point_shape="circle"))
            self._splats = splats
        radius = content.radius()
        if self._camera_radius == 0.0 or radius > 1.5 * max(1.0, self._camera_radius):
            self._place_camera(radius)

    def status(self, text: str) -> None:
        """One line of markdown at the top of the panel (what is shown, the step)."""
        self._status.content = text

    def panels(self, panels: Panels) -> None:
        """Replace the run's panels (facts, judge table, images) beside the asset."""
        gui = self._server.gui
        for handle in self._gui:
            handle.remove()
        self._gui = [gui.add_markdown(f"### {panels.title}\n\n{panels.markdown}")]
        for label, image in panels.images:
            self._gui.append(gui.add_image(np.ascontiguousarray(image), label=label, format="png"))

    def wait(self) -> None:
        """Serve until Ctrl+C."""
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self._server.stop()


__all__ = ["Viewer"]
