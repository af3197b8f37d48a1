#!/usr/bin/env bash
# A one-node Kubernetes cluster from real components (scripts/lib-k8s.sh builds them):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on the
# containerd 2.x of tests/containerd/lib.sh, all on 127.0.0.1 with their state in one
# directory. Source after tests/notary/lib.sh (free_port, wait_port) and
# tests/containerd/lib.sh; needs root.
#
# What this machine kind needs (measured, see the Kubernetes issue): cgroup v1 is allowed
# explicitly (failCgroupV1: false), the cgroupfs driver (no systemd), no QoS cgroups and
# no node allocatable enforcement (nothing of the host's cgroup tree is created), the
# kubelet's own oomScoreAdj 0 (no CAP_SYS_RESOURCE), tiny eviction thresholds (a test
# must not be evicted by a full disk). The kubelet sets host sysctls and creates
# /var/lib/kubelet/device-plugins whatever its root: k8s_down puts both back.
set -euo pipefail

# k8s_certs DIR: a CA, the apiserver's serving certificate, one client certificate in
# system:masters for every component and the test, the service-account key pair.
k8s_certs() {
  local d=$1/pki
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 \
    -subj /CN=pullguard-test-ca >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -keyout "$d/apiserver.key" -out "$d/apiserver.csr" \
    -subj /CN=kube-apiserver >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost\n' > "$d/san.ext"
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/san.ext" -out "$d/apiserver.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -keyout "$d/admin.key" -out "$d/admin.csr" \
    -subj "/O=system:masters/CN=pullguard-test-admin" >/dev/null 2>&1
  openssl x509 -req -in "$d/admin.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -out "$d/admin.crt" >/dev/null 2>&1
  openssl genrsa -out "$d/sa.key" 2048 >/dev/null 2>&1
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" >/dev/null 2>&1
}

# k8s_up DIR CONTAINERD_SOCKET: the cluster; exports KUBECONFIG, K8S_API and K8S_NODE, and waits
# for the node to be Ready and untainted.
k8s_up() {
  local d=$1 cri=$2 etcd_port peer_port api_port sched_port kubelet_port healthz_port
  : "${K8S_BIN:?source scripts/lib-k8s.sh and run k8s_cluster_env}" "${ETCD:?}"
  mkdir -p "$d/k8s"
  d=$d/k8s
  k8s_certs "$d"
  # The host's settings the kubelet changes, to be put back by k8s_down.
  sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops > "$d/sysctls.saved"
  [ -e /var/lib/kubelet/device-plugins ] || touch "$d/device-plugins.ours"
  [ -e /var/lib/kubelet ] || touch "$d/var-lib-kubelet.ours"
  etcd_port=$(free_port) peer_port=$(free_port)
  "$ETCD" --name pg --data-dir "$d/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "pg=http://127.0.0.1:$peer_port" --log-level warn >"$d/etcd.log" 2>&1 &
  echo $! > "$d/etcd.pid"
  wait_port "$etcd_port" "$(cat "$d/etcd.pid")" || { cat "$d/etcd.log" >&2; return 1; }
  api_port=$(free_port)
  "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --secure-port "$api_port" \
    --tls-cert-file "$d/pki/apiserver.crt" --tls-private-key-file "$d/pki/apiserver.key" \
    --client-ca-file "$d/pki/ca.crt" --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$d/pki/sa.pub" \
    --service-account-signing-key-file "$d/pki/sa.key" --service-cluster-ip-range 10.96.0.0/24 \
    >"$d/apiserver.log" 2>&1 &
  echo $! > "$d/apiserver.pid"
  cat > "$d/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: pg, cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$d/pki/ca.crt"}}]
