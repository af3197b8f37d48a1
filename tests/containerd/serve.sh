#!/usr/bin/env bash
# Starts, on 127.0.0.1 with all state in DIR: notary-signer + notary-server, a
# docker-registry and a containerd on a private socket — Debian's 1.6, or with
# CONTAINERD_FLAVOR=2 the pinned containerd 2.x of scripts/lib-tools.sh with CRI, NRI and
# the image verifier (see containerd2_up in lib.sh for the variables it needs). Pushes
# tiny images to the registry — REPO:signed (its digest signed with the real notary CLI),
# REPO:unsigned, REPO:later, REPO:index (an index of the signed manifest, signed) and
# REPO:index-unsigned (an index of the unsigned one) — and leaves everything running. Writes DIR/env (NAME=VALUE lines); the caller stops the
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
if [ "${CONTAINERD_FLAVOR:-1}" = 2 ]; then
  # shellcheck source=../../scripts/lib-tools.sh
  . "$here/../../scripts/lib-tools.sh"
  go_tools_env
  for t in "$CONTAINERD2" "$CTR2" "$CRICTL"; do
    [ -x "$t" ] || { echo "serve.sh: $t is missing; scripts/test builds it (or: . scripts/lib-tools.sh; install_go_tools)" >&2; exit 1; }
  done
  registry_hosts "$dir" "127.0.0.1:$REGISTRY_PORT"
  containerd2_up "$dir"
  ctr_bin=$CTR2
else
  containerd_up "$dir"
  ctr_bin=$(command -v ctr)
fi

repo=127.0.0.1:$REGISTRY_PORT/demo/app
# On 2.x the images run (busybox), for the NRI tests' pods; PAUSE_ARCHIVE holds a pause
# image named $PAUSE_IMAGE, the sandbox image of containerd2_up, for `ctr -n k8s.io
# images import`.
run=()
if [ "${CONTAINERD_FLAVOR:-1}" = 2 ]; then
  run=(/bin/busybox sleep 3600)
  oci_image "$dir/img-pause" "pullguard test pause" /bin/busybox sleep 2147483647
  skopeo copy --quiet "oci:$dir/img-pause" "oci-archive:$dir/pause.tar:registry.invalid/pause:1"
fi
oci_image "$dir/img-signed" "pullguard demo: signed" "${run[@]}"
signed_digest=$IMAGE_DIGEST signed_size=$IMAGE_SIZE
push_image "$dir/img-signed" "$repo:signed"
# The signed image's layers under another config (an environment variable added): the
# same root filesystem, another image. Only an OCI layout (the NRI tests import it).
python3 - "$dir/img-signed" "$dir/img-reconfigured" <<'PY'
import hashlib, json, os, shutil, sys
src, out = sys.argv[1], sys.argv[2]
shutil.copytree(src, out)
blob = lambda d: os.path.join(out, "blobs", "sha256", d.split(":", 1)[1])
def put(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    open(blob(d), "wb").write(data)
    return d, len(data)
index = json.load(open(os.path.join(out, "index.json")))
m = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(m["config"]["digest"])))
config["config"]["Env"] = ["PULLGUARD_TEST=reconfigured"]
m["config"]["digest"], m["config"]["size"] = put(json.dumps(config).encode())
index["manifests"][0]["digest"], index["manifests"][0]["size"] = put(json.dumps(m).encode())
json.dump(index, open(os.path.join(out, "index.json"), "w"))
PY
oci_image "$dir/img-unsigned" "pullguard demo: unsigned" "${run[@]}"
unsigned_digest=$IMAGE_DIGEST
push_image "$dir/img-unsigned" "$repo:unsigned"
oci_image "$dir/img-later" "pullguard demo: pushed later"
push_image "$dir/img-later" "$repo:later"
later_digest=$IMAGE_DIGEST
oci_index "$dir/img-signed" "$dir/idx-signed"
index_digest=$INDEX_DIGEST index_size=$INDEX_SIZE
push_image "$dir/idx-signed" "$repo:index"
oci_index "$dir/img-unsigned" "$dir/idx-unsigned"
index_unsigned_digest=$INDEX_DIGEST
push_image "$dir/idx-unsigned" "$repo:index-unsigned"

# Sign the way `docker trust sign` records a tag: in targets, by digest and size.
notary_cli init "$repo" >/dev/null
notary_cli addhash "$repo" signed "$signed_size" --sha256 "${signed_digest#sha256:}" >/dev/null
notary_cli addhash "$repo" index "$index_size" --sha256 "${index_digest#sha256:}" >/dev/null
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
  echo "SIGNED_SIZE=$signed_size"
  echo "UNSIGNED_DIGEST=$unsigned_digest"
  echo "LATER_DIGEST=$later_digest"
  echo "INDEX_DIGEST=$index_digest"
  echo "INDEX_UNSIGNED_DIGEST=$index_unsigned_digest"
  echo "CTR=$ctr_bin"
  echo "CONTAINERD_FLAVOR=${CONTAINERD_FLAVOR:-1}"
  echo "CRICTL=${CRICTL:-}"
  echo "PULLGUARD_SOCKET=${PULLGUARD_SOCKET:-}"
  echo "VERIFIER=${VERIFIER:-}"
  echo "CONTAINERD2_CRI_IMAGES=${CONTAINERD2_CRI_IMAGES:-}"
  echo "PAUSE_ARCHIVE=$dir/pause.tar"
  echo "PAUSE_IMAGE=registry.invalid/pause:1"
  echo "NRI_SOCKET=$dir/nri.sock"
} > "$dir/env"
