#!/usr/bin/env bash
# Issue 21, fourth round: anchords-mv (AnchorDS + ModeDreamer's multi-view term) kept "next to" right from every
# side on [test] but fell below SDS on "on top of" judged match (toy-mv's own colours and shapes). Levers on the
# larger toy-claims [dev] (18 "next to" + 12 "on top of", never [test]; benchmarks/results/levers/dev_pairs2.txt),
# seeds 0,1, 4 views at 90° per step, elevation 0-30°, 200 steps. Each arm is one a-priori lever, not a search:
#   base    anchords-mv on toy-mv at its defaults (the term's CFG 15)
#   cfg5    the term's CFG 5 (what won for mvdream-sds on toy-mv: benchmarks/mv_levers3.sh)
#   paired  the paper's split: AnchorDS's rows on the single-view toy prior, the term's camera rows on toy-mv
#           (--priors toy+toy-mv; ModeDreamer takes g_ISD from Stable Diffusion and g_MV from MVDream)
# then, as paired kept "on top of" where base had it (the failures are AnchorDS's own: a gray cube under a cone
# comes out as a dark rounded pot, with or without the term; AnchorDS alone is 79% on [test] "on top of" against
# SDS's 89% in the ledger), AnchorDS's own levers named by issue 21, on the pair:
#   paired_scale0.15  the render seen through the adapter at half the toy scale (image_scale 0.3 -> 0.15)
#   paired_code       the authors' code form (image on both branches, CFG; the toy prior's SDS CFG 15 for its 101,
#                     its negative prompt replaced by '' as the toy prior cannot read it)
# None of the three moved "on top of" (the gray cube stays a dark pot), so, last, the term on the plainest base:
#   sds_paired        sds-mv on the pair: SDS (CFG 15) + the same term (not paired against base: another method)
# cfg5 was stopped after 5 runs to free the core for these (it changes only the term, not the base).
# Outcome (benchmarks/results/amv_levers/levers.md): paired kept, with AnchorDS's defaults ("next to" every side
# 86% vs 72%, +14 [0, 28]; scale 0.15 +3 more on "next to" and -1 on "on top of": within noise, dropped; the code
# form -8 every side, dropped; sds_paired 53% every side, so AnchorDS's anchor, not the term alone, does it).
# "On top of" judged match stayed 86-90% in every arm (the gray cube under a yellow cone is a dark pot in all).
# Next round's candidates for "on top of" (measured on [dev] only, not yet confirmed on [test]):
#   paired_filter     AnchorDS's filter (Eq. 14, γ 0.03: anchords-filter's setting) as the base, on the pair
#   paired_cfg5       the term's CFG 5 on the pair
# Outcome: paired_filter changes nothing measurable (it kept 97% of the views); paired_cfg5 lifts "on top of" judged match
# 87% -> 99% (+12 [+3, +26]) at "next to" every side 83% (-3 [-17, +11]): confirmed on [test] in benchmarks/mv22.py.
# Resumable. ARMS="base cfg5" runs a subset.
# Table: python3 benchmarks/levers_table.py --root benchmarks/results/amv_levers --base base \
#   --title "anchords-mv" --made "bash benchmarks/amv_levers.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
P=benchmarks/results/levers/dev_pairs2.txt
O=${LEVERS_OUT:-benchmarks/results/amv_levers}
METHOD=anchords-mv
source benchmarks/mv_levers_lib.sh
for arm in ${ARMS:-base cfg5 paired}; do
  case $arm in
    base) run base ;;
    cfg5) run cfg5 --set mv.guidance_scale=5 ;;
    paired) run paired --priors toy+toy-mv ;;
    paired_scale0.15) run paired_scale0.15 --priors toy+toy-mv --set base.image_scale=0.15 ;;
    sds_paired) METHOD=sds-mv run sds_paired --priors toy+toy-mv --workers 2 ;;
    paired_filter) run paired_filter --priors toy+toy-mv --set base.filter_threshold=0.03 ;;
    paired_cfg5) run paired_cfg5 --priors toy+toy-mv --set mv.guidance_scale=5 ;;
    paired_code) run paired_code --priors toy+toy-mv --set base.form=code --set base.form.guidance_scale=15 ;;
  esac
done
