#!/usr/bin/env bash
# Issue 21, third round: levers on mvdream-sds (CFG 15, re-shipped toy-mv), measured on the larger toy-claims
# [dev] (18 "next to" + 12 "on top of", never [test]), seeds 0,1, 4 views at 90° per step, elevation 0-30°,
# 200 steps. Each arm is one a-priori lever from the sources, not a search:
#   groups2  8 views per step as two groups of 4 (threestudio-mvdream's data.batch_size 8 before step 5000)
#   cfg7.5   CFG 7.5 (the next step down from the chosen 15; SD's usual scale)
#   rescale0 no std rescale of x̂0 (recon_std_rescale 0; MVDream's CFG-rescale is for CFG 50)
# Resumable. Table: python3 benchmarks/levers_table.py --root benchmarks/results/mv_levers3 --base base
set -euo pipefail
cd "$(dirname "$0")/.."
P=benchmarks/results/levers/dev_pairs2.txt
O=${LEVERS_OUT:-benchmarks/results/mv_levers3}
S=(--set views_per_step=4 --set view_azimuths=even --set elevation_max=30)
run() { name=$1; shift; distill3d bench run --suite "$P" --methods mvdream-sds --priors toy-mv --seeds 0,1 \
  --workers 1 --out "$O/$name" "${S[@]}" "$@"; }
(run base; run cfg7.5 --set guidance_scale=7.5) &
(run groups2 --set views_per_step=8 --set views_per_group=4; run rescale0 --set recon_std_rescale=0) &
wait
# Second wave (after the first table: CFG 7.5 won on every kind): one step further down, CFG 5, and the [dev]
# singles at 15 / 7.5 / 5 (does a lower CFG cost single objects anything?). Faces have no [dev] prompts.
if [[ "${WAVE2:-1}" == 1 ]]; then
  D=benchmarks/results/levers/dev_singles.txt
  single() { name=$1; shift; distill3d bench run --suite "$D" --methods mvdream-sds --priors toy-mv --seeds 0,1 \
    --workers 1 --out "$O/singles_$name" "${S[@]}" "$@"; }
  run cfg5 --set guidance_scale=5
  single base; single cfg7.5 --set guidance_scale=7.5; single cfg5 --set guidance_scale=5
fi
