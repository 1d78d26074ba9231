"""Random orbit cameras for score distillation (DreamFusion-style view sampling)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill3d.core.cameras import MAX_ABS_ELEVATION, Cameras
from distill3d.core.errors import UserError


@dataclass(frozen=True)
class CameraSampleConfig:
    """Ranges are inclusive-exclusive uniform draws; angles in degrees."""

    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    elevation_range: tuple[float, float] = (-10.0, 60.0)
    distance_range: tuple[float, float] = (2.8, 3.6)
    fov_range: tuple[float, float] = (40.0, 50.0)
    # Share of cameras drawn from the front sector |azimuth| < front_half_angle instead of azimuth_range
    # (real photo collections see objects mostly from the front; 0 = no bias).
    front_bias: float = 0.0
    front_half_angle: float = 45.0
    # One random azimuth per draw, the n cameras spaced 360°/n apart from it (MVDream's views at 90° for
    # n = 4); elevation, distance and fov are still drawn per camera. front_bias then moves the first.
    even_azimuths: bool = False
    # With even_azimuths: the n cameras in consecutive groups of this many, each group from its own random
    # azimuth and its cameras 360°/group apart (threestudio-mvdream's batch of 8 = two groups of 4); 0: one group.
    azimuth_group: int = 0

    def validate(self) -> None:
        for name in ("azimuth_range", "elevation_range", "distance_range", "fov_range"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise UserError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
        if max(abs(e) for e in self.elevation_range) > MAX_ABS_ELEVATION:
            raise UserError(f"elevation_range must lie within ±{MAX_ABS_ELEVATION} degrees")
        if self.distance_range[0] <= 1.8:
            raise UserError("distance_range must keep cameras outside the scene cube (> 1.8)")
        if not (0.0 < self.fov_range[0] and self.fov_range[1] < 180.0):
            raise UserError("fov_range must lie within (0, 180) degrees")
        if not 0.0 <= self.front_bias <= 1.0:
            raise UserError(f"front_bias must lie in [0, 1], got {self.front_bias}")
        if self.azimuth_group < 0:
            raise UserError(f"azimuth_group must be at least 0, got {self.azimuth_group}")


def sample_cameras(n: int, config: CameraSampleConfig = CameraSampleConfig(),
                   generator: torch.Generator | None = None) -> Cameras:
    """``n`` random cameras looking at the origin, drawn with ``generator`` (CPU)."""
    config.validate()

    def uniform(lo_hi: tuple[float, float]) -> torch.Tensor:
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    azimuth = uniform(config.azimuth_range)
    front = torch.rand(n, generator=generator) < config.front_bias
    front_az = uniform((-config.front_half_angle, config.front_half_angle))
    azimuth = torch.where(front, front_az, azimuth)
    if config.even_azimuths:  # each group's first camera's azimuth, then 360°/group steps
        g = config.azimuth_group or n
        if n % g:
            raise UserError(f"{n} views do not split into groups of {g}: make views_per_step a multiple of "
                            f"views_per_group")
        start = azimuth[::g].repeat_interleave(g)  # [n] the first azimuth of each camera's group
        azimuth = torch.remainder(start + 360.0 / g * torch.arange(g).repeat(n // g) + 180.0, 360.0) - 180.0
    return Cameras(azimuth=azimuth, elevation=uniform(config.elevation_range),
                   distance=uniform(config.distance_range), fov=uniform(config.fov_range))
