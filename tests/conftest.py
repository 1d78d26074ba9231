"""Tests run single-threaded with passive OpenMP waiting: deterministic, and far faster than
oversubscribed, spinning threads on a busy 2-core machine (measured: 36x on the rasterizer)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP: before importing torch

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test starts single-threaded, whatever an earlier test (or the code it ran) set."""
    torch.set_num_threads(1)
    yield
