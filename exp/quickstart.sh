#!/usr/bin/env bash
# The whole Recon pipeline on real Multi-Fashion data, sized as a quick run
# (12 minutes on an idle 2-core machine):
#   1. a joint-training search run that records per-layer gradient cosines,
#   2. S-conflict scores (S = -0.1) and the layer permutation,
#   3. final runs of every base method, without and with Recon (top 25 layers),
#   4. a table of per-task test accuracy, model size and parameters.
# The runs use 7,168 training and 2,000 test images for 2 epochs, so differences
# between methods are mostly noise. exp/multi_fashion/recon_pipeline.sh runs the
# Recon paper's settings (120 epochs on all 120,000 images, 3 seeds).
# Extra arguments are config overrides for every run.
#
#   OUT      folder for the runs (default: runs/quickstart-<date>-<time>)
#   METHODS  base methods to compare (default: "joint pcgrad graddrop mgda cagrad")
set -euo pipefail
configs="$(dirname "$0")/../configs/multi_fashion"

OUT=${OUT:-runs/quickstart-$(date +%Y%m%d-%H%M%S)}
METHODS=${METHODS:-"joint pcgrad graddrop mgda cagrad"}
quick=(data.train_size=7168 data.test_size=2000 train.epochs=2 train.eval_every=1 "output_dir=$OUT" "$@")

echo "== 1/3 search run (joint training, recording cosines)"
search=$(recon train "$configs/search.yaml" "${quick[@]}" | tail -n 1)

echo "== 2/3 S-conflict scores of $search"
permutation=$(recon conflict "$search" --S -0.1 | tee /dev/stderr | sed -n 's/^permutation: //p')

echo "== 3/3 final runs, without and with Recon"
for method in $METHODS; do
    recon train "$configs/$method.yaml" "${quick[@]}" | tail -n 1
    recon train "$configs/${method}_recon.yaml" "${quick[@]}" "model.branch.file=$permutation" | tail -n 1
done

echo
echo "Quick run: 7,168 training images, 2 epochs; the paper trains on all 120,000 for 120 epochs."
recon report "$OUT"
