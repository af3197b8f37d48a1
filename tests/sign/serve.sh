#!/usr/bin/env bash
# Starts, on 127.0.0.1 with all state in DIR: notary-signer + notary-server and a
# docker-registry. Initialises REPO (127.0.0.1:PORT/team/app) with the real notary CLI,
# with a targets/releases delegation and the snapshot key held by the client (notary's
# default), and pushes three tiny images: v1, v2 and unsigned — none of them signed —
# and FRESH:v1, a repository the notary-server knows nothing about.
# Writes DIR/env (NAME=VALUE lines); the caller stops the servers by the PIDs listed.
# Usage: tests/sign/serve.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
# shellcheck source=../notary/lib.sh
. "$here/../notary/lib.sh"
# shellcheck source=../containerd/lib.sh
. "$here/../containerd/lib.sh"
notary_up "$dir/notary"
registry_up "$dir"

repo=127.0.0.1:$REGISTRY_PORT/team/app
declare -A digest
for tag in v1 v2 unsigned; do
  oci_image "$dir/img-$tag" "pullguard sign test: $tag"
  push_image "$dir/img-$tag" "$repo:$tag"
  digest[$tag]=$IMAGE_DIGEST
done

# A repository with no trust data at all, for `pullguard sign` to initialise.
oci_image "$dir/img-fresh" "pullguard sign test: a new repository"
push_image "$dir/img-fresh" "127.0.0.1:$REGISTRY_PORT/team/fresh:v1"
digest[fresh]=$IMAGE_DIGEST

notary_cli init "$repo" >/dev/null
notary_cli publish "$repo" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/CN=releases" -keyout "$dir/releases.key" -out "$dir/releases.crt" 2>/dev/null
notary_cli key import "$dir/releases.key" --role targets/releases >/dev/null
notary_cli delegation add "$repo" targets/releases "$dir/releases.crt" --all-paths >/dev/null
notary_cli publish "$repo" >/dev/null

{
  echo "NOTARY_URL=https://127.0.0.1:$NOTARY_SERVER_PORT"
  echo "NOTARY_CA=$dir/notary/tls/ca.crt"
  echo "NOTARY_DIR=$dir/notary"
  echo "NOTARY_SERVER_PID=$(cat "$dir/notary/server.pid")"
  echo "NOTARY_SIGNER_PID=$(cat "$dir/notary/signer.pid")"
  echo "REGISTRY_PID=$(cat "$dir/registry.pid")"
  echo "REGISTRY=127.0.0.1:$REGISTRY_PORT"
  echo "REPO=$repo"
  echo "DIGEST_V1=${digest[v1]}"
  echo "DIGEST_V2=${digest[v2]}"
  echo "DIGEST_UNSIGNED=${digest[unsigned]}"
  echo "FRESH=127.0.0.1:$REGISTRY_PORT/team/fresh"
  echo "DIGEST_FRESH=${digest[fresh]}"
} > "$dir/env"
