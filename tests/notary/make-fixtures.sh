#!/usr/bin/env bash
# Regenerates tests/fixtures/notary-real/ from a real notary-signer + notary-server,
# signed with the real `notary` CLI. Usage: tests/notary/make-fixtures.sh [OUT_DIR]
# Every step is a command an operator would type; what each fixture must verify to is
# written to OUT_DIR/expected.json by asking the real client (`notary lookup`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../fixtures/notary-real}
# shellcheck source=lib.sh
. "$here/lib.sh"

work=$(mktemp -d /tmp/pullguard-notary.XXXXXX)
trap 'notary_down; rm -rf "$work"' EXIT
notary_up "$work"

gun=registry.test/pullguard/app
# Manifests stand in for image manifests: the targets carry their digest and size,
# exactly as `docker trust sign` records an image.
manifest() { printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":"%s"}' "$1" > "$work/$1.json"; }
addhash() { # addhash TAG [--roles ROLE]
  local tag=$1; shift
  manifest "$tag"
  local size sha
  size=$(stat -c %s "$work/$tag.json")
  sha=$(sha256sum "$work/$tag.json" | cut -d' ' -f1)
  notary_cli addhash "$gun" "$tag" "$size" --sha256 "$sha" "$@" >/dev/null
  echo "$tag $sha $size" >> "$work/tags.txt"
}
delegation_key() { # delegation_key NAME -> $work/NAME.crt, private key imported for ROLE
  local name=$1 role=$2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=$name" -keyout "$work/$name.key" -out "$work/$name.crt" 2>/dev/null
  notary_cli key import "$work/$name.key" --role "$role" >/dev/null
}

echo "== init $gun"
notary_cli init "$gun"
addhash v1
# A target larger than 10^6 and 2^32 bytes: lengths must survive canonicalisation as
# integers (Go's float formatting would write 1.23456789012e+11).
big_sha=$(printf 'big' | sha256sum | cut -d' ' -f1)
notary_cli addhash "$gun" big 123456789012 --sha256 "$big_sha" >/dev/null
echo "big $big_sha 123456789012" >> "$work/tags.txt"
notary_cli publish "$gun" >/dev/null

echo "== targets/releases delegation (own ECDSA key), signs v2"
delegation_key releases targets/releases
notary_cli delegation add "$gun" targets/releases "$work/releases.crt" --all-paths >/dev/null
notary_cli publish "$gun" >/dev/null
addhash v2 --roles targets/releases
notary_cli publish "$gun" >/dev/null

# The repository as it was now, for rollback tests: a node that saw the final state
# must refuse this older one.
mkdir -p "$work/earlier/targets"
for f in root.json timestamp.json snapshot.json targets.json targets/releases.json; do
  notary_fetch "$gun" "$f" "$work/earlier/$f"
done

echo "== targets/qa delegation, signs qa-only (not trusted under Docker semantics)"
delegation_key qa targets/qa
notary_cli delegation add "$gun" targets/qa "$work/qa.crt" --all-paths >/dev/null
notary_cli publish "$gun" >/dev/null
addhash qa-only --roles targets/qa
notary_cli publish "$gun" >/dev/null

echo "== rotate snapshot key to the server"
notary_cli key rotate "$gun" snapshot -r >/dev/null

echo "== v3 in targets/releases after the snapshot rotation"
addhash v3 --roles targets/releases
notary_cli publish "$gun" >/dev/null

echo "== rotate the root key (new root cross-signed by the old one)"
# The CLI asks for confirmation, and exits 0 when it aborts: answer, then check.
echo yes | notary_cli key rotate "$gun" root >/dev/null
notary_fetch "$gun" 3.root.json "$work/3.root.json" || { echo "root rotation did not publish 3.root.json" >&2; exit 1; }

echo "== second repository: root certificate issued by our own CA (for CA pinning)"
cagun=registry.test/pullguard/ca-pinned
(
  cd "$work"
  for ca in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=pullguard test $ca" -keyout "$ca.key" -out "$ca.crt" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  done
  # Same subject name as the real CA, another key: only the signature check can tell.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=pullguard test ca" -keyout impostor-ca.key -out impostor-ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out caroot.ec
  # notary only imports encrypted root keys, PBKDF2 with its default PRF (HMAC-SHA1).
  openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA1 -passout "pass:$NOTARY_ROOT_PASSPHRASE" \
    -in caroot.ec -out caroot.key
  openssl req -new -key caroot.ec -subj "/CN=${cagun//\//\\/}" -out caroot.csr
  openssl x509 -req -in caroot.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out caroot.crt 2>/dev/null
)
notary_cli init "$cagun" --rootkey "$work/caroot.key" --rootcert "$work/caroot.crt" >/dev/null
ca_sha=$(printf 'ca-v1' | sha256sum | cut -d' ' -f1)
notary_cli addhash "$cagun" v1 5 --sha256 "$ca_sha" >/dev/null
notary_cli publish "$cagun" >/dev/null

rm -rf "$out"
mkdir -p "$out/metadata/targets" "$out/ca-pinned/metadata"
for f in root.json timestamp.json snapshot.json targets.json; do
  notary_fetch "$cagun" "$f" "$out/ca-pinned/metadata/$f"
done
cp "$work/ca.crt" "$work/other-ca.crt" "$work/impostor-ca.crt" "$out/ca-pinned/"
cp -r "$work/earlier" "$out/earlier"
# The CLI's encrypted private keys (notary 0.7 format), for import tests. Throwaway keys;
# passphrases are in tests/notary/lib.sh.
mkdir -p "$out/private"
cp "$work"/trust/private/*.key "$out/private/"
for f in root.json 1.root.json 2.root.json 3.root.json timestamp.json snapshot.json targets.json \
         targets/releases.json targets/qa.json; do
  notary_fetch "$gun" "$f" "$out/metadata/$f"
done
date -u +%Y-%m-%dT%H:%M:%SZ > "$out/made-at"

# What the real client says, recorded beside the data.
{
  echo "{"
  echo "  \"gun\": \"$gun\","
  echo "  \"made_at\": \"$(cat "$out/made-at")\","
  echo "  \"tags\": ["
  first=1
  while read -r tag sha size; do
    lookup=$(notary_cli lookup "$gun" "$tag" 2>&1 || true)
    [ $first = 1 ] || echo ","
    first=0
    printf '    {"tag": "%s", "sha256": "%s", "size": %s, "notary_lookup": "%s"}' \
      "$tag" "$sha" "$size" "$(echo "$lookup" | tr -s ' ' | tr -d '"\n')"
  done < "$work/tags.txt"
  echo
  echo "  ]"
  echo "}"
} > "$out/expected.json"
notary_cli list "$gun" > "$out/notary-list.txt" 2>&1 || true
echo "fixtures written to $out"
