#!/usr/bin/env bash
# The paper's NYUv2 table (MTAN, S = -0.02, K = 22); see exp/table.sh for the
# variables. Extra arguments are config overrides, e.g. data.root=/data/nyuv2.
set -euo pipefail
exec "$(dirname "$0")/../table.sh" nyuv2 -0.02 "$@"
