#!/usr/bin/env bash
# The paper's Multi-Fashion+MNIST table (ResNet-18, S = -0.1, K = 25), using the
# permutation published with the paper unless PERMUTATION= (empty) asks for a search
# run; see exp/table.sh for the other variables. Extra arguments are config overrides.
set -euo pipefail
here=$(dirname "$0")
export PERMUTATION=${PERMUTATION-$here/../../logs/multi_fashion_mnist_resnet18_S-0.1.json}
exec "$here/../table.sh" multi_fashion_mnist -0.1 "$@"
