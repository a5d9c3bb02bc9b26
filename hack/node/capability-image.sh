#!/usr/bin/env bash
# Makes the image tests/capabilities.rs builds with: the node's Buildah image
# (localhost/buildpolicy/buildah:<suite>, hack/node/images.sh) plus two base
# images as OCI archives, so a build pod has a FROM without a registry and
# without a hostPath volume (the generated SCC allows neither):
#
#   /bases/busybox.tar  oci-archive of localhost/buildpolicy/shell:busybox
#                       (busybox-static, /bin/sh: a RUN step can run)
#   /bases/fcap.tar     the same plus /bin/fcap, a copy of busybox carrying a
#                       file capability (security.capability xattr, made
#                       with Debian's setcap: cap_net_raw+ep), as UBI images
#                       ship such files; the script checks that the layer
#                       in the archive carries the xattr
#
#   hack/node/capability-image.sh          make (or reuse) the image, print its name
#   hack/node/capability-image.sh name     print its name only
#   hack/node/capability-image.sh remove   remove it from the storage
#
# Everything is made on this machine from images.sh's images and Debian's
# setcap (libcap2-bin); nothing is pulled. Stamp: the two source images' IDs
# and this recipe, in target/node/images/.stamp-capability.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${NODE_DIR:-$ROOT/target/node}"
WORK="$OUT/images"
SUITE="${NODE_SUITE:-$( . /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}"
STORAGE_ROOT="/var/lib/containers/storage"
STORAGE_RUNROOT="/run/containers/storage"
STORAGE_DRIVER="${NODE_STORAGE_DRIVER:-overlay}"
BUILDAH_IMAGE="localhost/buildpolicy/buildah:$SUITE"
SHELL_IMAGE="localhost/buildpolicy/shell:busybox"
IMAGE="localhost/buildpolicy/buildah-capabilities:$SUITE"
RECIPE=1

log() { printf '[capability-image] %s\n' "$*" >&2; }
die() { printf '[capability-image] ERROR: %s\n' "$*" >&2; exit 1; }
bah() { nice -n 19 buildah --root "$STORAGE_ROOT" --runroot "$STORAGE_RUNROOT" --storage-driver "$STORAGE_DRIVER" "$@"; }
image_id() { bah images --quiet --no-trunc "$1" 2>/dev/null | head -n1; }

case "${1:-make}" in
  name) echo "$IMAGE"; exit 0 ;;
  remove) bah rmi "$IMAGE" >/dev/null 2>&1 || true; rm -f "$WORK/.stamp-capability"; exit 0 ;;
  make) ;;
  *) die "usage: $0 [make|name|remove]" ;;
esac

[[ "$(id -u)" == 0 ]] || die "run as root (the containers storage is root's)"
command -v setcap >/dev/null || die "setcap is missing: apt-get install libcap2-bin"
buildah_id="$(image_id "$BUILDAH_IMAGE")"; shell_id="$(image_id "$SHELL_IMAGE")"
[[ -n "$buildah_id" && -n "$shell_id" ]] ||
  die "$BUILDAH_IMAGE or $SHELL_IMAGE is missing: run hack/node/images.sh"

stamp="$(echo "$buildah_id $shell_id recipe=$RECIPE driver=$STORAGE_DRIVER" | sha256sum | cut -d' ' -f1)"
if [[ -f "$WORK/.stamp-capability" && "$(cat "$WORK/.stamp-capability")" == "$stamp" && -n "$(image_id "$IMAGE")" ]]; then
  log "$IMAGE is up to date"
  echo "$IMAGE"
  exit 0
fi

start=$SECONDS
dir="$WORK/capability"
rm -rf "$dir"; mkdir -p "$dir/bases"
ctr=""
cleanup() { [[ -z "$ctr" ]] || bah rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT

log "base 1: $SHELL_IMAGE as an OCI archive"
bah push --quiet "$SHELL_IMAGE" "oci-archive:$dir/bases/busybox.tar:localhost/bases/busybox:1"

log "base 2: $SHELL_IMAGE + /bin/fcap with cap_net_raw+ep"
ctr="$(bah from --quiet "$SHELL_IMAGE")"
mnt="$(bah mount "$ctr")"
cp /bin/busybox "$mnt/bin/fcap"
setcap cap_net_raw+ep "$mnt/bin/fcap"
getcap "$mnt/bin/fcap" | grep -q cap_net_raw || die "setcap left no file capability on $mnt/bin/fcap"
bah umount "$ctr" >/dev/null
bah commit --quiet --format oci "$ctr" "oci-archive:$dir/bases/fcap.tar:localhost/bases/fcap:1" >/dev/null
bah rm "$ctr" >/dev/null; ctr=""
# The layer must carry the xattr (PAX header SCHILY.xattr.security.capability;
# buildah writes the layers uncompressed into the archive). No `grep -q` in
# these pipes: it would close them early and pipefail would see SIGPIPE.
mkdir -p "$dir/fcap-check"
tar -C "$dir/fcap-check" -xf "$dir/bases/fcap.tar"
found=""
for blob in "$dir"/fcap-check/blobs/sha256/*; do
  [[ "$(tar -tf "$blob" 2>/dev/null | grep -cx 'bin/fcap')" == 1 ]] || continue
  [[ "$(grep -ac 'SCHILY.xattr.security.capability' "$blob")" != 0 ]] && found="$blob"
done
[[ -n "$found" ]] || die "no layer of $dir/bases/fcap.tar carries security.capability for bin/fcap"
rm -rf "$dir/fcap-check"

log "$IMAGE: $BUILDAH_IMAGE + /bases"
ctr="$(bah from --quiet "$BUILDAH_IMAGE")"
bah copy --quiet "$ctr" "$dir/bases" /bases >/dev/null
bah config --label "dev.buildpolicy.capability-image.recipe=$RECIPE" "$ctr"
bah rmi "$IMAGE" >/dev/null 2>&1 || true
bah commit --quiet --rm --format oci "$ctr" "$IMAGE" >/dev/null; ctr=""
rm -rf "$dir"
mkdir -p "$WORK"; echo "$stamp" > "$WORK/.stamp-capability"
log "made $IMAGE in $((SECONDS - start))s"
echo "$IMAGE"
