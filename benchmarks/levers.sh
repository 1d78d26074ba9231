#!/usr/bin/env bash
# Issue 21's lever study on the toy-claims [dev] pairs (benchmarks/results/levers/dev_pairs.txt), SDS, seeds 0,1:
# each lever alone and together, one `bench run` per setting (resumable: rerun this script to continue).
# Reports: distill3d bench report benchmarks/results/levers/<name>
set -euo pipefail
cd "$(dirname "$0")/.."
P=benchmarks/results/levers/dev_pairs.txt
O=${LEVERS_OUT:-benchmarks/results/levers}
M=${LEVERS_METHODS:-sds}
run() { name=$1; shift; nice -n 5 distill3d bench run --suite "$P" --methods "$M" --seeds 0,1 --workers 1 --out "$O/$name" "$@"; }
run base
run even --set view_azimuths=even
run wide --set init_radius=0.9
run even_wide --set view_azimuths=even --set init_radius=0.9
