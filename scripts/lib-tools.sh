#!/usr/bin/env bash
# Go-built peers the tests run beside pullguard: containerd 2.x with its ctr, crictl,
# Sigstore's cosign, the Notary Project's notation-go (tests/notation/peer), sigstore-go
# (tests/sigstore/peer), the olareg registry (tests/olareg/peer) and an OpenTelemetry
# Collector (tests/otelcol/peer).
# They are not Debian packages, so they are built from the Go module proxy with
# `go install MODULE/cmd/NAME@VERSION`, pinned here, into a cache outside the checkout
# ($PULLGUARD_TOOLS, default ~/.cache/pullguard-tools/NAME-VERSION/), once per version:
# a second run finds them and builds nothing. Never vendored into the repository.
#
# Source it, then `install_go_tools` (builds what is missing, CONTAINERD2_ALSO too) or
# `go_tools_env` (only sets the paths). PULLGUARD_CONTAINERD2_VERSION picks another
# pinned containerd 2.x for a run. Both export CONTAINERD2, CTR2, CRICTL and COSIGN (absolute paths); runc's
# shim, containerd-shim-runc-v2 of the same version, sits beside CONTAINERD2.
PULLGUARD_TOOLS=${PULLGUARD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pullguard-tools}
CONTAINERD2_VERSION=${PULLGUARD_CONTAINERD2_VERSION:-v2.3.7}
# The 2.x tests run again on this one (scripts/test): the next minor release line.
CONTAINERD2_ALSO=v2.4.2
CRICTL_VERSION=v1.37.0
# Sigstore's cosign: the newest release the proxy serves (v3 writes both the bundle and,
# with --new-bundle-format=false, the classic layout).
COSIGN_VERSION=v3.1.3

go_tools_env() {
  CONTAINERD2=$PULLGUARD_TOOLS/containerd-$CONTAINERD2_VERSION/containerd
  CTR2=$PULLGUARD_TOOLS/containerd-$CONTAINERD2_VERSION/ctr
  CRICTL=$PULLGUARD_TOOLS/crictl-$CRICTL_VERSION/crictl
  COSIGN=$PULLGUARD_TOOLS/cosign-$COSIGN_VERSION/cosign
  # Our own small Go program over the Notary Project's notation-go library (the notation
  # CLI module is not served by the proxy): rebuilt when its sources change.
  NOTATION_PEER=$(peer_path notation)
  # The same for Sigstore: tests/sigstore/peer over sigstore-go and cosign's library.
  SIGSTORE_PEER=$(peer_path sigstore)
  # olareg, a registry with the OCI 1.1 referrers API that pages its answers
  # (tests/olareg/peer sets the page size, which olareg's own command does not).
  OLAREG_PEER=$(peer_path olareg)
  # An OpenTelemetry Collector (its OTLP receiver and file exporter) for the OTLP export's
  # tests: the proxy serves the collector's modules, not a built distribution.
  OTELCOL_PEER=$(peer_path otelcol)
  export PULLGUARD_TOOLS CONTAINERD2 CTR2 CRICTL COSIGN NOTATION_PEER SIGSTORE_PEER OLAREG_PEER OTELCOL_PEER
}

# peer_path KIND: where tests/KIND/peer is built, keyed by a hash of its sources.
peer_path() {
  local src
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/$1/peer" && pwd)
  echo "$PULLGUARD_TOOLS/$1-peer-$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-12)/$1-peer"
}

# go_install DEST PACKAGE@VERSION...: builds into DEST; a partial build never lands there.
go_install() {
  local dest=$1 tmp
  shift
  command -v go >/dev/null 2>&1 || { echo "lib-tools: 'go' is not installed; it builds containerd 2.x and crictl for the tests" >&2; return 1; }
  mkdir -p "$PULLGUARD_TOOLS"
  tmp=$(mktemp -d "$PULLGUARD_TOOLS/.building.XXXXXX")
  chmod 755 "$tmp"
  echo "lib-tools: building $* into $dest (once per version)" >&2
  if ! GOBIN=$tmp GOFLAGS=-trimpath go install "$@" >&2; then
    rm -rf "$tmp"
    echo "lib-tools: go install $* failed; is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?" >&2
    return 1
  fi
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

# containerd_tools VERSION: containerd, ctr and the runc shim of VERSION, unless there.
containerd_tools() {
  local d=$PULLGUARD_TOOLS/containerd-$1 m=github.com/containerd/containerd/v2/cmd
  [ -x "$d/containerd" ] && [ -x "$d/ctr" ] && [ -x "$d/containerd-shim-runc-v2" ] \
    || go_install "$d" "$m/containerd@$1" "$m/ctr@$1" "$m/containerd-shim-runc-v2@$1"
}

install_go_tools() {
  go_tools_env
  containerd_tools "$CONTAINERD2_VERSION"
  containerd_tools "$CONTAINERD2_ALSO"
  [ -x "$CRICTL" ] \
    || go_install "$(dirname "$CRICTL")" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  [ -x "$COSIGN" ] \
    || go_install "$(dirname "$COSIGN")" "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION"
  [ -x "$NOTATION_PEER" ] || notation_peer_build
  [ -x "$SIGSTORE_PEER" ] || sigstore_peer_build
  [ -x "$OLAREG_PEER" ] || peer_build olareg
  [ -x "$OTELCOL_PEER" ] || peer_build otelcol
}

# peer_build KIND: builds tests/KIND/peer (its go.sum pins the reference libraries).
peer_build() {
  local src tmp dest
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/$1/peer" && pwd)
  dest=$(peer_path "$1")
  mkdir -p "$PULLGUARD_TOOLS"
  tmp=$(mktemp -d "$PULLGUARD_TOOLS/.building.XXXXXX")
  echo "lib-tools: building tests/$1/peer into $(dirname "$dest") (once per source)" >&2
  if ! (cd "$src" && GOFLAGS=-trimpath go build -o "$tmp/$1-peer" .) >&2; then
    rm -rf "$tmp"
    echo "lib-tools: building the $1 peer failed; is the Go module proxy reachable?" >&2
    return 1
  fi
  chmod 755 "$tmp"
  rm -rf "$(dirname "$dest")"
  mv "$tmp" "$(dirname "$dest")"
}

# notation-go v1.3.2 (the notation CLI module is not served by the proxy).
notation_peer_build() { peer_build notation; }
# sigstore-go and cosign's library.
sigstore_peer_build() { peer_build sigstore; }
