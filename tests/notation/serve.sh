#!/usr/bin/env bash
# Starts, on 127.0.0.1 with all state in DIR: notary-signer + notary-server and a
# docker-registry. Pushes tiny images to REPO (127.0.0.1:PORT/notation/app) and signs
# them with the Notary Project's notation-go (tests/notation/peer; scripts/lib-tools.sh
# builds it), referrers through the tag schema (docker-registry has no referrers API):
#   jws        CA acme, signer "pullguard signer", JWS envelope
#   cose       the same signer, COSE envelope
#   unsigned   nothing
#   untrusted  a signer of the same name under CA other (not in the trust store)
#   wrongid    CA acme, signer "someone else"
#   expired    CA acme, the signer, --expiry 1s (expired when the tests run)
#   swapped    unsigned; jws's signature index copied to its sha256-<hex> tag
#   notary     Notary v1 only (the real notary CLI)
#   cosign     cosign only (key DIR/cosign.pub, bundle layout, no transparency log)
# DIR/notation-config holds trustpolicy.json and truststore/x509/ca/acme/ as Notation keeps
# them; the same truststore directory serves pullguardd's keys_dir/notation/.
# Writes DIR/env (NAME=VALUE); the caller stops the servers by the PIDs listed there.
# Usage: tests/notation/serve.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
# shellcheck source=../notary/lib.sh
. "$here/../notary/lib.sh"
# shellcheck source=../containerd/lib.sh
. "$here/../containerd/lib.sh"
# shellcheck source=../../scripts/lib-tools.sh
. "$here/../../scripts/lib-tools.sh"
go_tools_env
for t in "$NOTATION_PEER" "$COSIGN"; do
  [ -x "$t" ] || { echo "serve.sh: $t is missing; scripts/test builds it (or: . scripts/lib-tools.sh; install_go_tools)" >&2; exit 1; }
done
notary_up "$dir/notary"
registry_up "$dir"
reg=127.0.0.1:$REGISTRY_PORT
repo=$reg/notation/app
peer=$NOTATION_PEER

mkdir -p "$dir/pki"
"$peer" gen-ca "$dir/pki" acme
"$peer" gen-ca "$dir/pki" other
"$peer" gen-leaf "$dir/pki" acme "$dir/pki/signer" "pullguard signer"
"$peer" gen-leaf "$dir/pki" other "$dir/pki/stranger" "pullguard signer"
"$peer" gen-leaf "$dir/pki" acme "$dir/pki/wrongid" "someone else"

declare -A digest size
for name in jws cose unsigned untrusted wrongid expired swapped notary cosign; do
  oci_image "$dir/img-$name" "pullguard notation test: $name"
  push_image "$dir/img-$name" "$repo:$name"
  digest[$name]=$IMAGE_DIGEST
  size[$name]=$IMAGE_SIZE
done
sign() { # sign LEAF ENVELOPE NAME [flags]
  local leaf=$1 env=$2 name=$3
  shift 3
  "$peer" sign --key "$dir/pki/$leaf.key" --cert "$dir/pki/$leaf.crt" --envelope "$env" "$@" "$repo@${digest[$name]}" >/dev/null
}
# The expired one first; the script waits at the end until its second has passed.
sign signer jws expired --expiry 1s
expired_at=$(( $(date +%s) + 1 ))
sign signer jws jws
sign signer cose cose
sign stranger jws untrusted
sign wrongid jws wrongid

# swapped: jws's referrers index (tag schema), byte for byte, under swapped's tag.
api=http://$reg/v2/notation/app
idx='Accept: application/vnd.oci.image.index.v1+json'
curl -sf -H "$idx" "$api/manifests/sha256-${digest[jws]#sha256:}" > "$dir/jws-index.json"
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
  --data-binary @"$dir/jws-index.json" "$api/manifests/sha256-${digest[swapped]#sha256:}" >/dev/null

notary_cli init "$repo" >/dev/null
notary_cli addhash "$repo" notary "${size[notary]}" --sha256 "${digest[notary]#sha256:}" >/dev/null
notary_cli publish "$repo" >/dev/null

export COSIGN_PASSWORD=pullguard-test
(cd "$dir" && "$COSIGN" generate-key-pair >/dev/null 2>&1)
"$COSIGN" sign --key "$dir/cosign.key" --tlog-upload=false --use-signing-config=false \
  --allow-http-registry -y "$repo@${digest[cosign]}" >"$dir/cosign.log" 2>&1 || { cat "$dir/cosign.log" >&2; exit 1; }

# Notation's own configuration: the trust store and the trust policy for REPO.
conf=$dir/notation-config
mkdir -p "$conf/truststore/x509/ca/acme"
cp "$dir/pki/acme.crt" "$conf/truststore/x509/ca/acme/acme.crt"
identity="x509.subject: C=US, ST=WA, O=pullguard tests, CN=pullguard signer"
cat > "$conf/trustpolicy.json" <<JSON
{
  "version": "1.0",
  "trustPolicies": [
    {
      "name": "app",
      "registryScopes": ["$repo"],
      "signatureVerification": {"level": "strict"},
      "trustStores": ["ca:acme"],
      "trustedIdentities": ["$identity"]
    }
  ]
}
JSON

# Signing times are whole seconds: wait until the expiry is surely past.
while [ "$(date +%s)" -le "$(( expired_at + 1 ))" ]; do sleep 0.2; done

{
  echo "NOTARY_URL=https://127.0.0.1:$NOTARY_SERVER_PORT"
  echo "NOTARY_CA=$dir/notary/tls/ca.crt"
  echo "NOTARY_SERVER_PID=$(cat "$dir/notary/server.pid")"
  echo "NOTARY_SIGNER_PID=$(cat "$dir/notary/signer.pid")"
  echo "REGISTRY_PID=$(cat "$dir/registry.pid")"
  echo "REGISTRY=$reg"
  echo "REPO=$repo"
  echo "NOTATION_CONFIG=$conf"
  echo "NOTATION_PEER=$peer"
  echo "IDENTITY=$identity"
  echo "COSIGN_KEY=$dir/cosign.pub"
  for name in "${!digest[@]}"; do
    echo "DIGEST_${name^^}=${digest[$name]}"
  done
} > "$dir/env"
