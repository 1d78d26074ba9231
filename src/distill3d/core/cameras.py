"""Camera conventions shared by every part of distill3d (toy world, renderers, priors, guidance).

World frame: right-handed, +z up, the scene centred at the origin inside the cube [-1, 1]^3.
A camera on the orbit is given by azimuth, elevation (degrees), distance and vertical field of view:

    position = distance * (cos(el) cos(az), cos(el) sin(az), sin(el))

Azimuth 0 puts the camera on the +x axis looking at the origin; this is the *front* (an asymmetric
object faces +x). Azimuth grows from +x toward +y. Elevation is the angle above the xy-plane.

Camera frame (OpenCV): x right, y down, z forward (toward the origin). Images are [3, H, W] with row 0
at the top; pixel (i, j) has its centre at (j + 0.5, i + 0.5). Images are square, so the horizontal and
vertical fields of view are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_DISTANCE = 3.2
DEFAULT_FOV_DEG = 40.0
MAX_ABS_ELEVATION = 89.0  # the look-at frame is undefined straight above or below the origin


@dataclass(frozen=True)
class Cameras:
    """A batch of orbit cameras looking at the origin. Every field is a float tensor of shape [B]."""

    azimuth: Tensor  # [B] degrees
    elevation: Tensor  # [B] degrees
    distance: Tensor  # [B]
    fov: Tensor  # [B] degrees, vertical = horizontal

    @staticmethod
    def from_angles(
        azimuth: float | list[float] | Tensor,
        elevation: float | list[float] | Tensor = 0.0,
        distance: float | Tensor = DEFAULT_DISTANCE,
        fov: float | Tensor = DEFAULT_FOV_DEG,
    ) -> Cameras:
        """Build a batch; scalars broadcast to the batch size set by ``azimuth``/``elevation``."""
        az = torch.as_tensor(azimuth, dtype=torch.float32).reshape(-1)
        el = torch.as_tensor(elevation, dtype=torch.float32).reshape(-1)
        b = max(az.numel(), el.numel())
        az, el = az.expand(b).clone(), el.expand(b).clone()
        if el.abs().max() > MAX_ABS_ELEVATION:
            raise ValueError(f"elevation must lie within ±{MAX_ABS_ELEVATION} degrees")
        dist = torch.as_tensor(distance, dtype=torch.float32).reshape(-1).expand(b).clone()
        fv = torch.as_tensor(fov, dtype=torch.float32).reshape(-1).expand(b).clone()
        return Cameras(az, el, dist, fv)

    def __len__(self) -> int:
        return int(self.azimuth.shape[0])

    def __getitem__(self, idx: int | slice | Tensor) -> Cameras:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Cameras(self.azimuth[idx], self.elevation[idx], self.distance[idx], self.fov[idx])

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(*(x.to(device) for x in (self.azimuth, self.elevation, self.distance, self.fov)))

    @property
    def device(self) -> torch.device:
        return self.azimuth.device

    def positions(self) -> Tensor:
        """Camera centres in world coordinates. [B, 3]"""
        az, el = torch.deg2rad(self.azimuth), torch.deg2rad(self.elevation)
        return self.distance[:, None] * torch.stack(
            [torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], dim=-1
        )

    def rotations(self) -> Tensor:
        """World-to-camera rotations; rows are the camera's right, down and forward axes. [B, 3, 3]"""
        c = self.positions()
        forward = -c / c.norm(dim=-1, keepdim=True)
        up = torch.tensor([0.0, 0.0, 1.0], device=c.device).expand_as(forward)
        right = torch.linalg.cross(forward, up)
        right = right / right.norm(dim=-1, keepdim=True)
        down = torch.linalg.cross(forward, right)
        return torch.stack([right, down, forward], dim=1)

    def world_to_camera(self) -> Tensor:
        """[B, 4, 4] matrices mapping homogeneous world points to the OpenCV camera frame."""
        rot = self.rotations()
        t = -(rot @ self.positions()[..., None])[..., 0]
        m = torch.zeros(len(self), 4, 4, device=rot.device)
        m[:, :3, :3] = rot
        m[:, :3, 3] = t
        m[:, 3, 3] = 1.0
        return m

    def focal(self, size: int) -> Tensor:
        """Focal length in pixels for a square image of ``size`` pixels. [B]"""
        return 0.5 * size / torch.tan(0.5 * torch.deg2rad(self.fov))

    def rays(self, size: int) -> tuple[Tensor, Tensor]:
        """Ray origins [B, 3] and unit directions [B, size, size, 3] through each pixel centre."""
        f = self.focal(size)  # [B]
        coords = torch.arange(size, device=self.device, dtype=torch.float32) + 0.5 - 0.5 * size
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # [H, W]
        cam_dirs = torch.stack(
            [xx.expand(len(self), -1, -1) / f[:, None, None], yy.expand(len(self), -1, -1) / f[:, None, None],
             torch.ones(len(self), size, size, device=self.device)], dim=-1)  # [B, H, W, 3]
        world_dirs = torch.einsum("bhwc,bcd->bhwd", cam_dirs, self.rotations())  # R^T d
        return self.positions(), world_dirs / world_dirs.norm(dim=-1, keepdim=True)

    def project(self, points: Tensor, size: int) -> tuple[Tensor, Tensor]:
        """Project world points [N, 3] into every camera: pixel coords [B, N, 2] (x, y) and depth [B, N]."""
        w2c = self.world_to_camera()
        p = torch.einsum("bij,nj->bni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
        depth = p[..., 2]
        f = self.focal(size)[:, None]
        uv = torch.stack([f * p[..., 0] / depth, f * p[..., 1] / depth], dim=-1) + 0.5 * size
        return uv, depth


def view_direction(azimuth_deg: float, elevation_deg: float, front_half_angle: float = 45.0,
                   back_half_angle: float = 45.0, overhead_elevation: float = 60.0) -> str:
    """Name the view as threestudio does: "overhead" above ``overhead_elevation``, else "front" within
    ``front_half_angle`` of azimuth 0, "back" within ``back_half_angle`` of 180, otherwise "side"."""
    if elevation_deg > overhead_elevation:
        return "overhead"
    a = (azimuth_deg + 180.0) % 360.0 - 180.0  # (-180, 180]
    if abs(a) < front_half_angle:
        return "front"
    if abs(a) > 180.0 - back_half_angle:
        return "back"
    return "side"


def view_prompt(prompt: str, azimuth_deg: float, elevation_deg: float) -> str:
    """The prompt with threestudio's view-dependent suffix: "<prompt>, front view" etc."""
    return f"{prompt}, {view_direction(azimuth_deg, elevation_deg)} view"


def orbit(n: int, elevation: float = 20.0, start: float = 0.0) -> Cameras:
    """``n`` cameras evenly spaced in azimuth from ``start`` at a fixed elevation (turntables, grids)."""
    return Cameras.from_angles([start + 360.0 * i / n for i in range(n)], elevation)


__all__ = [
    "DEFAULT_DISTANCE",
    "DEFAULT_FOV_DEG",
    "MAX_ABS_ELEVATION",
    "Cameras",
    "orbit",
    "view_direction",
    "view_prompt",
]
