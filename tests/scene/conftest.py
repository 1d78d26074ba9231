"""Scene tests run single-threaded: their tensors are small, and on a shared 2-core machine OpenMP
barriers between two threads cost more than the work (measured: 1.5 s vs 25 ms for one small render)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
