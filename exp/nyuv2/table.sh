#!/usr/bin/env bash
# The NYUv2 table of the Recon paper (Shi et al., ICLR 2023): MTAN, S = -0.02,
# K = 22. exp/table.sh lists the variables. Extra arguments are config overrides, e.g. data.root=/data/nyuv2.
set -euo pipefail
exec "$(dirname "$0")/../table.sh" nyuv2 -0.02 "$@"