users: [{name: admin, user: {client-certificate: "$d/pki/admin.crt", client-key: "$d/pki/admin.key"}}]
contexts: [{name: pg, context: {cluster: pg, user: admin}}]
current-context: pg
YAML
  KUBECONFIG=$d/kubeconfig K8S_API=https://127.0.0.1:$api_port
  export KUBECONFIG K8S_API
  local i
  for i in $(seq 1 120); do
    "$K8S_BIN/kubectl" get --raw /readyz >/dev/null 2>&1 && break
    kill -0 "$(cat "$d/apiserver.pid")" 2>/dev/null || { tail -20 "$d/apiserver.log" >&2; return 1; }
    sleep 0.5
  done
  "$K8S_BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --service-account-private-key-file "$d/pki/sa.key" --root-ca-file "$d/pki/ca.crt" \
    --bind-address 127.0.0.1 --secure-port 0 >"$d/controller-manager.log" 2>&1 &
  echo $! > "$d/controller-manager.pid"
  sched_port=$(free_port)
  "$K8S_BIN/kube-scheduler" --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$sched_port" >"$d/scheduler.log" 2>&1 &
  echo $! > "$d/scheduler.pid"
  kubelet_port=$(free_port) healthz_port=$(free_port)
  K8S_NODE=pg-node
  export K8S_NODE
  cat > "$d/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
readOnlyPort: 0
containerRuntimeEndpoint: unix://$cri
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
oomScoreAdj: 0
failSwapOn: false
# ConfigMap volumes follow an edit within seconds (the default is about a minute).
syncFrequency: 2s
podLogsDir: $d/pod-logs
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: "$d/pki/ca.crt"}}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: ""
YAML
  "$K8S_BIN/kubelet" --config "$d/kubelet.yaml" --kubeconfig "$KUBECONFIG" --root-dir "$d/kubelet" \
    --cert-dir "$d/kubelet-pki" --hostname-override "$K8S_NODE" \
    >"$d/kubelet.log" 2>&1 &
  echo $! > "$d/kubelet.pid"
  for i in $(seq 1 120); do
    if "$K8S_BIN/kubectl" get node "$K8S_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.spec.taints}' 2>/dev/null \
      | grep -qx 'True '; then
      return 0
    fi
    kill -0 "$(cat "$d/kubelet.pid")" 2>/dev/null || { tail -30 "$d/kubelet.log" >&2; return 1; }
    sleep 0.5
  done
  echo "k8s_up: the node did not become Ready and untainted in 60 s" >&2
  "$K8S_BIN/kubectl" get node -o jsonpath='{range .items[*].status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}{.items[*].spec.taints}' >&2 || true
  tail -30 "$d/kubelet.log" >&2
  return 1
}

# k8s_down DIR: stops the cluster (pods first, through CRI), puts the host back. Runs
# from a trap: every step is tried whatever the one before did.
k8s_down() {
  local d=$1/k8s p pid
  [ -d "$d" ] || return 0
  set +e
  [ -f "$d/kubelet.pid" ] && kill "$(cat "$d/kubelet.pid")" 2>/dev/null
  "${CRICTL:-crictl}" --runtime-endpoint "unix://${CONTAINERD_SOCKET:-/nonexistent}" rmp --all --force >/dev/null 2>&1
  for p in scheduler controller-manager apiserver etcd kubelet; do
    [ -f "$d/$p.pid" ] && kill "$(cat "$d/$p.pid")" 2>/dev/null
  done
  for p in scheduler controller-manager apiserver etcd kubelet; do
    [ -f "$d/$p.pid" ] || continue
    pid=$(cat "$d/$p.pid")
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # The apiserver's graceful shutdown can outlast a test: 5 s, then no more.
    kill -9 "$pid" 2>/dev/null
  done
  if [ -f "$d/sysctls.saved" ]; then
    local v=()
    mapfile -t v < "$d/sysctls.saved"
    sysctl -q -w "vm.overcommit_memory=${v[0]}" "kernel.panic=${v[1]}" "kernel.panic_on_oops=${v[2]}"
  fi
  # The kubelet bind-mounts its root onto itself, and pod volumes (ConfigMaps, Secrets,
  # tokens) are tmpfs mounts below it: innermost first.
  grep -o " $d/kubelet[^ ]*" /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  [ -f "$d/device-plugins.ours" ] && rm -rf /var/lib/kubelet/device-plugins
  [ -f "$d/var-lib-kubelet.ours" ] && rmdir /var/lib/kubelet 2>/dev/null
  set -e
  return 0
}
