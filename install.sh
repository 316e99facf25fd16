#!/usr/bin/env bash
# Install Recon and everything its experiments and tests need, on a fresh machine.
#
#   TORCH_PACKAGES  pip requirements for PyTorch (default: the releases Recon is tested with)
#
# Debian's Fashion-MNIST package is installed where apt-get is available and the
# user may use it; elsewhere, point data.root or $RECON_DATA at the IDX files.
set -euo pipefail
cd "$(dirname "$0")"

TORCH_PACKAGES=${TORCH_PACKAGES:-"torch==2.14.1 torchvision==0.29.1"}

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update && apt-get install -y dataset-fashion-mnist
    elif command -v sudo >/dev/null; then
        sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist
    else
        echo "install.sh: cannot run apt-get as root; install dataset-fashion-mnist yourself" >&2
    fi
fi

# shellcheck disable=SC2086  # TORCH_PACKAGES is a list of requirements
python -m pip install $TORCH_PACKAGES
python -m pip install -e '.[test]'
