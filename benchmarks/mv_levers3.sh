#!/usr/bin/env bash
# Issue 21, third round: levers on mvdream-sds (re-shipped toy-mv), measured on the larger toy-claims [dev]
# (18 "next to" + 12 "on top of", never [test]; benchmarks/results/levers/dev_pairs2.txt), seeds 0,1, 4 views at
# 90° per step, elevation 0-30°, 200 steps. Each arm is one a-priori lever from the sources, not a search:
#   base     CFG 15, the default when these ran (now CFG 5 is: a rerun of base, groups2, rescale0 and singles_base
#            is refused by bench.grid.check_reusable; remake them with --set guidance_scale=15, new run ids)
#   groups2  8 views per step as two groups of 4 (threestudio-mvdream's data.batch_size 8 before step 5000)
#   cfg7.5   CFG 7.5 (the next step down from 15; SD's usual scale)
#   rescale0 no std rescale of x̂0 (recon_std_rescale 0; MVDream's CFG-rescale is meant for CFG 50)
# then, after CFG 7.5 won on every kind: CFG 5, one step further down, and the [dev] singles at 15 / 7.5 / 5 (does a
# lower CFG cost single objects anything?). Faces have no [dev] prompts. Resumable.
# Table: python3 benchmarks/levers_table.py --root benchmarks/results/mv_levers3 --base base \
#   --title "mvdream-sds on toy-mv" --made "bash benchmarks/mv_levers3.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
P=benchmarks/results/levers/dev_pairs2.txt
O=${LEVERS_OUT:-benchmarks/results/mv_levers3}
source benchmarks/mv_levers_lib.sh
(run base; run cfg7.5 --set guidance_scale=7.5) &
(run groups2 --set views_per_step=8 --set views_per_group=4; run rescale0 --set recon_std_rescale=0) &
wait
run cfg5 --set guidance_scale=5
P=benchmarks/results/levers/dev_singles.txt
run singles_base; run singles_cfg7.5 --set guidance_scale=7.5; run singles_cfg5 --set guidance_scale=5
