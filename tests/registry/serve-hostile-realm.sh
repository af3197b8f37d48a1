#!/usr/bin/env bash
# A registry whose login challenge points at a token service that should never get the
# node's credentials: a real docker-registry over HTTPS (its own CA) with token auth
# whose realm is plain HTTP (http://127.0.0.1:CAPTURE/token), and the capture service
# behind that realm recording whatever reaches it (tests/registry/capture.py).
# Writes DIR/env (NAME=VALUE); the caller stops the servers by the PIDs listed there.
# Usage: tests/registry/serve-hostile-realm.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
# shellcheck source=../notary/lib.sh
. "$here/../notary/lib.sh"
mkdir -p "$dir"
(
  cd "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=pullguard hostile realm CA" -keyout ca.key -out ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=registry" -keyout registry.key -out registry.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > registry.ext
  openssl x509 -req -in registry.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile registry.ext -out registry.crt 2>/dev/null
)
capture_port=$(free_port)
python3 "$here/capture.py" "$capture_port" "$dir/captured.jsonl" >"$dir/capture.log" 2>&1 &
echo $! > "$dir/capture.pid"
wait_port "$capture_port" "$(cat "$dir/capture.pid")" || { cat "$dir/capture.log" >&2; exit 1; }

port=$(free_port)
mkdir -p "$dir/storage"
cat > "$dir/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $dir/storage}}
http: {addr: 127.0.0.1:$port, tls: {certificate: $dir/registry.crt, key: $dir/registry.key}}
auth:
  token: {realm: "http://127.0.0.1:$capture_port/token", service: registry, issuer: hostile, rootcertbundle: $dir/ca.crt}
YML
docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
echo $! > "$dir/registry.pid"
wait_port "$port" "$(cat "$dir/registry.pid")" || { cat "$dir/registry.log" >&2; exit 1; }

# containerd's layout: hosts.toml naming the registry's CA; a docker config.json with a
# login for it, the secret a hostile realm is after.
mkdir -p "$dir/certs.d/127.0.0.1:$port" "$dir/docker"
printf 'server = "https://127.0.0.1:%s"\nca = "%s/ca.crt"\n' \
  "$port" "$dir" > "$dir/certs.d/127.0.0.1:$port/hosts.toml"
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$port" "$(printf 'ci:node-secret' | base64)" > "$dir/docker/config.json"
# A cosign key for the rule that asks this registry (no signature is ever reached).
openssl ecparam -genkey -name prime256v1 -noout -out "$dir/cosign.key" 2>/dev/null
openssl ec -in "$dir/cosign.key" -pubout -out "$dir/cosign.pub" 2>/dev/null
{
  echo "REGISTRY=127.0.0.1:$port"
  echo "COSIGN_KEY=$dir/cosign.pub"
  echo "CERTS_D=$dir/certs.d"
  echo "DOCKER_CONFIG_FILE=$dir/docker/config.json"
  echo "CAPTURED=$dir/captured.jsonl"
  echo "REGISTRY_PID=$(cat "$dir/registry.pid")"
  echo "CAPTURE_PID=$(cat "$dir/capture.pid")"
} > "$dir/env"
