"""Tests run single-threaded: deterministic, and far faster than oversubscribed threads on a busy
2-core machine (measured: 36x on the rasterizer)."""

import torch

torch.set_num_threads(1)
