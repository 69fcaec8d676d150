#!/usr/bin/env bash
# The demo command: installs what is missing, builds, and runs the built-in demo.
# Needs root (network namespaces, DPDK). `deploy/demo/demo.sh --keep` leaves it running.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then echo "the demo needs root (network namespaces, DPDK)"; exit 1; fi
deploy/install-deps.sh
deploy/build.sh
exec /usr/bin/python3 deploy/demo/demo.py "$@"
