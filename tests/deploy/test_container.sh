#!/usr/bin/env bash
# The container image builds from scratch out of this build (buildah) and runs from its own files
# (checked by chroot into the mounted image: no container runtime is installed here).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${EDGE_BUILD:-$src/build}
tag=localhost/edge/edged:deploy-test
"$src/deploy/container/build-image.sh" "$build" "$tag"
"$src/deploy/container/check-image.sh" "$tag"
buildah rmi "$tag" >/dev/null
echo "test_container: passed"
