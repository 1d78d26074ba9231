"""Render benchmark: forward + backward times of the pure-PyTorch Gaussian rasterizer, its dense reference,
the voxel radiance field, gsplat (when CUDA is present), and peak memory for a large scene.

    python benchmarks/bench_render.py [--out benchmarks/results/render.json] [--threads 2] [--repeats 5] [--fast-only]

Times are medians over ``--repeats`` runs after one warm-up, as wall-clock seconds and as process CPU
seconds (on a shared, oversubscribed machine the CPU time is the steadier measure of the work). The
dense reference at 20k Gaussians / 128 px would need ~1.3 GB per [pixels x Gaussians] tensor, so above
25 M pixel-Gaussian pairs it is run on a subsample of the Gaussians and scaled linearly (its cost is linear in N at fixed pixels); the JSON
says so under "extrapolated_from". OMP_WAIT_POLICY defaults to PASSIVE here (recorded in the JSON): with
two threads on a loaded machine, spinning OpenMP barriers made small renders up to 60x slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from distill3d.core.cameras import Cameras
from distill3d.core.io import write_json_atomic
from distill3d.scene import GaussianModel, RadianceFieldConfig, VoxelRadianceField, render
from distill3d.scene.gsplat_backend import gsplat_available
from distill3d.scene.reference import render_gaussians_reference
from distill3d.scene.splat import render_gaussians_torch

CAMERA = Cameras.from_angles([30.0], [20.0])
WHITE = torch.ones(3)


def scene(n: int) -> GaussianModel:
    """``n`` Gaussians (scale 0.04, opacity 0.3) uniformly in a ball of radius 0.8, seeded."""
    return GaussianModel.random_in_sphere(n, generator=torch.Generator().manual_seed(0))


def timed(fn, repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of ``fn()`` (forward + backward) after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "runs": repeats}


def fwd_bwd(render_fn, model, size: int):
    def run():
        model.zero_grad()
        out = render_fn(model, CAMERA, size, WHITE)
        out.image.sum().backward()
    return run


def gaussian_case(n: int, size: int, repeats: int, reference_max_elements: int) -> dict:
    fast = timed(fwd_bwd(render_gaussians_torch, scene(n), size), repeats)
    ref_n = min(n, reference_max_elements // (size * size))
    ref = timed(fwd_bwd(render_gaussians_reference, scene(ref_n), size), max(1, repeats // 2))
    result = {"gaussians": n, "size": size, "fast": fast}
    if ref_n < n:
        factor = n / ref_n
        ref = {**ref, "wall_s": ref["wall_s"] * factor, "cpu_s": ref["cpu_s"] * factor,
               "extrapolated_from": {"gaussians": ref_n, "linear_factor": factor}}
    result["reference"] = ref
    result["ratio_wall"] = ref["wall_s"] / fast["wall_s"]
    result["ratio_cpu"] = ref["cpu_s"] / fast["cpu_s"]
    return result


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(n: int, size: int) -> None:
    """Runs in a fresh process: peak RSS increase of one forward + backward, printed as JSON.

    The peak is VmHWM, reset to the current RSS just before rendering by writing 5 to
    /proc/self/clear_refs (ru_maxrss would carry the parent's peak across fork and exec)."""
    model = scene(n)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mb("VmRSS")
    t = time.perf_counter()
    out = render_gaussians_torch(model, CAMERA, size, WHITE)
    out.image.sum().backward()
    seconds = time.perf_counter() - t
    peak = _status_mb("VmHWM")
    print(json.dumps({"gaussians": n, "size": size, "peak_rss_delta_mb": peak - before,
                      "rss_before_mb": before, "peak_rss_mb": peak, "wall_s": seconds}))


def memory_case(n: int, size: int, threads: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--memory-child", str(n), str(size), "--threads",
                           str(threads)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def field_case(config: RadianceFieldConfig, size: int, repeats: int) -> dict:
    field = VoxelRadianceField(config)

    def run():
        field.zero_grad()
        render(field, CAMERA, size).image.sum().backward()
    return {"size": size, "samples_per_ray": config.samples_per_ray, "resolution": config.resolution,
            "mlp_hidden": config.mlp_hidden, **timed(run, repeats)}


def gsplat_case(n: int, size: int, repeats: int) -> dict:
    if not gsplat_available():
        return {"skipped": "needs CUDA and gsplat"}
    model = scene(n).cuda()

    def run():
        model.zero_grad()
        render(model, CAMERA, size, backend="gsplat").image.sum().backward()
        torch.cuda.synchronize()
    return {"gaussians": n, "size": size, **timed(run, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/render.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-max-elements", type=int, default=25_000_000,
                        help="largest pixels x Gaussians product the dense reference runs directly")
    parser.add_argument("--fast-only", action="store_true",
                        help="only the fast rasterizer's forward + backward (20k at 128 px, 5k at 64 px): seconds")
    parser.add_argument("--memory-child", nargs=2, type=int, metavar=("N", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    load_before = os.getloadavg()
    if args.fast_only:
        results = {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                   "gaussians_20k_128": timed(fwd_bwd(render_gaussians_torch, scene(20000), 128), args.repeats),
                   "gaussians_5k_64": timed(fwd_bwd(render_gaussians_torch, scene(5000), 64), args.repeats),
                   "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]}}
        write_json_atomic(Path(args.out), results)
        print(json.dumps(results, indent=2))
        return
    results = {
        "torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "memory_100k_256": memory_case(100_000, 256, args.threads),
        "gaussians_5k_64": gaussian_case(5000, 64, args.repeats, args.reference_max_elements),
        "gaussians_20k_128": gaussian_case(20000, 128, args.repeats, args.reference_max_elements),
        "radiance_field_64": field_case(RadianceFieldConfig(), 64, args.repeats),
        "radiance_field_mlp_64": field_case(RadianceFieldConfig(color_features=8, mlp_hidden=32), 64,
                                            args.repeats),
        "gsplat_20k_128": gsplat_case(20000, 128, args.repeats),
    }
    results["load_average_1min"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    write_json_atomic(Path(args.out), results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
