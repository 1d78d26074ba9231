"""The install: CPU-only torch on a machine without CUDA (``install.sh --report`` resolves the whole install
with ``pip install --dry-run --report`` and installs nothing), and the README's dev install running the
README's test command: tests needing the optional ``sd`` extra skip, with a reason, where it is absent."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: pip's words when it cannot reach an index (offline machine): the check cannot run, it is skipped
OFFLINE = ("Could not find a version", "No matching distribution", "NewConnectionError", "Max retries",
           "Network is unreachable", "Temporary failure in name resolution", "Failed to establish")


def _has_nvidia_driver() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia").exists()


def test_install_sh_rejects_unknown_options():
    done = subprocess.run(["bash", str(ROOT / "install.sh"), "--gpu"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 2 and "unknown option '--gpu'" in done.stderr


@pytest.mark.skipif(_has_nvidia_driver(), reason="an NVIDIA driver is present: the CUDA build is the right one")
def test_install_resolves_no_cuda_packages_without_an_nvidia_driver(tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run(["bash", str(ROOT / "install.sh"), "--dev", "--sd", "--report", str(report)],
                          capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        if any(word in done.stderr for word in OFFLINE):
            pytest.skip(f"pip cannot resolve the install here (offline?): {done.stderr.strip().splitlines()[-1]}")
        pytest.fail(done.stdout + done.stderr)
    assert "no NVIDIA driver" in done.stdout and "nothing installed" in done.stdout
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    print(f"install.sh --dev --sd resolves {len(names)} packages")  # shown with -s / -rP
    cuda = [n for n in names if n.startswith("nvidia-") or n == "triton"]
    assert not cuda, f"CUDA packages in a CPU install: {cuda}"
    torch = next(i for i in json.loads(report.read_text())["install"] if i["metadata"]["name"] == "torch")
    assert torch["metadata"]["version"].startswith("2.13.0")
    assert {"distill3d", "pytest", "hypothesis", "diffusers", "transformers"} <= set(names)


def _tests_needing_the_sd_extra() -> list[str]:
    """Test files that name diffusers, transformers or the Stable Diffusion prior (this file excepted)."""
    pattern = re.compile(r"\b(diffusers|transformers)\b|\"--prior\", \"sd\"")
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if p.name != Path(__file__).name and pattern.search(p.read_text()))


def test_without_the_sd_extra_its_tests_skip_with_a_reason():
    """As after `bash install.sh --dev`: diffusers and transformers hidden, the tests naming them pass or skip."""
    files = _tests_needing_the_sd_extra()
    assert "tests/pipeline/test_eval_clip.py" in files and "tests/priors/test_sd_prior.py" in files
    hide = ("import sys; sys.modules.update(diffusers=None, transformers=None); import pytest; "
            f"sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', *{files!r}]))")
    done = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "SKIPPED" in done.stdout and "'sd' extra" in done.stdout
