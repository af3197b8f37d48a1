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
#   noku       CA acme, the signer's name, a certificate whose key usage lacks
#              digitalSignature (notation-go refuses to sign with it: a JWS made by hand)
#   forged     the same hand-made JWS by the good signer (shows the hand-made one is sound)
# and in STAMPED_REPO (127.0.0.1:PORT/notation/stamped), whose trust policy also names the
# timestamp authority store tsa:testtsa (Notation then requires a countersignature):
#   stamped    a signer whose certificate has expired since, with a countersignature of
#              the test timestamp authority (tests/notation/tsa.py, root in tsa:testtsa)
#   badstamp   the same kind of signer, countersigned by another authority (not trusted)
#   nostamp    the valid signer, no countersignature
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
"$peer" gen-leaf "$dir/pki" acme "$dir/pki/noku" "pullguard signer" --key-usage encipher

# Two timestamp authorities (openssl ts behind tests/notation/tsa.py): testtsa is trusted.
tsa_up() { # tsa_up NAME: DIR/tsa-NAME with root.crt; sets TSA_URL
  local d=$dir/tsa-$1 port
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -keyout "$d/root.key" -out "$d/root.crt" -subj "/C=US/O=pullguard tests/CN=$1 root" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$d/tsa.key" -out "$d/tsa.csr" -subj "/C=US/O=pullguard tests/CN=$1" 2>/dev/null
  printf 'extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' > "$d/ext"
  openssl x509 -req -in "$d/tsa.csr" -CA "$d/root.crt" -CAkey "$d/root.key" -CAcreateserial \
    -days 365 -extfile "$d/ext" -out "$d/tsa.crt" 2>/dev/null
  cp "$d/root.crt" "$d/chain.pem"
  echo 01 > "$d/serial"
  printf '[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\nserial = %s/serial\ncrypto_device = builtin\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\naccuracy = secs:1\nordering = no\ntsa_name = no\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n' "$d" > "$d/tsa.cnf"
  port=$(free_port)
  python3 "$here/tsa.py" "$port" "$d" > "$d/log" 2>&1 &
  echo $! > "$d/pid"
  wait_port "$port" "$(cat "$d/pid")" || { cat "$d/log" >&2; return 1; }
  TSA_URL=http://127.0.0.1:$port
}
tsa_up testtsa
good_tsa=$TSA_URL
tsa_up othertsa
bad_tsa=$TSA_URL

declare -A digest size
stamped_repo=$reg/notation/stamped
declare -A where
for name in jws cose unsigned untrusted wrongid expired swapped noku forged notary cosign stamped badstamp nostamp; do
  where[$name]=$repo
  case $name in stamped | badstamp | nostamp) where[$name]=$stamped_repo ;; esac
  oci_image "$dir/img-$name" "pullguard notation test: $name"
  push_image "$dir/img-$name" "${where[$name]}:$name"
  digest[$name]=$IMAGE_DIGEST
  size[$name]=$IMAGE_SIZE
done
sign() { # sign LEAF ENVELOPE NAME [flags]
  local leaf=$1 env=$2 name=$3
  shift 3
  "$peer" sign --key "$dir/pki/$leaf.key" --cert "$dir/pki/$leaf.crt" --envelope "$env" "$@" "${where[$name]}@${digest[$name]}" >/dev/null
}
# The short-lived ones first; the script waits at the end until they have expired. The
# brief signer is made here, just before it signs, so that a busy machine (pushes, the TSAs
# starting) cannot use up its window first (10 s: the stamps, taken within a second or
# two, must fall inside with their 1 s accuracy).
short=$(date -u -d '+10 seconds' +%Y-%m-%dT%H:%M:%SZ)
"$peer" gen-leaf "$dir/pki" acme "$dir/pki/brief" "pullguard signer" --not-after "$short"
sign signer jws expired --expiry 1s
sign brief jws stamped --tsa "$good_tsa" --tsa-root "$dir/tsa-testtsa/root.crt"
sign brief cose badstamp --tsa "$bad_tsa" --tsa-root "$dir/tsa-othertsa/root.crt"
expired_at=$(date -d "$short" +%s)
sign signer jws jws
sign signer cose cose
sign stranger jws untrusted
sign wrongid jws wrongid
sign signer jws nostamp
# notation-go will not sign with that certificate; the envelope is made by hand.
"$peer" forge-jws --key "$dir/pki/noku.key" --cert "$dir/pki/noku.crt" "$repo@${digest[noku]}" >/dev/null
# ... and the same hand-made envelope by the good signer, which must pass (the forge is sound).
"$peer" forge-jws --key "$dir/pki/signer.key" --cert "$dir/pki/signer.crt" "$repo@${digest[forged]}" >/dev/null

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
mkdir -p "$conf/truststore/x509/ca/acme" "$conf/truststore/x509/tsa/testtsa"
cp "$dir/pki/acme.crt" "$conf/truststore/x509/ca/acme/acme.crt"
cp "$dir/tsa-testtsa/root.crt" "$conf/truststore/x509/tsa/testtsa/root.crt"
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
    },
    {
      "name": "stamped",
      "registryScopes": ["$stamped_repo"],
      "signatureVerification": {"level": "strict"},
      "trustStores": ["ca:acme", "tsa:testtsa"],
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
  echo "TSA_PID=$(cat "$dir/tsa-testtsa/pid")"
  echo "OTHER_TSA_PID=$(cat "$dir/tsa-othertsa/pid")"
  echo "REGISTRY=$reg"
  echo "REPO=$repo"
  echo "STAMPED_REPO=$stamped_repo"
  echo "NOTATION_CONFIG=$conf"
  echo "NOTATION_PEER=$peer"
  echo "IDENTITY=$identity"
  echo "COSIGN_KEY=$dir/cosign.pub"
  for name in "${!digest[@]}"; do
    echo "DIGEST_${name^^}=${digest[$name]}"
  done
} > "$dir/env"
