#!/usr/bin/env bash
# The paper's CityScapes table (SegNet, S = 0.0, K = 39); see exp/table.sh for the
# variables. Extra arguments are config overrides, e.g. data.root=/data/cityscapes.
set -euo pipefail
exec "$(dirname "$0")/../table.sh" cityscapes 0.0 "$@"
