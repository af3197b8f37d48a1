#!/usr/bin/env bash
# Builds the .deb, checks it with lintian, installs it with dpkg -i, checks what a node
# gets, runs the installed pullguardd --check-config, and removes the package again.
# Needs root and the Debian package lintian.
set -euo pipefail
cd "$(dirname "$0")/../.."
deb=$(bash packaging/build-deb | tail -1)
lintian --fail-on error --suppress-tags maintainer-script-calls-systemctl "$deb"

if dpkg -s pullguard >/dev/null 2>&1; then
  echo "pullguard is already installed here; not touching it" >&2
  exit 1
fi
trap 'dpkg --purge pullguard >/dev/null 2>&1 || true; rmdir /etc/pullguard/keys /etc/pullguard 2>/dev/null || true' EXIT
dpkg -i "$deb" >/dev/null

fail() { echo "deb test: $*" >&2; exit 1; }
for f in /usr/bin/pullguard /usr/bin/pullguardd /opt/containerd/image-verifier/bin/pullguard-verifier; do
  [ -x "$f" ] || fail "$f is not installed executable"
done
# Anything else in containerd's verifier directory would block every pull.
[ "$(ls -A /opt/containerd/image-verifier/bin)" = pullguard-verifier ] || fail "verifier dir holds more than pullguard-verifier"
grep -qx /etc/pullguard/pullguard.toml /var/lib/dpkg/info/pullguard.conffiles || fail "pullguard.toml is not a conffile"
[ "$(stat -c %a /etc/pullguard/keys)" = 700 ] || fail "/etc/pullguard/keys is not 0700"
grep -q '^ProtectSystem=strict' /lib/systemd/system/pullguardd.service || fail "unit is not hardened"
/usr/bin/pullguardd --config /etc/pullguard/pullguard.toml --check-config
# Man pages and completions from the clap definitions.
for page in pullguard pullguardd pullguard-policy-diff pullguard-events; do
  [ -f "/usr/share/man/man1/$page.1.gz" ] || fail "no man page $page(1)"
done
zcat /usr/share/man/man1/pullguard-policy-check.1.gz | grep -q 'line and column' || fail "pullguard-policy-check(1) is not from --help"
grep -q '_pullguard()' /usr/share/bash-completion/completions/pullguard || fail "no bash completion"
# The installed verifier fails closed while the daemon is down.
set +e
out=$(PULLGUARD_SOCKET=/nonexistent.sock /opt/containerd/image-verifier/bin/pullguard-verifier \
  -name alpine:3.20 -digest "sha256:$(printf '%064d' 0)" -stdin-media-type application/vnd.oci.descriptor.v1+json </dev/null)
code=$?
set -e
[ "$code" != 0 ] || fail "the verifier allowed a pull with no daemon"
echo "$out" | grep -q 'pullguard: blocked alpine:3.20' || fail "unexpected verifier output: $out"
echo "deb test: 1 passed, 0 failed"
