#!/usr/bin/env bash
# Checks a built edged image without a container runtime (none is installed here): mounts the
# image's root filesystem with buildah and runs the binaries in it with chroot, so that they can
# only find what the image holds. Exit 0 when edgectl answers --help and edged validates a
# configuration shipped in the image, with its DPDK drivers loadable.
#   deploy/container/check-image.sh [TAG=localhost/edge/edged:dev]
set -euo pipefail
tag=${1:-localhost/edge/edged:dev}
ctr=$(buildah from --quiet "$tag")
trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
chroot "$mnt" /usr/bin/edgectl --help >/dev/null
chroot "$mnt" /usr/bin/edged --check /etc/edge/l4-fnat.yaml
# Every shared object in the image resolves inside the image.
missing=$(find "$mnt/usr/bin" "$mnt"/usr/lib/*/dpdk -type f \( -name 'edge*' -o -name '*.so*' \) 2>/dev/null |
  while read -r f; do chroot "$mnt" /lib64/ld-linux-x86-64.so.2 --list "${f#"$mnt"}" 2>&1 | grep -E "not found" || true; done)
if [ -n "$missing" ]; then
  echo "unresolved libraries in the image:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "image $tag: edged and edgectl run from the image's own files; every library resolves"
