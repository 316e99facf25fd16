#!/usr/bin/env bash
# The Multi-Fashion+MNIST table of the Recon paper (Shi et al., ICLR 2023): ResNet-18,
# S = -0.1, K = 25. It uses the permutation published with the paper's code, unless
# PERMUTATION= (empty) requests a search run. exp/table.sh lists the other variables.
# Extra arguments are config overrides.
set -euo pipefail
here=$(dirname "$0")
export PERMUTATION=${PERMUTATION-$here/../../logs/multi_fashion_mnist_resnet18_S-0.1.json}
exec "$here/../table.sh" multi_fashion_mnist -0.1 "$@"
