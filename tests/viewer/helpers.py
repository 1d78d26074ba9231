"""Gaussians written as another producer writes them (the reference 3DGS code's PLY: normals, SH degree 3),
and headless Chromium screenshots of a page."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
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


def watch_page(chromium: str, url: str, out: Path, width: int, height: int,
               drawn: Callable[[np.ndarray], bool], deadline_s: float = 150.0) -> np.ndarray:
    """Open ``url`` in headless Chromium (software WebGL) and take screenshots through the DevTools protocol
    until ``drawn(image)`` holds or ``deadline_s`` of real time has passed; return the last one [H, W, 3] and
    save it to ``out``. The wait ends when the page has drawn, not after a fixed budget: the scene comes over a
    websocket in real time, which ``--virtual-time-budget`` does not wait for on a busy machine."""
    from PIL import Image
    from websockets.sync.client import connect

    cmd = [chromium, "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
           "--hide-scrollbars", f"--user-data-dir={out.parent / 'chromium-profile'}", "--remote-debugging-port=0",
           f"--window-size={width},{height}", url]
    log = out.parent / "chromium.log"  # a file, not a pipe: a full pipe would stall the browser
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        port = None
        start = time.monotonic()
        while port is None and proc.poll() is None and time.monotonic() - start < 60:
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", log.read_text(errors="replace"))
            port = int(found.group(1)) if found else None
            time.sleep(0 if port else 0.2)
        if port is None:
            raise AssertionError(f"chromium opened no DevTools port: {' '.join(cmd)}")
        page = None
        while page is None and time.monotonic() - start < 60:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                page = next((t for t in json.load(response) if t.get("type") == "page"), None)
            time.sleep(0.2 if page is None else 0)
        if page is None:
            raise AssertionError(f"chromium shows no page for {url}")
        image = np.zeros((height, width, 3), np.uint8)
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            for message_id in range(1, 10_000):
                ws.send(json.dumps({"id": message_id, "method": "Page.captureScreenshot", "params": {"format": "png"}}))
                reply = json.loads(ws.recv(timeout=60))
                while reply.get("id") != message_id:  # skip events
                    reply = json.loads(ws.recv(timeout=60))
                png = base64.b64decode(reply["result"]["data"])
                image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                if drawn(image) or time.monotonic() - start > deadline_s:
                    out.write_bytes(png)
                    return image
                time.sleep(1.0)
        return image
    finally:
        proc.kill()
        proc.wait(timeout=30)
