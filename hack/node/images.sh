#!/usr/bin/env bash
# Makes the node's images on this machine (no registry, no image download:
# Debian packages only) and commits them with Debian's buildah into the
# containers-storage that CRI-O reads (/var/lib/containers/storage, the
# driver in $STORAGE_DRIVER, the same one hack/node/crio.conf names).
#
#   hack/node/images.sh            make (or reuse) every image
#   hack/node/images.sh tekton     make (or reuse) Tekton's step images only
#   hack/node/images.sh tekton-refs  print the controller flags naming them
#   hack/node/images.sh list       list them
#   hack/node/images.sh remove     remove them from the storage
#
#   $BUILDAH_IMAGE  minimal Debian ($SUITE, mmdebstrap --variant=minbase) with
#                   buildah: what build pods run
#   $SHELL_IMAGE    busybox-static alone (/bin/sh and its applets) and /pause:
#                   a small shell image, and CRI-O's pause image
#   $TEKTON_IMAGE_PREFIX-{entrypoint,nop,workingdirinit,sidecarlogresults}:<version>
#                   Tekton Pipelines' four step images: cmd/<name> of
#                   github.com/tektoncd/pipeline at the version
#                   hack/tekton-controller/go.mod pins (built in that module,
#                   so with exactly the controller's dependencies), static
#                   (CGO_ENABLED=0), at /ko-app/<name> as ko lays them out
#                   (the controller runs /ko-app/entrypoint etc.), user 65532
#
# Tags are never "latest", so a kubelet with the default pull policy
# (IfNotPresent for a non-latest tag) never tries a registry. Each image has a
# stamp (suite, package list, Debian package versions, this script's recipe
# version) in target/node/images/ and is remade only when the stamp changes or
# the image is gone from the storage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${NODE_DIR:-$ROOT/target/node}"
WORK="$OUT/images"

# The suite this machine's apt uses (bookworm here), unless told.
SUITE="${NODE_SUITE:-$( . /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}"
STORAGE_ROOT="/var/lib/containers/storage"
STORAGE_RUNROOT="/run/containers/storage"
# overlay works on this machine's ext4 root (checked by images.sh itself
# before the first image); vfs is the fallback that works everywhere but
# copies every layer.
STORAGE_DRIVER="${NODE_STORAGE_DRIVER:-overlay}"
BUILDAH_IMAGE="localhost/buildpolicy/buildah:$SUITE"
SHELL_IMAGE="localhost/buildpolicy/shell:busybox"
# Bumped whenever the recipe below changes in a way the stamp cannot see.
RECIPE=2
# Tekton's step images (see the header); tagged with the pipeline version.
TEKTON_SRC="$ROOT/hack/tekton-controller"
TEKTON_IMAGE_PREFIX="localhost/buildpolicy/tekton"
TEKTON_COMMANDS="entrypoint nop workingdirinit sidecarlogresults"
TEKTON_RECIPE=1

log() { printf '[node-images] %s\n' "$*" >&2; }
die() { printf '[node-images] ERROR: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required: $2"; }

bah() { nice -n 19 buildah --root "$STORAGE_ROOT" --runroot "$STORAGE_RUNROOT" --storage-driver "$STORAGE_DRIVER" "$@"; }

has_image() { bah images --quiet "$1" >/dev/null 2>&1; }

fresh() { # name stamp image
  [[ -f "$WORK/.stamp-$1" && "$(cat "$WORK/.stamp-$1")" == "$2" ]] && has_image "$3"
}

deb_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }

# Commit a root file system tarball as IMAGE with CMD, then remove the
# working container.
commit_rootfs() { # tarball image cmd...
  local tarball="$1" image="$2"; shift 2
  local ctr
  ctr="$(bah from --quiet scratch)"
  # A trap would outlive the function; remove the working container on any
  # failure by hand.
  if ! { bah add --quiet "$ctr" "$tarball" / &&
         bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
           --cmd "$*" --label "dev.buildpolicy.node.recipe=$RECIPE" "$ctr" &&
         bah commit --quiet --rm --format oci "$ctr" "$image" >/dev/null; }; then
    bah rm "$ctr" >/dev/null 2>&1 || true
    return 1
  fi
}

check_driver() {
  [[ "$STORAGE_DRIVER" == overlay ]] || return 0
  grep -qw overlay /proc/filesystems ||
    die "the kernel has no overlay file system: run with NODE_STORAGE_DRIVER=vfs (and set storage_driver = \"vfs\" in the CRI-O config)"
}

