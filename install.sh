#!/usr/bin/env bash
# Installs distill3d into the current Python environment.
# Keeps a torch that is already installed; where there is none, installs the CPU build of torch 2.13.0
# (a bare `pip install torch` would pull several GB of CUDA packages onto a machine without a GPU).
# Usage: bash install.sh [--dev] [--sd]
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
extras=()
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(dev) ;;
    --sd) extras+=(sd) ;;
    *) echo "install.sh: unknown option '$arg' (known: --dev, --sd)" >&2; exit 2 ;;
  esac
done
if "$PY" -c "import torch" 2>/dev/null; then
  echo "keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  echo "no torch found: installing the CPU build torch==2.13.0"
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
"$PY" -m pip install --quiet -e "$spec"
echo "distill3d installed: run 'distill3d --help'"
