#!/usr/bin/env bash
# Train configs/multi_mnist/single_task.yaml; extra arguments are config overrides (key=value).
set -euo pipefail
exec recon train "$(dirname "$0")/../../configs/multi_mnist/single_task.yaml" "$@"
