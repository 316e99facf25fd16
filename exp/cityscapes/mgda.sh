#!/usr/bin/env bash
# Train configs/cityscapes/mgda.yaml; extra arguments are config overrides (key=value).
set -euo pipefail
exec recon train "$(dirname "$0")/../../configs/cityscapes/mgda.yaml" "$@"
