#!/usr/bin/env bash
# Starts, on 127.0.0.1 with all state in DIR: notary-signer + notary-server and a
# docker-registry. Pushes tiny images to REPO (127.0.0.1:PORT/cosign/app) and signs them
# with the real cosign (scripts/lib-tools.sh builds it) and the real notary CLI:
#   classic      cosign, key A, the classic layout (tag sha256-<hex>.sig)
#   bundle       cosign, key A, a Sigstore bundle attached as a referrer (tag-schema
#                fallback: docker-registry has no referrers API)
#   notary       Notary v1 only
#   both         Notary v1 and cosign (key A, bundle)
#   unsigned     nothing
#   wrongkey     cosign, key B only
#   retagged     unsigned; classic's signature manifest copied to its sha256-<hex>.sig tag
#   tampered     cosign, key A, classic; then its payload replaced (new blob, same
#                signature) as someone with push rights could
#   flooded      cosign, key A, bundle; then 300 SBOM-like referrers of another type
#                put in front of the signature in its referrers index (tests/cosign/flood.py)
#   public-good/NAME  real public-good keyless signatures in the classic layout (no image:
#                only its signature manifest, tests/cosign/push-classic.py)
#   and on a second registry that wants a login (htpasswd, user ci): private:v1, cosign,
#   key A, bundle layout; DIR/docker/config.json holds the login;
#   and on olareg (tests/olareg/peer, OLAREG): the OCI 1.1 referrers API, its answers
#   paged past 4 KiB (20 entries a page): paged, 60 SBOM-like referrers then key A's
#   bundle (on the 4th page); buried, 200 of them then the bundle (the 11th page, past
#   what pullguard reads).
# No transparency log is reachable here: cosign signs with --tlog-upload=false.
# Writes DIR/env (NAME=VALUE); the caller stops the servers by the PIDs listed there.
# Usage: tests/cosign/serve.sh DIR
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
[ -x "$COSIGN" ] || { echo "serve.sh: $COSIGN is missing; scripts/test builds it (or: . scripts/lib-tools.sh; install_go_tools)" >&2; exit 1; }
notary_up "$dir/notary"
registry_up "$dir"
reg=127.0.0.1:$REGISTRY_PORT
repo=$reg/cosign/app

export COSIGN_PASSWORD=pullguard-test
mkdir -p "$dir/keys"
(cd "$dir/keys" && "$COSIGN" generate-key-pair --output-key-prefix a >/dev/null 2>&1 \
  && "$COSIGN" generate-key-pair --output-key-prefix b >/dev/null 2>&1)

# cosign_sign KEY IMAGE@DIGEST [flags]: key-signed, no transparency log, plain HTTP.
cosign_sign() {
  local key=$1 ref=$2
  shift 2
  "$COSIGN" sign --key "$dir/keys/$key.key" --tlog-upload=false --use-signing-config=false \
    --allow-http-registry -y "$@" "$ref" >"$dir/cosign.log" 2>&1 \
    || { cat "$dir/cosign.log" >&2; return 1; }
}

declare -A digest size
for name in classic bundle notary both unsigned wrongkey retagged tampered flooded; do
  oci_image "$dir/img-$name" "pullguard cosign test: $name"
  push_image "$dir/img-$name" "$repo:$name"
  digest[$name]=$IMAGE_DIGEST
  size[$name]=$IMAGE_SIZE
done

cosign_sign a "$repo@${digest[classic]}" --new-bundle-format=false
cosign_sign a "$repo@${digest[bundle]}"
cosign_sign a "$repo@${digest[both]}"
cosign_sign b "$repo@${digest[wrongkey]}"
cosign_sign a "$repo@${digest[tampered]}" --new-bundle-format=false
cosign_sign a "$repo@${digest[flooded]}"

api=http://$reg/v2/cosign/app
accept='Accept: application/vnd.oci.image.manifest.v1+json'
sig_tag() { local d=$1; echo "sha256-${d#sha256:}.sig"; }

# retagged: the classic image's signature manifest, byte for byte, under the other tag.
curl -sf -H "$accept" "$api/manifests/$(sig_tag "${digest[classic]}")" > "$dir/classic-sig.json"
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary @"$dir/classic-sig.json" "$api/manifests/$(sig_tag "${digest[retagged]}")" >/dev/null

# tampered: the payload rewritten (same digest, "optional" changed), pushed as a new blob,
# the manifest pointing at it with the original signature.
curl -sf -H "$accept" "$api/manifests/$(sig_tag "${digest[tampered]}")" > "$dir/tampered-sig.json"
python3 - "$dir" "$api" <<'PY'
import hashlib, json, sys, urllib.request
d, api = sys.argv[1], sys.argv[2]
m = json.load(open(f"{d}/tampered-sig.json"))
layer = m["layers"][0]
payload = urllib.request.urlopen(f"{api}/blobs/{layer['digest']}").read()
changed = payload.replace(b'"optional":null', b'"optional":{"by":"someone else"}')
assert changed != payload, payload
dg = "sha256:" + hashlib.sha256(changed).hexdigest()
start = urllib.request.urlopen(urllib.request.Request(f"{api}/blobs/uploads/", method="POST"))
loc = start.headers["Location"]
loc = loc if loc.startswith("http") else api.split("/v2/")[0] + loc
sep = "&" if "?" in loc else "?"
urllib.request.urlopen(urllib.request.Request(f"{loc}{sep}digest={dg}", data=changed, method="PUT",
                       headers={"Content-Type": "application/octet-stream"}))
