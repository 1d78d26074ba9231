#!/usr/bin/env bash
# Issue 21's levers for mvdream-sds on the multi-view prior, on the toy-claims [dev] pairs
# (benchmarks/results/levers/dev_pairs.txt, never [test]), seeds 0,1, 4 views at 90° per step, elevation 0-30°:
# one `bench run` per setting (resumable: rerun this script to continue). Table: python3 benchmarks/levers_table.py
# with LEVERS_OUT=benchmarks/results/mv_levers.
set -euo pipefail
cd "$(dirname "$0")/.."
P=benchmarks/results/levers/dev_pairs.txt
O=${LEVERS_OUT:-benchmarks/results/mv_levers}
source benchmarks/mv_levers_lib.sh
run cfg15 --set guidance_scale=15
run cfg15_wide --set guidance_scale=15 --set init_radius=0.9
