#!/usr/bin/env bash
# Train configs/nyuv2/graddrop_recon.yaml; extra arguments are config overrides (key=value).
set -euo pipefail
exec recon train "$(dirname "$0")/../../configs/nyuv2/graddrop_recon.yaml" "$@"
