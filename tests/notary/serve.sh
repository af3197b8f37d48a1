#!/usr/bin/env bash
# Starts a real notary-signer + notary-server on 127.0.0.1 with state in DIR, signs a
# repository with the real notary CLI, and leaves both servers running for a test.
# Writes DIR/env (shell assignments: NOTARY_URL, NOTARY_CA, NOTARY_SERVER_PID,
# NOTARY_SIGNER_PID, GUN, digests) and exits. The test stops the servers by PID.
# Usage: tests/notary/serve.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
# shellcheck source=lib.sh
. "$here/lib.sh"
notary_up "$dir"

gun=registry.test/pullguard/app
notary_cli init "$gun" >/dev/null
sha_of() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
notary_cli addhash "$gun" v1 2 --sha256 "$(sha_of v1)" >/dev/null
notary_cli publish "$gun" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/CN=releases" -keyout "$dir/releases.key" -out "$dir/releases.crt" 2>/dev/null
notary_cli key import "$dir/releases.key" --role targets/releases >/dev/null
notary_cli delegation add "$gun" targets/releases "$dir/releases.crt" --all-paths >/dev/null
notary_cli publish "$gun" >/dev/null
notary_cli addhash "$gun" v2 2 --sha256 "$(sha_of v2)" --roles targets/releases >/dev/null
notary_cli publish "$gun" >/dev/null

{
  echo "NOTARY_URL=https://127.0.0.1:$NOTARY_SERVER_PORT"
  echo "NOTARY_CA=$dir/tls/ca.crt"
  echo "NOTARY_SERVER_PID=$(cat "$dir/server.pid")"
  echo "NOTARY_SIGNER_PID=$(cat "$dir/signer.pid")"
  echo "NOTARY_SERVER_PORT=$NOTARY_SERVER_PORT"
  echo "GUN=$gun"
  echo "DIGEST_V1=sha256:$(sha_of v1)"
  echo "DIGEST_V2=sha256:$(sha_of v2)"
} > "$dir/env"
