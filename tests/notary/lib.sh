#!/usr/bin/env bash
# Shared helpers: start a real notary-signer + notary-server on 127.0.0.1 with their
# state in a temp dir, drive the real `notary` CLI against them, stop them by PID.
# Source this file; call notary_up DIR, then notary_cli ..., then notary_down.
set -euo pipefail

PULLGUARD_TESTS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)

free_port() {
  # A port nobody listens on now and no parallel test claimed (see the script for why).
  python3 "$PULLGUARD_TESTS_LIB/free_port.py"
}

# Passphrases for the throwaway keys the CLI creates. Test material only.
export NOTARY_ROOT_PASSPHRASE=pullguard-test-root
export NOTARY_TARGETS_PASSPHRASE=pullguard-test-targets
export NOTARY_SNAPSHOT_PASSPHRASE=pullguard-test-snapshot
export NOTARY_DELEGATION_PASSPHRASE=pullguard-test-delegation

notary_make_ca() {
  # A private CA, a server cert for notary-server (127.0.0.1) and one for notary-signer.
  local d=$1
  mkdir -p "$d/tls"
  (
    cd "$d/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=pullguard test CA" -keyout ca.key -out ca.crt \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    for name in notary-server notary-signer; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$name" > "$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    done
  )
}

wait_port() {
  # wait_port PORT PID: until something accepts on 127.0.0.1:PORT, while PID lives (10 s).
  local i
  for i in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

notary_up() {
  # notary_up DIR: CA, configs, both servers, client config. Waits until the server answers.
  NOTARY_DIR=$1
  export NOTARY_DIR
  mkdir -p "$NOTARY_DIR"
  NOTARY_SERVER_PORT=${NOTARY_SERVER_PORT:-$(free_port)}
  NOTARY_SIGNER_PORT=${NOTARY_SIGNER_PORT:-$(free_port)}
  export NOTARY_SERVER_PORT NOTARY_SIGNER_PORT
  notary_make_ca "$NOTARY_DIR"
  local t=$NOTARY_DIR/tls
  cat > "$NOTARY_DIR/signer.json" <<JSON
{"server": {"grpc_addr": "127.0.0.1:$NOTARY_SIGNER_PORT", "tls_cert_file": "$t/notary-signer.crt",
            "tls_key_file": "$t/notary-signer.key", "client_ca_file": "$t/ca.crt"},
 "logging": {"level": "info"},
 "storage": {"backend": "memory"}}
JSON
  cat > "$NOTARY_DIR/server.json" <<JSON
{"server": {"http_addr": "127.0.0.1:$NOTARY_SERVER_PORT", "tls_cert_file": "$t/notary-server.crt",
            "tls_key_file": "$t/notary-server.key"},
 "trust_service": {"type": "remote", "hostname": "127.0.0.1", "port": "$NOTARY_SIGNER_PORT",
                   "key_algorithm": "ecdsa", "tls_ca_file": "$t/ca.crt",
                   "tls_client_cert": "$t/notary-server.crt", "tls_client_key": "$t/notary-server.key"},
 "logging": {"level": "info"},
 "storage": {"backend": "memory"}}
JSON
  cat > "$NOTARY_DIR/client.json" <<JSON
{"trust_dir": "$NOTARY_DIR/trust", "remote_server": {"url": "https://127.0.0.1:$NOTARY_SERVER_PORT", "root_ca": "$t/ca.crt"}}
JSON
  notary-signer -config "$NOTARY_DIR/signer.json" >"$NOTARY_DIR/signer.log" 2>&1 &
  echo $! > "$NOTARY_DIR/signer.pid"
  # notary-server reports healthy before it can reach the signer; a publish in that
  # window fails with a 500. Wait until the signer accepts connections first.
  wait_port "$NOTARY_SIGNER_PORT" "$(cat "$NOTARY_DIR/signer.pid")" || { cat "$NOTARY_DIR/signer.log" >&2; return 1; }
  notary-server -config "$NOTARY_DIR/server.json" >"$NOTARY_DIR/server.log" 2>&1 &
  echo $! > "$NOTARY_DIR/server.pid"
  local i
  for i in $(seq 1 100); do
    # Our own processes must be alive: a health answer from a stale server on the
    # same port would otherwise pass for ours.
    kill -0 "$(cat "$NOTARY_DIR/server.pid")" 2>/dev/null && kill -0 "$(cat "$NOTARY_DIR/signer.pid")" 2>/dev/null || break
    if curl -fsS --cacert "$t/ca.crt" "https://127.0.0.1:$NOTARY_SERVER_PORT/_notary_server/health" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "notary-server did not come up; its log:" >&2
  cat "$NOTARY_DIR/server.log" "$NOTARY_DIR/signer.log" >&2
  return 1
}

notary_down() {
  local f
  for f in "$NOTARY_DIR/server.pid" "$NOTARY_DIR/signer.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

notary_cli() {
  notary -c "$NOTARY_DIR/client.json" "$@"
}

notary_fetch() {
  # notary_fetch GUN NAME OUTFILE: what the server serves, byte for byte.
  curl -fsS --cacert "$NOTARY_DIR/tls/ca.crt" \
    "https://127.0.0.1:$NOTARY_SERVER_PORT/v2/$1/_trust/tuf/$2" -o "$3"
}
