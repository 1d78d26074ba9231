"""Gaussians written as another producer writes them (the reference 3DGS code's PLY: normals, SH degree 3),
and headless Chromium screenshots of a page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

SH_C0 = 0.28209479177387814


def blob(center, radius: float, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(center, np.float32) + rng.uniform(-radius, radius, (n, 3)).astype(np.float32)


def write_graphdeco_ply(path: Path, centers: np.ndarray, rgbs: np.ndarray, scale: float = 0.05,
                        opacity: float = 0.95) -> Path:
    """A degree-3 3DGS PLY through plyfile, in the property order of graphdeco's ``save_ply``."""
    from plyfile import PlyData, PlyElement

    n = len(centers)
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    columns = np.concatenate([centers, np.zeros((n, 3)), (rgbs - 0.5) / SH_C0, np.zeros((n, 45)),
                              np.full((n, 1), np.log(opacity / (1 - opacity))), np.full((n, 3), np.log(scale)),
                              np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))], axis=1).astype(np.float32)
    records = np.empty(n, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        records[name] = columns[:, i]
    PlyData([PlyElement.describe(records, "vertex")]).write(str(path))
    return path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def screenshot(chromium: str, url: str, out: Path, width: int, height: int, budget_ms: int) -> np.ndarray:
    """Load ``url`` in headless Chromium (software WebGL), let ``budget_ms`` of page time pass (the page
    connects, receives the scene and draws it), and return the screenshot [H, W, 3] uint8."""
    from PIL import Image

    cmd = [chromium, "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
           "--hide-scrollbars", f"--user-data-dir={out.parent / 'chromium-profile'}",
           f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url]
    subprocess.run(cmd, capture_output=True, timeout=180, check=False)
    if not out.is_file():
        raise AssertionError(f"chromium wrote no screenshot: {' '.join(cmd)}")
    return np.asarray(Image.open(out).convert("RGB"))
