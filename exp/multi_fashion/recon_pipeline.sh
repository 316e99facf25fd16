#!/usr/bin/env bash
# The whole Recon pipeline on Multi-Fashion with the paper's settings (ResNet-18,
# 120 epochs; a 40-epoch joint-training search run, S = -0.1, K = 25): the search
# run, its permutation, single-task runs and every method with and without Recon for
# each seed, and the table. See exp/table.sh for the variables (SEEDS, METHODS, OUT).
set -euo pipefail
exec "$(dirname "$0")/../table.sh" multi_fashion -0.1 "$@"
