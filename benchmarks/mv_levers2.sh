#!/usr/bin/env bash
# Issue 21, after toy-mv was re-shipped with camera-modulated text tokens: mvdream-sds on it at its CFG 15 default,
# 200 steps (base) against 400, on the toy-claims [dev] pairs (never [test]), seeds 0,1, 4 views at 90° per step,
# elevation 0-30°. Resumable. Table: python3 benchmarks/levers_table.py --root benchmarks/results/mv_levers2 --base base
# Ran while CFG 15 was mvdream-sds' default: since CFG 5 is, a rerun refuses to reuse these runs (bench.grid.check_reusable);
# remake them with --set guidance_scale=15 added to each run (new run ids).
set -euo pipefail
cd "$(dirname "$0")/.."
P=benchmarks/results/levers/dev_pairs.txt
O=${LEVERS_OUT:-benchmarks/results/mv_levers2}
source benchmarks/mv_levers_lib.sh
run base &
run steps400 --set steps=400 &
wait
