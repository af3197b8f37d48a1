#!/usr/bin/env bash
# Starts, on 127.0.0.1 with all state in DIR: notary-signer + notary-server, a
# docker-registry and a containerd 1.6 on a private socket. Pushes two tiny images to the
# registry — REPO:signed (its digest signed with the real notary CLI) and REPO:unsigned —
# and leaves everything running. Writes DIR/env (NAME=VALUE lines); the caller stops the
# servers by the PIDs listed there.
# Usage: tests/containerd/serve.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
# shellcheck source=../notary/lib.sh
. "$here/../notary/lib.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"
notary_up "$dir/notary"
registry_up "$dir"
containerd_up "$dir"

repo=127.0.0.1:$REGISTRY_PORT/demo/app
oci_image "$dir/img-signed" "pullguard demo: signed"
signed_digest=$IMAGE_DIGEST signed_size=$IMAGE_SIZE
push_image "$dir/img-signed" "$repo:signed"
oci_image "$dir/img-unsigned" "pullguard demo: unsigned"
unsigned_digest=$IMAGE_DIGEST
push_image "$dir/img-unsigned" "$repo:unsigned"
oci_image "$dir/img-later" "pullguard demo: pushed later"
push_image "$dir/img-later" "$repo:later"
later_digest=$IMAGE_DIGEST

# Sign the way `docker trust sign` records a tag: in targets, by digest and size.
notary_cli init "$repo" >/dev/null
notary_cli addhash "$repo" signed "$signed_size" --sha256 "${signed_digest#sha256:}" >/dev/null
notary_cli publish "$repo" >/dev/null

{
  echo "NOTARY_URL=https://127.0.0.1:$NOTARY_SERVER_PORT"
  echo "NOTARY_CA=$dir/notary/tls/ca.crt"
  echo "NOTARY_DIR=$dir/notary"
  echo "NOTARY_SERVER_PID=$(cat "$dir/notary/server.pid")"
  echo "NOTARY_SIGNER_PID=$(cat "$dir/notary/signer.pid")"
  echo "REGISTRY_PID=$(cat "$dir/registry.pid")"
  echo "CONTAINERD_PID=$(cat "$dir/containerd.pid")"
  echo "CONTAINERD_SOCKET=$CONTAINERD_SOCKET"
  echo "REPO=$repo"
  echo "SIGNED_DIGEST=$signed_digest"
  echo "UNSIGNED_DIGEST=$unsigned_digest"
  echo "LATER_DIGEST=$later_digest"
} > "$dir/env"
