#!/usr/bin/env bash
# Kubernetes tools for the chart's tests (crates/cli/tests/helm_chart.rs): helm, built
# from the Go module proxy like scripts/lib-tools.sh's peers, and kubernetes-validate
# from PyPI (it carries Kubernetes' JSON schemas for each release, so it validates
# offline), in a virtualenv. Both go into $PULLGUARD_TOOLS once per version, never into
# the checkout.
#
# (kubeconform v0.7.0 builds here too, but it has no schemas offline: the wheel's are
# written for a resolver of absolute $refs, which kubeconform's loader does not follow.)
#
# Source it (after scripts/lib-tools.sh), then `install_k8s_tools`; exports HELM and
# K8S_VALIDATE.
HELM_VERSION=v4.3.2
K8S_VALIDATE_VERSION=1.37.0

k8s_tools_env() {
  HELM=$PULLGUARD_TOOLS/helm-$HELM_VERSION/helm
  K8S_VALIDATE=$PULLGUARD_TOOLS/kubernetes-validate-$K8S_VALIDATE_VERSION/bin/kubernetes-validate
  export HELM K8S_VALIDATE
}

k8s_validate_venv() {
  local dest
  dest=$(dirname "$(dirname "$K8S_VALIDATE")")
  echo "lib-k8s: installing kubernetes-validate $K8S_VALIDATE_VERSION from PyPI into $dest" >&2
  # A virtualenv records its own path, so it is built in place; one that did not finish
  # is removed (and install_k8s_tools checks that the command runs, not that it exists).
  rm -rf "$dest"
  if ! python3 -m venv "$dest" >&2 \
    || ! "$dest/bin/pip" install --quiet "kubernetes-validate==$K8S_VALIDATE_VERSION" >&2; then
    rm -rf "$dest"
    echo "lib-k8s: cannot install kubernetes-validate from PyPI" >&2
    return 1
  fi
}

install_k8s_tools() {
  k8s_tools_env
  [ -x "$HELM" ] || go_install "$(dirname "$HELM")" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  "$K8S_VALIDATE" --version >/dev/null 2>&1 || k8s_validate_venv
}

# A real cluster for tests/k8s: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet and kubectl. `go install` of the Kubernetes commands fails
# (their module replaces each k8s.io/X with ./staging/src/k8s.io/X), so the module is
# copied from the module cache, its go.work dropped, each staging replace turned into a
# require of k8s.io/X at the matching v0 release, and built with -mod=mod. etcd's main is
# the root of go.etcd.io/etcd/server/v3, whose ../ replaces are dropped the same way.
# About 15-20 minutes of builds on 2 cores, once per version.
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16

k8s_cluster_env() {
  K8S_BIN=$PULLGUARD_TOOLS/kubernetes-$K8S_VERSION
  ETCD=$PULLGUARD_TOOLS/etcd-$ETCD_VERSION/etcd
  export K8S_BIN ETCD
}

# unreplace DIR VERSION-OF-REQUIRES: drops go.work and every local replace in DIR/go.mod;
# requires of the replaced modules move to VERSION (empty: left as they are).
unreplace() {
  python3 - "$1/go.mod" "$2" <<'PY'
import re, sys
path, version = sys.argv[1], sys.argv[2]
text = open(path).read()
local = re.findall(r'^\s*(\S+)(?: \S+)? => \.\.?/\S+\s*$', text, re.M)
text = re.sub(r'^\s*\S+(?: \S+)? => \.\.?/\S+\s*\n', '', text, flags=re.M)
text = re.sub(r'replace \(\s*\)\n', '', text)
if version:
    for mod in local:
        text = re.sub(r'^(\s*' + re.escape(mod) + r') v\S+', r'\1 ' + version, text, flags=re.M)
open(path, 'w').write(text)
PY
  rm -f "$1/go.work" "$1/go.work.sum"
}

# build_module MODULE@VERSION DEST REQUIRE-VERSION PACKAGE...: copies the module out of
# the module cache, unreplaces it, builds PACKAGEs into DEST.
build_module() {
  local mod=$1 dest=$2 requires=$3 src work tmp
  shift 3
  src=$(GOFLAGS= go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') || return 1
  work=$(mktemp -d)
  tmp=$(mktemp -d "$PULLGUARD_TOOLS/.building.XXXXXX")
  echo "lib-k8s: building $* of $mod into $dest (once per version; about 15 minutes)" >&2
  (cd "$src" && tar --exclude=./vendor --exclude=./test --exclude=./docs -cf - .) | tar -xf - -C "$work"
  chmod -R u+w "$work"
  unreplace "$work" "$requires"
  if ! (cd "$work" && GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=mod -trimpath -buildvcs=false" \
    go build -ldflags "${BUILD_LDFLAGS:-}" -o "$tmp/" "$@") >&2; then
    rm -rf "$work" "$tmp"
    echo "lib-k8s: building $mod failed" >&2
    return 1
  fi
  rm -rf "$work" "$dest"
  chmod 755 "$tmp"
  mv "$tmp" "$dest"
}

install_k8s_cluster_tools() {
  k8s_cluster_env
  local c v=${K8S_VERSION#v} stamp
  # The version the release build stamps (helm checks a chart's kubeVersion against it;
  # unstamped, the server says v0.0.0-master). Only the link step depends on it.
  stamp="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=${v%%.*}"
  v=${v#*.}
  stamp="$stamp -X k8s.io/component-base/version.gitMinor=${v%%.*} -X k8s.io/component-base/version.gitTreeState=clean"
  stamp="$stamp -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    # kubectl has no --version (CI relinked everything on every run for want of it).
    local said ask=(--version)
    [ "$c" = kubectl ] && ask=(version --client)
    said=$("$K8S_BIN/$c" "${ask[@]}" 2>/dev/null || true)
    if [[ $said != *"$K8S_VERSION"* ]]; then
      BUILD_LDFLAGS=$stamp build_module "k8s.io/kubernetes@$K8S_VERSION" "$K8S_BIN" "v0${K8S_VERSION#v1}" \
        ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubelet ./cmd/kubectl
      break
    fi
  done
  if [ ! -x "$ETCD" ]; then
    build_module "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$(dirname "$ETCD")" "$ETCD_VERSION" . || return 1
    # go names the binary after the module path without its /v3: server.
    mv "$(dirname "$ETCD")/server" "$ETCD"
  fi
}
