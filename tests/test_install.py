"""The install: CPU-only torch on a machine without CUDA (``install.sh --report`` resolves the whole install
with ``pip install --dry-run --report`` and installs nothing), and the README's dev install running the
README's test command: tests needing an optional extra (``sd``, ``view``) skip, with a reason, where it is
absent."""

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


#: optional extra -> the modules it brings, and the words of the skip reason its tests give without it
EXTRAS = {"sd": (("diffusers", "transformers"), "'sd' extra"), "view": (("viser",), "pip install -e '.[view]'")}


def _tests_naming(modules: tuple[str, ...]) -> list[str]:
    """Test files that name one of ``modules`` (for the sd extra also its tiny test models and the
    ``--prior sd`` option), this file excepted."""
    words = "|".join(modules) + ("|sd_tiny" if "diffusers" in modules else "")
    pattern = re.compile(rf"\b({words})\b" + (r"|\"--prior\", \"sd\"" if "diffusers" in modules else ""))
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if p.name != Path(__file__).name and pattern.search(p.read_text()))


def test_without_the_optional_extras_their_tests_skip_with_a_reason():
    """As after `bash install.sh --dev`: the modules of the sd and view extras hidden, the tests naming them
    pass or skip, saying which extra they need."""
    files = {extra: _tests_naming(modules) for extra, (modules, _) in EXTRAS.items()}
    assert "tests/priors/test_sd_prior.py" in files["sd"] and any("clip" in f for f in files["sd"]), files
    assert "tests/viewer/test_viewer.py" in files["view"], files
    hidden = {m: None for modules, _ in EXTRAS.values() for m in modules}
    run = sorted({f for fs in files.values() for f in fs})
    hide = (f"import sys; sys.modules.update({hidden!r}); import pytest; "
            f"sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', *{run!r}]))")
    done = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    for extra, (_, reason) in EXTRAS.items():
        assert any(reason in line for line in skipped), f"no test skipped for the {extra} extra: {skipped}"