make_buildah_image() {
  need mmdebstrap "run 'hack/node/build.sh debian' (or apt-get install mmdebstrap)"
  local stamp
  stamp="$(echo "$SUITE minbase buildah recipe=$RECIPE driver=$STORAGE_DRIVER mmdebstrap=$(deb_version mmdebstrap) host-buildah=$(deb_version buildah)" | sha256sum | cut -d' ' -f1)"
  if fresh buildah "$stamp" "$BUILDAH_IMAGE"; then
    log "$BUILDAH_IMAGE is up to date"
    return 0
  fi
  local start=$SECONDS tarball="$WORK/buildah-$SUITE.tar"
  log "making $BUILDAH_IMAGE: mmdebstrap --variant=minbase --include=buildah $SUITE (about 90 s on idle cores)"
  rm -f "$tarball"
  # The Debian mirror is Debian's own (the package registry this machine
  # reaches); apt's caches stay out of the image.
  nice -n 19 mmdebstrap --quiet --variant=minbase --include=buildah \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      "$SUITE" "$tarball" ||
    die "mmdebstrap of $SUITE failed (Debian's archive must be reachable; see above)"
  local mm=$((SECONDS - start))
  bah rmi "$BUILDAH_IMAGE" >/dev/null 2>&1 || true
  commit_rootfs "$tarball" "$BUILDAH_IMAGE" /bin/bash || die "committing $BUILDAH_IMAGE failed"
  rm -f "$tarball"
  echo "$stamp" > "$WORK/.stamp-buildah"
  log "made $BUILDAH_IMAGE in $((SECONDS - start))s (mmdebstrap ${mm}s, commit $((SECONDS - start - mm))s)"
}

make_shell_image() {
  [[ -x /bin/busybox ]] && /bin/busybox --list >/dev/null 2>&1 ||
    die "/bin/busybox is missing: run 'hack/node/build.sh debian' (or apt-get install busybox-static)"
  ldd /bin/busybox >/dev/null 2>&1 &&
    die "/bin/busybox is dynamically linked (package busybox, not busybox-static): apt-get install busybox-static"
  local stamp
  stamp="$(echo "busybox-static=$(deb_version busybox-static) recipe=$RECIPE driver=$STORAGE_DRIVER" | sha256sum | cut -d' ' -f1)"
  if fresh shell "$stamp" "$SHELL_IMAGE"; then
    log "$SHELL_IMAGE is up to date"
    return 0
  fi
  local start=$SECONDS dir="$WORK/shell-rootfs" tarball="$WORK/shell.tar" applet
  log "making $SHELL_IMAGE from busybox-static $(deb_version busybox-static)"
  rm -rf "$dir" "$tarball"
  mkdir -p "$dir"/{bin,etc,tmp,root}
  chmod 1777 "$dir/tmp"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$dir/bin/$applet"
  done
  # /pause: CRI-O's pause_command for this image as its pause_image (CRI-O
  # resolves the pause image for every sandbox, even with drop_infra_ctr, and
  # no registry is reachable). As PID 1 it must exit on SIGTERM by itself.
  printf '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do sleep 3600 & wait $!; done\n' > "$dir/pause"
  chmod 0755 "$dir/pause"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
  tar -C "$dir" --numeric-owner --owner=0 --group=0 -cf "$tarball" .
  bah rmi "$SHELL_IMAGE" >/dev/null 2>&1 || true
  commit_rootfs "$tarball" "$SHELL_IMAGE" /bin/sh || die "committing $SHELL_IMAGE failed"
  rm -rf "$dir" "$tarball"
  echo "$stamp" > "$WORK/.stamp-shell"
  log "made $SHELL_IMAGE in $((SECONDS - start))s"
}

tekton_version() {
  # A one-line require, or a line of a require block.
  awk '$1 == "require" && $2 == "github.com/tektoncd/pipeline" {print $3; exit}
       $1 == "require" && $2 == "(" {block = 1; next}
       block && $1 == ")" {block = 0}
       block && $1 == "github.com/tektoncd/pipeline" {print $2; exit}' "$TEKTON_SRC/go.mod"
}

# The flags hack/local-cluster.sh gives Tekton's controller on a cluster with
# a node (-shell-image-win stays a placeholder: no Windows node here).
tekton_refs() {
  local v; v="$(tekton_version)"
  [[ -n "$v" ]] || die "$TEKTON_SRC/go.mod does not require github.com/tektoncd/pipeline"
  echo "-entrypoint-image $TEKTON_IMAGE_PREFIX-entrypoint:$v -nop-image $TEKTON_IMAGE_PREFIX-nop:$v" \
    "-sidecarlogresults-image $TEKTON_IMAGE_PREFIX-sidecarlogresults:$v" \
    "-workingdirinit-image $TEKTON_IMAGE_PREFIX-workingdirinit:$v -shell-image $SHELL_IMAGE"
}

