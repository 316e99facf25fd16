#!/usr/bin/env bash
# The whole Recon pipeline on Multi-MNIST with the Multi-Fashion+MNIST settings of the
# Recon paper (Shi et al., ICLR 2023): ResNet-18, 120 epochs, a 40-epoch
# joint-training search run, S = -0.1, K = 25. It runs the search run, its
# permutation, then single-task runs and every method with and without Recon for
# each seed, and prints the table. exp/table.sh lists the variables (SEEDS, METHODS, OUT).
set -euo pipefail
exec "$(dirname "$0")/../table.sh" multi_mnist -0.1 "$@"
