"""``bench run`` on more than one process: two spawned local workers, and a local Ray instance (skipped, with
the reason printed, when Ray is not installed). Spawned processes cannot see this process's stand-ins, so
these runs use the shipped toy prior and judge, at 2 steps of 1 view on 150 Gaussians."""

from __future__ import annotations

import csv
import importlib.util
import time

import pytest

from distill3d.bench.grid import COLUMNS, RESULT_FILE
from distill3d.cli.main import main

TINY = ["--steps", "2", "--set", "views_per_step=1", "--set", "num_gaussians=150", "--set", "export_size=16",
        "--set", "turntable_frames=2", "--set", "mesh_resolution=12"]


@pytest.fixture
def two_prompts(tmp_path):
    suite = tmp_path / "two.txt"
    suite.write_text("a red cube\na blue face\n")
    return str(suite)


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _check(rows):
    assert len(rows) == 2 and {r["prompt"] for r in rows} == {"a red cube", "a blue face"}
    assert len({r["run_id"] for r in rows}) == 2 and all(r["method"] == "sds" and r["steps"] == "2" for r in rows)
    assert all(r["match"] != "" and r["iou"] != "" for r in rows)
    assert len({r["worker"] for r in rows}) >= 1 and all(":" in r["worker"] for r in rows)


def test_two_local_workers_merge_resume_and_deduplicate(tmp_path, two_prompts, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "run", "--suite", two_prompts, "--methods", "sds", "--seeds", "0", "--workers", "2",
            *TINY, "--out", str(out)]
    assert main(argv) == 0
    rows = _rows(out)
    _check(rows)
    assert list(rows[0]) == list(COLUMNS)
    results = sorted(out.glob(f"runs/*/*/{RESULT_FILE}"))
    stamps = [p.stat().st_mtime_ns for p in results]
    capsys.readouterr()
    time.sleep(0.01)
    assert main(argv) == 0  # resumed: every run finished, none redone
    assert "2 already finished, 0 to run" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in results] == stamps and _rows(out) == rows


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'distill3d[ray]'): the Ray engine is not tested")
def test_local_ray_instance_runs_the_grid(tmp_path, two_prompts):
    out = tmp_path / "bench"
    assert main(["bench", "run", "--suite", two_prompts, "--methods", "sds", "--seeds", "0", "--ray", "auto",
                 "--workers", "2", *TINY, "--out", str(out)]) == 0
    _check(_rows(out))