make_tekton_images() {
  need go "install Go (the version hack/tekton-controller/go.mod names, or newer)"
  local version; version="$(tekton_version)"
  [[ -n "$version" ]] || die "$TEKTON_SRC/go.mod does not require github.com/tektoncd/pipeline"
  local stamp name missing=0
  stamp="$(cat "$TEKTON_SRC/go.mod" "$TEKTON_SRC/go.sum" <(echo "$TEKTON_COMMANDS $(go env GOVERSION) recipe=$TEKTON_RECIPE driver=$STORAGE_DRIVER") |
    sha256sum | cut -d' ' -f1)"
  for name in $TEKTON_COMMANDS; do has_image "$TEKTON_IMAGE_PREFIX-$name:$version" || missing=1; done
  if (( ! missing )) && [[ -f "$WORK/.stamp-tekton" && "$(cat "$WORK/.stamp-tekton")" == "$stamp" ]]; then
    log "Tekton's step images $version are up to date"
    return 0
  fi
  local start=$SECONDS bin="$WORK/tekton-bin" pkgs=()
  for name in $TEKTON_COMMANDS; do pkgs+=("github.com/tektoncd/pipeline/cmd/$name"); done
  log "building Tekton's $TEKTON_COMMANDS $version (static, in ${TEKTON_SRC#"$ROOT"/})"
  rm -rf "$bin"; mkdir -p "$bin"
  # -mod=readonly: hack/tekton-controller's go.sum covers these commands too
  # (checked: go list -deps); nothing is written into the module.
  (cd "$TEKTON_SRC" && CGO_ENABLED=0 nice -n 19 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$bin/" "${pkgs[@]}") ||
    die "building Tekton's step commands failed (see above)"
  local built=$((SECONDS - start))
  for name in $TEKTON_COMMANDS; do
    ldd "$bin/$name" >/dev/null 2>&1 && die "$bin/$name is dynamically linked (CGO_ENABLED=0 was ignored?)"
    local dir="$WORK/tekton-rootfs" tarball="$WORK/tekton-$name.tar" image="$TEKTON_IMAGE_PREFIX-$name:$version" ctr
    rm -rf "$dir" "$tarball"
    mkdir -p "$dir"/{ko-app,etc,tmp,var/run/ko}
    chmod 1777 "$dir/tmp"
    install -m 0755 "$bin/$name" "$dir/ko-app/$name"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$dir/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' > "$dir/etc/group"
    tar -C "$dir" --numeric-owner --owner=0 --group=0 -cf "$tarball" .
    bah rmi "$image" >/dev/null 2>&1 || true
    ctr="$(bah from --quiet scratch)"
    if ! { bah add --quiet "$ctr" "$tarball" / &&
           bah config --entrypoint "[\"/ko-app/$name\"]" --cmd '' --user 65532:65532 \
             --env PATH=/ko-app:/usr/local/bin:/usr/bin:/bin --env KO_DATA_PATH=/var/run/ko \
             --label "dev.buildpolicy.node.recipe=tekton-$TEKTON_RECIPE" \
             --label "org.opencontainers.image.source=github.com/tektoncd/pipeline/cmd/$name@$version" "$ctr" &&
           bah commit --quiet --rm --format oci "$ctr" "$image" >/dev/null; }; then
      bah rm "$ctr" >/dev/null 2>&1 || true
      die "committing $image failed"
    fi
    rm -rf "$dir" "$tarball"
  done
  rm -rf "$bin"
  echo "$stamp" > "$WORK/.stamp-tekton"
  log "made Tekton's step images $version in $((SECONDS - start))s (go build ${built}s, commits $((SECONDS - start - built))s)"
}

main() {
  [[ "${1:-}" == tekton-refs ]] && { tekton_refs; return 0; }
  [[ $EUID -eq 0 ]] || die "run as root: the images go into $STORAGE_ROOT, which CRI-O (as root) reads"
  need buildah "run 'hack/node/build.sh debian' (or apt-get install buildah)"
  mkdir -p "$WORK"
  case "${1:-make}" in
    make)
      check_driver
      local start=$SECONDS
      make_shell_image
      make_buildah_image
      make_tekton_images
      log "images ready in $((SECONDS - start))s:"
      bah images --filter reference='localhost/buildpolicy/*' >&2
      ;;
    tekton) check_driver; make_tekton_images ;;
    list) bah images --filter reference='localhost/buildpolicy/*' ;;
    remove)
      local v; v="$(tekton_version)"
      bah rmi "$BUILDAH_IMAGE" "$SHELL_IMAGE" || true
      for name in $TEKTON_COMMANDS; do bah rmi "$TEKTON_IMAGE_PREFIX-$name:$v" >/dev/null 2>&1 || true; done
      rm -f "$WORK"/.stamp-*
      ;;
    *) die "usage: hack/node/images.sh [make|tekton|tekton-refs|list|remove]" ;;
  esac
}

main "$@"
