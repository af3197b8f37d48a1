#!/usr/bin/env bash
# install_packages PKG...: installs Debian packages for the tests, the demo and the
# benchmarks without leaving services behind on the host. Debian's packages start and
# enable their services on install (docker-registry listens on :5000 on every interface,
# without auth; containerd takes /run/containerd); our scripts start their own on
# 127.0.0.1 in temp dirs, so a policy-rc.d keeps the packages' from starting, and on a
# systemd host the units of packages newly installed here are disabled again. A concurrent
# apt run is waited for (up to 5 minutes) instead of failing. Needs root.
install_packages() {
  # (Both paths can be moved for the script's own test.)
  local prc=${PULLGUARD_POLICY_RC_D:-/usr/sbin/policy-rc.d} made_prc=
  local systemd=${PULLGUARD_SYSTEMD_DIR:-/run/systemd/system}
  if [ ! -e "$prc" ]; then
    printf '#!/bin/sh\n# pullguard scripts: no service starts during this install\nexit 101\n' > "$prc"
    chmod 755 "$prc"
    made_prc=1
  fi
  # Only what this install brings is disabled again: a containerd or rsyslog the host
  # already ran stays as it was.
  local new=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || new+=("$pkg")
  done
  local apt=(apt-get -o DPkg::Lock::Timeout=300 -qq)
  local status=0
  "${apt[@]}" update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y "$@" >/dev/null || status=$?
  [ -z "$made_prc" ] || rm -f "$prc"
  if [ "$status" = 0 ] && [ -d "$systemd" ] && command -v systemctl >/dev/null 2>&1; then
    local unit
    for unit in containerd docker-registry rsyslog; do
      if [ ${#new[@]} -gt 0 ] && printf '%s\n' "${new[@]}" | grep -qx "$unit"; then
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
        echo "(disabled the $unit service the package enabled; the scripts run their own)"
      fi
    done
  fi
  return "$status"
}
