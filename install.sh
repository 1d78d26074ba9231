#!/usr/bin/env bash
# Installs distill3d into the current Python environment.
# Keeps a torch that is already installed. Where there is none it installs torch 2.13.0: on a machine
# without an NVIDIA driver the CPU build from PyTorch's CPU index (a plain `pip install torch` would pull
# several GB of CUDA packages), falling back to the configured index when that one cannot be reached;
# with a driver, the default (CUDA) build. It says which torch it chose.
# Usage: bash install.sh [--dev] [--sd] [--report FILE]
#   --report FILE  install nothing: resolve the whole install as on a machine without torch and write
#                  pip's JSON report (pip install --dry-run --report) to FILE.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH="torch==2.13.0"
CPU_INDEX=${DISTILL3D_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
extras=()
report=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) extras+=(dev) ;;
    --sd) extras+=(sd) ;;
    --report) [ $# -ge 2 ] || { echo "install.sh: --report needs a FILE" >&2; exit 2; }; report=$2; shift ;;
    *) echo "install.sh: unknown option '$1' (known: --dev, --sd, --report FILE)" >&2; exit 2 ;;
  esac
  shift
done
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi

has_nvidia_driver() { command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia ]; }

cpu_index_reachable() {
  "$PY" - "$CPU_INDEX" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10).close()
EOF
}

# torch_args: what pip gets for torch ("" when an installed torch is kept)
torch_args=()
if [ -z "$report" ] && "$PY" -c "import torch" 2>/dev/null; then
  echo "keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif has_nvidia_driver; then
  echo "NVIDIA driver found: installing $TORCH (the CUDA build) from the configured index"
  torch_args=("$TORCH")
elif cpu_index_reachable; then
  echo "no NVIDIA driver: installing the CPU build of $TORCH from PyTorch's CPU index ($CPU_INDEX)"
  torch_args=("$TORCH" --extra-index-url "$CPU_INDEX")
else
  echo "no NVIDIA driver, and PyTorch's CPU index ($CPU_INDEX) cannot be reached:" \
       "installing $TORCH from the configured index (CPU-only if that index serves the CPU build, as a local wheel folder may)"
  torch_args=("$TORCH")
fi

if [ -n "$report" ]; then
  "$PY" -m pip install --quiet --dry-run --ignore-installed --report "$report" "${torch_args[@]}" "$spec"
  echo "wrote pip's report of the resolved install to $report (nothing installed)"
  exit 0
fi
if [ ${#torch_args[@]} -gt 0 ]; then
  # torch first, alone: then the index holding the CPU build is used for torch and its own dependencies only
  "$PY" -m pip install --quiet "${torch_args[@]}"
fi
"$PY" -m pip install --quiet -e "$spec"
echo "torch: $("$PY" -c 'import torch; print(torch.__version__, "(CUDA " + torch.version.cuda + ")" if torch.version.cuda else "(CPU only)")')"
echo "distill3d installed: run 'distill3d --help'"
