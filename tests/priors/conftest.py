"""Fixtures shared by the Stable Diffusion prior tests (test_sd_*.py), on the tiny models of ``sd_tiny``.

Nothing here is autouse: a module opts in by naming the fixtures, so the other tests in this folder are
unaffected (every test runs single-threaded through ``tests/conftest.py``). diffusers is imported only inside a
fixture (the modules that use it skip without it).
"""

from __future__ import annotations

import pytest
from sd_tiny import IP_WEIGHT, tiny_dirs

from distill3d.priors.sd import StableDiffusionConfig, StableDiffusionPrior


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """The tiny SD folder, IP-Adapter and ControlNet (``sd_tiny.TinyDirs``)."""
    return tiny_dirs(tmp_path_factory)


@pytest.fixture(scope="module")
def prior(dirs):
    """The plain StableDiffusionPrior: no image adapter, no ControlNet."""
    return StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd)))


@pytest.fixture(scope="module")
def ip(dirs):
    """The StableDiffusionPrior with the tiny IP-Adapter-Plus."""
    return StableDiffusionPrior(StableDiffusionConfig(model=str(dirs.sd), ip_adapter=str(dirs.ip_adapter),
                                                      ip_adapter_weight=IP_WEIGHT))


@pytest.fixture(scope="module")
def pipe(dirs):
    """diffusers' own StableDiffusionPipeline on the same tiny folder (the reference)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(dirs.sd, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
