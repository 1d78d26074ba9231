"""Where benchmark runs execute: in this process, in local worker processes, or as Ray tasks.

Each engine calls ``grid.execute(spec, out_dir, clip)`` once per run and hands every result back to the
driver (``collect(spec, row)``), which writes the result files and ``results.csv``: workers write only their
own run directories. A worker process keeps the priors it loaded (``grid.cached_prior``), so a prior is
loaded once per worker, not once per run.

- ``serial``: one run after another here.
- ``local(n)``: ``n`` processes (``concurrent.futures`` with the spawn start method, so no torch state is
  forked), each with ``threads`` torch threads (default 1).
- ``ray_engine(address)``: one Ray task per run asking ``num_cpus`` CPUs and ``num_gpus`` GPUs (a fraction
  lets runs share a GPU); ``"auto"`` starts a local Ray instance with ``workers`` x ``num_cpus`` CPUs,
  anything else joins that cluster (``ray.init(address=...)``). Ray reuses its worker processes, so the
  cached prior survives between tasks. Ray is the optional extra ``distill3d[ray]``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

from distill3d.bench.grid import Engine, RunSpec, execute
from distill3d.core.errors import UserError

RAY_HINT = "pip install 'distill3d[ray]'"
Collect = Callable[[RunSpec, dict], None]


def _set_threads(threads: int) -> None:
    import torch

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(threads)


def serial(clip: str | None = None, threads: int = 0) -> Engine:
    def run(specs: list[RunSpec], out_dir: str, collect: Collect) -> None:
        if threads:
            _set_threads(threads)
        for spec in specs:
            collect(spec, execute(spec, out_dir, clip))

    return run


def _worker_init(threads: int) -> None:
    _set_threads(threads)


def local(workers: int, clip: str | None = None, threads: int = 1) -> Engine:
    """``workers`` spawned processes, at most one run each at a time."""

    def run(specs: list[RunSpec], out_dir: str, collect: Collect) -> None:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(threads,)) as pool:
            pending = {pool.submit(execute, s, out_dir, clip): s for s in specs}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    collect(pending.pop(future), future.result())

    return run


@dataclass(frozen=True)
class RayResources:
    """What each Ray task asks for."""

    num_cpus: float = 1.0  # CPUs per run (also its torch threads, rounded down, at least 1)
    num_gpus: float = 0.0  # GPUs per run; a fraction (0.5) lets two runs share one GPU


def default_gpus() -> float:
    """One GPU per run when this machine has CUDA, else none."""
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def _ray_execute(spec_dict: dict, out_dir: str, clip: str | None, threads: int) -> dict:
    _set_threads(threads)
    return execute(RunSpec.from_dict(spec_dict), out_dir, clip)


def ray_engine(address: str, workers: int, resources: RayResources, clip: str | None = None) -> Engine:
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed: {RAY_HINT}", exit_code=1) from None

    def run(specs: list[RunSpec], out_dir: str, collect: Collect) -> None:
        started = not ray.is_initialized()
        if started:
            env = {"env_vars": {"OMP_NUM_THREADS": str(max(1, int(resources.num_cpus))),
                                "OMP_WAIT_POLICY": "PASSIVE"}}
            if address == "auto":  # a local instance sized so that `workers` runs execute at once
                ray.init(num_cpus=workers * resources.num_cpus,
                         num_gpus=workers * resources.num_gpus if resources.num_gpus else None,
                         include_dashboard=False, runtime_env=env, log_to_driver=False)
            else:
                ray.init(address=address, runtime_env=env, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)(_ray_execute)
            threads = max(1, int(resources.num_cpus))
            pending = {task.remote(s.to_dict(), out_dir, clip, threads): s for s in specs}
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    collect(pending.pop(ref), ray.get(ref))
        finally:
            if started:
                ray.shutdown()

    return run


def choose_engine(workers: int, ray: str | None, clip: str | None = None, threads: int = 1,
                  gpus_per_run: float | None = None) -> Engine:
    """The engine the command line asks for: Ray when ``ray`` is given, else ``workers`` local processes
    (one: this process)."""
    if ray is not None:
        gpus = default_gpus() if gpus_per_run is None else gpus_per_run
        return ray_engine(ray, workers, RayResources(float(threads), gpus), clip)
    if workers > 1:
        return local(workers, clip, threads)
    return serial(clip, threads)


__all__ = ["RayResources", "choose_engine", "local", "ray_engine", "serial"]
