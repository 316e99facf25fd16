#!/usr/bin/env bash
# The CityScapes table of the Recon paper (Shi et al., ICLR 2023): SegNet, S = 0.0,
# K = 39. exp/table.sh lists the variables. Extra arguments are config overrides, e.g. data.root=/data/cityscapes.
set -euo pipefail
exec "$(dirname "$0")/../table.sh" cityscapes 0.0 "$@"
