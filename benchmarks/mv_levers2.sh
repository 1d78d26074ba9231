#!/usr/bin/env bash
# Issue 21, after toy-mv was re-shipped with camera-modulated text tokens: mvdream-sds on it at its CFG 15 default,
# 200 steps (base) against 400, on the toy-claims [dev] pairs (never [test]), seeds 0,1, 4 views at 90° per step,
# elevation 0-30°. Resumable. Table: python3 benchmarks/levers_table.py --root benchmarks/results/mv_levers2 --base base
set -euo pipefail
cd "$(dirname "$0")/.."
P=benchmarks/results/levers/dev_pairs.txt
O=${LEVERS_OUT:-benchmarks/results/mv_levers2}
S=(--set views_per_step=4 --set view_azimuths=even --set elevation_max=30)
run() { name=$1; shift; distill3d bench run --suite "$P" --methods mvdream-sds --priors toy-mv --seeds 0,1 \
  --workers 1 --out "$O/$name" "${S[@]}" "$@"; }
run base &
run steps400 --set steps=400 &
wait