layer["digest"], layer["size"] = dg, len(changed)
body = json.dumps(m).encode()
open(f"{d}/tampered-sig.new.json", "wb").write(body)
PY
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary @"$dir/tampered-sig.new.json" "$api/manifests/$(sig_tag "${digest[tampered]}")" >/dev/null

python3 "$here/flood.py" "$api" "${digest[flooded]}" 300

# Real keyless signatures in the classic layout, made against Sigstore's public-good
# instance (crates/sigstore-core/tests/fixtures/public-good-classic), each under
# public-good/NAME: PUBLIC_GOOD_NAME=REPO@DIGEST.
public_good=()
for f in "$here"/../../crates/sigstore-core/tests/fixtures/public-good-classic/*/; do
  name=$(basename "$f")
  d=$(python3 "$here/push-classic.py" "http://$reg/v2/public-good/$name" "$f")
  public_good+=("PUBLIC_GOOD_$(echo "$name" | tr 'a-z-' 'A-Z_')=$reg/public-good/$name@$d")
done

# A registry that wants a login. bcrypt from Python's crypt (libxcrypt), as htpasswd makes.
auth_port=$(free_port)
python3 -W ignore -c 'import crypt; print("ci:" + crypt.crypt("pullguard-secret", crypt.mksalt(crypt.METHOD_BLOWFISH)))' > "$dir/htpasswd"
mkdir -p "$dir/auth-registry"
cat > "$dir/auth-registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $dir/auth-registry}}
http: {addr: 127.0.0.1:$auth_port}
auth: {htpasswd: {realm: pullguard-test, path: $dir/htpasswd}}
YML
docker-registry serve "$dir/auth-registry.yml" >"$dir/auth-registry.log" 2>&1 &
echo $! > "$dir/auth-registry.pid"
wait_port "$auth_port" "$(cat "$dir/auth-registry.pid")" || { cat "$dir/auth-registry.log" >&2; exit 1; }
private=127.0.0.1:$auth_port/team/private
mkdir -p "$dir/docker"
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$auth_port" "$(printf 'ci:pullguard-secret' | base64)" > "$dir/docker/config.json"
oci_image "$dir/img-private" "pullguard cosign test: private"
skopeo copy --quiet --preserve-digests --dest-tls-verify=false --dest-creds ci:pullguard-secret \
  "oci:$dir/img-private" "docker://$private:v1"
private_digest=$IMAGE_DIGEST
DOCKER_CONFIG=$dir/docker cosign_sign a "$private@$private_digest"

# olareg: a registry that keeps referrers itself (no tag schema) and pages them.
[ -x "$OLAREG_PEER" ] || { echo "serve.sh: $OLAREG_PEER is missing; scripts/test builds it (or: . scripts/lib-tools.sh; install_go_tools)" >&2; exit 1; }
"$OLAREG_PEER" --port-file "$dir/olareg.port" --referrers-limit 4096 >"$dir/olareg.log" 2>&1 &
echo $! > "$dir/olareg.pid"
for _ in $(seq 100); do [ -s "$dir/olareg.port" ] && break; sleep 0.1; done
[ -s "$dir/olareg.port" ] || { cat "$dir/olareg.log" >&2; exit 1; }
olareg=127.0.0.1:$(cat "$dir/olareg.port")
for name in paged buried; do
  oci_image "$dir/img-$name" "pullguard cosign test: $name"
  push_image "$dir/img-$name" "$olareg/cosign/app:$name"
  digest[$name]=$IMAGE_DIGEST
done
python3 "$here/flood.py" "http://$olareg/v2/cosign/app" "${digest[paged]}" 60 --referrers-api
python3 "$here/flood.py" "http://$olareg/v2/cosign/app" "${digest[buried]}" 200 --referrers-api
cosign_sign a "$olareg/cosign/app@${digest[paged]}"
cosign_sign a "$olareg/cosign/app@${digest[buried]}"

# Notary v1, the way `docker trust sign` records a tag.
notary_cli init "$repo" >/dev/null
notary_cli addhash "$repo" notary "${size[notary]}" --sha256 "${digest[notary]#sha256:}" >/dev/null
notary_cli addhash "$repo" both "${size[both]}" --sha256 "${digest[both]#sha256:}" >/dev/null
notary_cli publish "$repo" >/dev/null

{
  echo "NOTARY_URL=https://127.0.0.1:$NOTARY_SERVER_PORT"
  echo "NOTARY_CA=$dir/notary/tls/ca.crt"
  echo "NOTARY_SERVER_PID=$(cat "$dir/notary/server.pid")"
  echo "NOTARY_SIGNER_PID=$(cat "$dir/notary/signer.pid")"
  echo "REGISTRY_PID=$(cat "$dir/registry.pid")"
  echo "AUTH_REGISTRY_PID=$(cat "$dir/auth-registry.pid")"
  echo "OLAREG_PID=$(cat "$dir/olareg.pid")"
  echo "OLAREG=$olareg"
  echo "AUTH_REGISTRY=127.0.0.1:$auth_port"
  echo "PRIVATE=$private"
  printf '%s\n' "${public_good[@]}"
  echo "PRIVATE_DIGEST=$private_digest"
  echo "DOCKER_CONFIG_FILE=$dir/docker/config.json"
  echo "REGISTRY=$reg"
  echo "REPO=$repo"
  echo "KEY_A=$dir/keys/a.pub"
  echo "KEY_B=$dir/keys/b.pub"
  echo "COSIGN=$COSIGN"
  for name in "${!digest[@]}"; do
    echo "DIGEST_${name^^}=${digest[$name]}"
  done
} > "$dir/env"
