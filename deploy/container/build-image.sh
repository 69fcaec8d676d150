#!/usr/bin/env bash
# Builds the edged container image from scratch with buildah, from this project's own build:
# edged and edgectl, DPDK's driver plugin directory (EAL loads the PMDs from it at start), every
# shared library those need (by ldd) and the dynamic loader. No base image, no package manager.
#   deploy/container/build-image.sh [BUILD_DIR=build] [TAG=localhost/edge/edged:dev]
# Then check it without a container runtime: deploy/container/check-image.sh TAG
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
tag=${2:-localhost/edge/edged:dev}
command -v buildah >/dev/null || { echo "buildah is not installed (apt-get install buildah)" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/bin" "$root/etc/edge" "$root/run/edge" "$root/tmp"
chmod 1777 "$root/tmp"
install -m 0755 "$build/edge/edged" "$build/edge/edgectl" "$root/usr/bin/"
strip --strip-debug "$root/usr/bin/edged" "$root/usr/bin/edgectl"
pmds=$(ls -d /usr/lib/*/dpdk/pmds-* 2>/dev/null | head -1 || true)
objects=("$root/usr/bin/edged" "$root/usr/bin/edgectl")
if [ -n "$pmds" ]; then
  mkdir -p "$root$pmds"
  # The plugin directory holds symlinks to the drivers: copy what they point to.
  for so in "$pmds"/*.so*; do
    cp -L "$so" "$root$pmds/"
    objects+=("$root$pmds/$(basename "$so")")
  done
fi
copy_deps() {
  ldd "$1" 2>/dev/null | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r lib; do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
    # Libraries that libraries need, once.
    copy_deps "$lib"
  done
}
for o in "${objects[@]}"; do copy_deps "$o"; done
# The loader where binaries look for it (/lib64 -> /usr/lib64 on Debian's merged /usr).
if [ -e /lib64/ld-linux-x86-64.so.2 ]; then
  mkdir -p "$root/lib64"
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
fi
cp deploy/examples/*.yaml "$root/etc/edge/" 2>/dev/null || true
cp deploy/container/Containerfile "$ctx/"
echo "context: $(du -sh "$root" | cut -f1) in $(find "$root" -type f | wc -l) files"
buildah bud --quiet -f "$ctx/Containerfile" -t "$tag" "$ctx"
echo "built $tag"
