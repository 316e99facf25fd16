#!/usr/bin/env bash
# Train configs/cityscapes/cagrad.yaml; extra arguments are config overrides (key=value).
set -euo pipefail
exec recon train "$(dirname "$0")/../../configs/cityscapes/cagrad.yaml" "$@"
