# Shared helpers of the scripts that reproduce a table of the Recon paper. Source it, then:
#
#   run_seeds OUTDIR CONFIG [key=value ...]
#       runs `recon train CONFIG seed=S output_dir=OUTDIR key=value ...` once for each
#       seed S in $SEEDS, in order, and appends each printed run directory to RUN_DIRS.
#       It stops at the first run that fails and returns its exit status. A run stopped
#       by Ctrl-C (status 130) or SIGTERM (143) has a checkpoint and continues with
#       `recon train --resume RUN_DIR`. Calling run_seeds again starts new runs.
#   recon report "${RUN_DIRS[@]}"
#       prints the table: mean ± std over the seeds, Δm%, model size.
#
# Variables:
#   SEEDS     seeds to train, separated by spaces (default "0 1 2", because the Recon
#             paper, Shi et al., ICLR 2023, reports the mean of 3 seeds)
#   RUN_DIRS  array of the run directories that run_seeds collected, in order
#
# Example (a table script in exp/<dataset>/):
#
#   source "$(dirname "$0")/../lib.sh"
#   run_seeds runs/table configs/multi_fashion/joint.yaml "$@"
#   run_seeds runs/table configs/multi_fashion/cagrad.yaml "$@"
#   recon report "${RUN_DIRS[@]}"

SEEDS=${SEEDS:-"0 1 2"}
RUN_DIRS=(${RUN_DIRS[@]+"${RUN_DIRS[@]}"})

run_seeds() {
    if [ $# -lt 2 ]; then
        echo "usage: run_seeds OUTDIR CONFIG [key=value ...]" >&2
        return 2
    fi
    local outdir=$1 config=$2 seed output status run_dir
    shift 2
    for seed in $SEEDS; do
        echo "run_seeds: recon train $config seed=$seed output_dir=$outdir $*" >&2
        # recon train prints its metrics, then the run directory on its last line of standard output.
        output=$(recon train "$config" "seed=$seed" "output_dir=$outdir" "$@") || {
            status=$?
            echo "run_seeds: recon train $config seed=$seed failed with exit status $status" >&2
            return "$status"
        }
        printf '%s\n' "$output" >&2
        run_dir=${output##*$'\n'}
        if [ ! -d "$run_dir" ]; then
            echo "run_seeds: recon train $config seed=$seed printed '$run_dir' last, not a run directory" >&2
            return 1
        fi
        RUN_DIRS+=("$run_dir")
    done
}
