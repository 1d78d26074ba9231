# Shared by benchmarks/mv_levers*.sh and amv_levers.sh (source it after setting P, the prompt file, and O, the
# output root; METHOD and PRIOR default to mvdream-sds on toy-mv): 4 views at 90° per step, elevation 0-30°,
# seeds 0,1, one `bench run` per setting. Usage: run NAME [--priors P] [--set KEY=VALUE ...] (resumable; a later
# --priors overrides PRIOR).
S=(--set views_per_step=4 --set view_azimuths=even --set elevation_max=30)
run() { name=$1; shift; nice -n 5 distill3d bench run --suite "$P" --methods "${METHOD:-mvdream-sds}" \
  --priors "${PRIOR:-toy-mv}" --seeds 0,1 --workers 1 --out "$O/$name" "${S[@]}" "$@"; }
