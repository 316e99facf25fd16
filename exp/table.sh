#!/usr/bin/env bash
# Reproduce a table of the Recon paper (Shi et al., "Recon: Reducing Conflicting
# Gradients from the Root for Multi-Task Learning", ICLR 2023, arXiv 2302.11289):
#
#   exp/table.sh DATASET S [key=value ...]
#
# 1. a joint-training search run (configs/DATASET/search.yaml) and its S-conflict
#    scores at threshold S, unless PERMUTATION names a layer permutation to use;
# 2. for each seed in SEEDS: one single-task run per task, and every method with and
#    without Recon (configs/DATASET/<method>.yaml and <method>_recon.yaml, whose
#    model.branch.top_k is the paper's K);
# 3. `recon report` over the runs: mean ± std over seeds, Δm%, model size.
#
# Extra arguments are config overrides for every run, e.g. data.root=/data/cityscapes.
#   SEEDS        seeds (default "0 1 2", because the paper reports the mean of 3 seeds)
#   METHODS      methods (default "joint mgda pcgrad graddrop cagrad")
#   OUT          folder for the runs (default runs/<DATASET>-table-<date>-<time>)
#   PERMUTATION  a permutation JSON (e.g. one in logs/) that replaces the search run
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: exp/table.sh DATASET S [key=value ...]" >&2
    exit 2
fi
dataset=$1 threshold=$2
shift 2
configs="$(dirname "$0")/../configs/$dataset"
source "$(dirname "$0")/lib.sh"

METHODS=${METHODS:-"joint mgda pcgrad graddrop cagrad"}
OUT=${OUT:-runs/$dataset-table-$(date +%Y%m%d-%H%M%S)}
tasks=$(python -c "from recon.data import dataset_tasks; print(' '.join(dataset_tasks('$dataset')[0]))")

if [ -z "${PERMUTATION:-}" ]; then
    search=$(recon train "$configs/search.yaml" "output_dir=$OUT/search" "$@" | tail -n 1)
    PERMUTATION=$(recon conflict "$search" --S "$threshold" | tee /dev/stderr | sed -n 's/^permutation: //p')
fi

for task in $tasks; do
    run_seeds "$OUT" "$configs/single_task.yaml" "tasks=[$task]" "$@"
done
for method in $METHODS; do
    run_seeds "$OUT" "$configs/$method.yaml" "$@"
    run_seeds "$OUT" "$configs/${method}_recon.yaml" "model.branch.file=$PERMUTATION" "$@"
done
recon report "${RUN_DIRS[@]}"
