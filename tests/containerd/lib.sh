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

containerd_addresses() {
  # The [grpc], [ttrpc], [debug] and [metrics] sections for $CONTAINERD_SOCKET.
  printf '[grpc]\n  address = "%s"\n[ttrpc]\n  address = "%s.ttrpc"\n[debug]\n  address = "%s.debug"\n[metrics]\n  address = ""\n' \
    "$CONTAINERD_SOCKET" "$CONTAINERD_SOCKET" "$CONTAINERD_SOCKET"
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
$(containerd_addresses)
TOML
  containerd --config "$d/containerd/config.toml" >>"$d/containerd.log" 2>&1 &
  echo $! > "$d/containerd.pid"
  containerd_wait ctr "$d" containerd.log
}

containerd_wait() {
  # containerd_wait CTR DIR LOG: until the containerd of DIR/containerd.pid answers on
  # $CONTAINERD_SOCKET (10 s), else its log DIR/LOG on stderr and failure.
  local i
  for i in $(seq 1 100); do
    "$1" -a "$CONTAINERD_SOCKET" version >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$2/containerd.pid")" 2>/dev/null || break
    sleep 0.1
  done
  cat "$2/$3" >&2
  return 1
}

containerd2_up() {
  # containerd2_up DIR: containerd 2.x (scripts/lib-tools.sh: $CONTAINERD2, its ctr and
  # shim beside it) with root, state and sockets under DIR/containerd2, CRI on (native
  # snapshotter, registry hosts from DIR/certs.d, host network pods only), and the image
  # verifier and NRI exactly as packaging/containerd/config-2.x.toml ships them, bin_dir
  # moved to DIR/verifiers holding only $VERIFIER (pullguard-verifier) and NRI's socket
  # to DIR/nri.sock. The verifier asks the
  # pullguardd at $PULLGUARD_SOCKET (containerd passes its environment on).
  # $CONTAINERD2_CRI_IMAGES: extra lines for CRI's image section (e.g. use_local_image_pull).
  # $CONTAINERD2_CNI_BIN: CNI plugins' directory (CNI config: DIR/cni).
  # $CONTAINERD2_VERIFIERS: bin_dir elsewhere than DIR/verifiers (tests/k8s keeps it
  # apart from NRI's directory, as on a real node).
  local d=$1 here verifiers=${CONTAINERD2_VERIFIERS:-$1/verifiers}
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  : "${CONTAINERD2:?source scripts/lib-tools.sh and run go_tools_env}" "${PULLGUARD_SOCKET:?}" "${VERIFIER:?}"
  CONTAINERD_SOCKET=$d/containerd2/containerd.sock
  export CONTAINERD_SOCKET
  mkdir -p "$d/containerd2" "$verifiers" "$d/certs.d"
  install -m 755 "$VERIFIER" "$verifiers/pullguard-verifier"
  cat > "$d/containerd2/config.toml" <<TOML
version = 3
root = "$d/containerd2/root"
state = "$d/containerd2/state"
disabled_plugins = ["io.containerd.snapshotter.v1.overlayfs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]
$(containerd_addresses)
[plugins.'io.containerd.transfer.v1.local']
  config_path = "$d/certs.d"
  [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
    platform = "linux/$(go env GOARCH)"
    snapshotter = "native"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"
  ${CONTAINERD2_CRI_IMAGES:-}
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$d/certs.d"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${CONTAINERD2_PAUSE:-registry.invalid/pause:1}"
[plugins.'io.containerd.cri.v1.runtime']
  # Test machines may lack CAP_SYS_RESOURCE (runc then cannot set the pause container's
  # oom_score_adj of -998 and fails with "can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    conf_dir = "$d/cni"
    bin_dirs = ["${CONTAINERD2_CNI_BIN:-/opt/cni/bin}"]
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
TOML
  # The .deb's snippet, its paths moved into DIR (NRI's plugin directories too, so that
  # nothing of the host's is launched).
  # $CONTAINERD2_NRI_OPTIONAL=1 drops required_plugins (bench/nri's baseline).
  local optional=()
  [ "${CONTAINERD2_NRI_OPTIONAL:-}" = 1 ] && optional=(-e '/required_plugins/d')
  sed "${optional[@]}" -e "s|/opt/containerd/image-verifier/bin|$verifiers|" -e "s|/var/run/nri/nri.sock|$d/nri.sock|" \
    -e "s|^\[plugins.\"io.containerd.nri.v1.nri\"\]\$|&\n  plugin_path = \"$d/nri-plugins\"\n  plugin_config_path = \"$d/nri-conf\"|" \
    "$here/../../packaging/containerd/config-2.x.toml" >> "$d/containerd2/config.toml"
  PATH=$(dirname "$CONTAINERD2"):$PATH "$CONTAINERD2" --config "$d/containerd2/config.toml" \
    >>"$d/containerd2.log" 2>&1 &
  echo $! > "$d/containerd.pid"
  containerd_wait "$CTR2" "$d" containerd2.log
}

registry_hosts() {
  # registry_hosts DIR HOST:PORT: containerd's hosts.toml for a plain-HTTP registry.
  mkdir -p "$1/certs.d/$2"
  printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$2" "$2" \
    > "$1/certs.d/$2/hosts.toml"
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
  # oci_image DIR TEXT [CMD...]: a one-layer OCI image layout in DIR whose file /hello
  # contains TEXT (different TEXT, different digest). With CMD, the layer also holds a
  # static busybox at /bin/busybox (Debian's busybox-static) and CMD is the image's
  # command, so that a container of it runs.
  local out=$1 text=$2 tmp cmd='["/hello"]' files=(hello)
  shift 2
  tmp=$(mktemp -d)
  mkdir -p "$out/blobs/sha256" "$tmp/rootfs"
  printf '%s\n' "$text" > "$tmp/rootfs/hello"
  if [ $# -gt 0 ]; then
    mkdir -p "$tmp/rootfs/bin"
    cp /bin/busybox "$tmp/rootfs/bin/busybox"
    files+=(bin)
    cmd=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@")
  fi
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/rootfs" -cf "$tmp/layer.tar" "${files[@]}"
  local diff_id; diff_id=$(sha256sum < "$tmp/layer.tar" | cut -d' ' -f1)
  gzip -n -c "$tmp/layer.tar" > "$tmp/layer.tar.gz"
  local layer; layer=$(sha256sum < "$tmp/layer.tar.gz" | cut -d' ' -f1)
  cp "$tmp/layer.tar.gz" "$out/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":{"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$cmd" "$diff_id" > "$tmp/config.json"
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

oci_index() {
  # oci_index FROM OUT: an OCI layout in OUT whose image is an index (linux/amd64) of the
  # one manifest in layout FROM. Sets INDEX_DIGEST and INDEX_SIZE.
  local from=$1 out=$2 m size
  mkdir -p "$out/blobs/sha256"
  cp "$from"/blobs/sha256/* "$out/blobs/sha256/"
  m=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$from/index.json")
  size=$(stat -c %s "$from/blobs/sha256/${m#sha256:}")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$m" "$size" > "$out/index.blob"
  INDEX_DIGEST=sha256:$(sha256sum < "$out/index.blob" | cut -d' ' -f1)
  INDEX_SIZE=$(stat -c %s "$out/index.blob")
  mv "$out/index.blob" "$out/blobs/sha256/${INDEX_DIGEST#sha256:}"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%d}]}' \
    "$INDEX_DIGEST" "$INDEX_SIZE" > "$out/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
  export INDEX_DIGEST INDEX_SIZE
}

push_image() {
  # push_image LAYOUT REF: copy an OCI layout to the plain-HTTP registry, unchanged.
  skopeo copy --quiet --preserve-digests --multi-arch all --dest-tls-verify=false "oci:$1" "docker://$2"
}
