#!/usr/bin/env bash
# Shared helpers for real-component tests and the demo: a docker-registry and a
# containerd 1.6 (Debian packages) on 127.0.0.1 / a private socket, state in a temp dir,
# tiny OCI images built by hand and pushed with skopeo. Stopped by PID.
# Source after tests/notary/lib.sh (for free_port and wait_port).
set -euo pipefail

registry_up() {
  # registry_up DIR: a docker-registry on 127.0.0.1:$REGISTRY_PORT, storage in DIR/registry.
  local d=$1
  REGISTRY_PORT=${REGISTRY_PORT:-$(free_port)}
  export REGISTRY_PORT
  mkdir -p "$d/registry"
  cat > "$d/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $d/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$REGISTRY_PORT}
YML
  docker-registry serve "$d/registry.yml" >"$d/registry.log" 2>&1 &
  echo $! > "$d/registry.pid"
  wait_port "$REGISTRY_PORT" "$(cat "$d/registry.pid")" || { cat "$d/registry.log" >&2; return 1; }
}

containerd_up() {
  # containerd_up DIR: containerd (root, native snapshotter, CRI off) with root, state and
  # socket under DIR; never the host's /run/containerd. Waits for the socket to answer.
  local d=$1
  CONTAINERD_SOCKET=$d/containerd/containerd.sock
  export CONTAINERD_SOCKET
  mkdir -p "$d/containerd"
  cat > "$d/containerd/config.toml" <<TOML
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CONTAINERD_SOCKET"
[ttrpc]
  address = "$CONTAINERD_SOCKET.ttrpc"
[debug]
  address = "$CONTAINERD_SOCKET.debug"
[metrics]
  address = ""
TOML
  containerd --config "$d/containerd/config.toml" >>"$d/containerd.log" 2>&1 &
  echo $! > "$d/containerd.pid"
  local i
  for i in $(seq 1 100); do
    ctr -a "$CONTAINERD_SOCKET" version >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$d/containerd.pid")" 2>/dev/null || break
    sleep 0.1
  done
  cat "$d/containerd.log" >&2
  return 1
}

ctr_() {
  # ctr against the private containerd; default namespace unless -n is given.
  ctr -a "$CONTAINERD_SOCKET" "$@"
}

ctr_pull() {
  # ctr_pull REF [NAMESPACE]: a pull through containerd's client-side (local) path.
  ctr -a "$CONTAINERD_SOCKET" -n "${2:-default}" images pull --plain-http --snapshotter native "$1"
}

oci_image() {
  # oci_image DIR TEXT: a one-layer OCI image layout in DIR whose only file is /hello
  # containing TEXT (different TEXT, different digest).
  local out=$1 text=$2 tmp
  tmp=$(mktemp -d)
  mkdir -p "$out/blobs/sha256" "$tmp/rootfs"
  printf '%s\n' "$text" > "$tmp/rootfs/hello"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/rootfs" -cf "$tmp/layer.tar" hello
  local diff_id; diff_id=$(sha256sum < "$tmp/layer.tar" | cut -d' ' -f1)
  gzip -n -c "$tmp/layer.tar" > "$tmp/layer.tar.gz"
  local layer; layer=$(sha256sum < "$tmp/layer.tar.gz" | cut -d' ' -f1)
  cp "$tmp/layer.tar.gz" "$out/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diff_id" > "$tmp/config.json"
  local config; config=$(sha256sum < "$tmp/config.json" | cut -d' ' -f1)
  cp "$tmp/config.json" "$out/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
    "$config" "$(stat -c %s "$tmp/config.json")" "$layer" "$(stat -c %s "$tmp/layer.tar.gz")" > "$tmp/manifest.json"
  local manifest; manifest=$(sha256sum < "$tmp/manifest.json" | cut -d' ' -f1)
  cp "$tmp/manifest.json" "$out/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d}]}' \
    "$manifest" "$(stat -c %s "$tmp/manifest.json")" > "$out/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
  rm -rf "$tmp"
  # The manifest is pushed byte for byte, so its digest and size are what the registry
  # serves and what containerd resolves.
  IMAGE_DIGEST=sha256:$manifest
  IMAGE_SIZE=$(stat -c %s "$out/blobs/sha256/$manifest")
  export IMAGE_DIGEST IMAGE_SIZE
}

push_image() {
  # push_image LAYOUT REF: copy an OCI layout to the plain-HTTP registry, unchanged.
  skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$1" "docker://$2"
}
