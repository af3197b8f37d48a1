#!/usr/bin/env bash
# Builds the container image (packaging/build-image) from the release binaries as they
# are, and checks it: skopeo reads the OCI archive, a second build gives the same
# digest, and every binary runs from the image's own root filesystem (chroot), so no
# shared library is missing. Needs root (chroot) and skopeo.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "image test: $*" >&2; exit 1; }
digest=$(bash packaging/build-image --no-build 2>/dev/null | tail -1)
archive=$(ls target/image/pullguard_*.oci.tar)
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || fail "build-image printed no digest: $digest"
again=$(bash packaging/build-image --no-build 2>/dev/null | tail -1)
[ "$digest" = "$again" ] || fail "two builds of the same binaries differ: $digest, $again"
inspect=$(skopeo inspect "oci-archive:$archive")
python3 - "$inspect" <<'PY' || fail "skopeo's view of the image is not what was built"
import json, sys
i = json.loads(sys.argv[1])
assert i["Os"] == "linux", i
assert len(i["Layers"]) == 1, i
PY
skopeo inspect --config "oci-archive:$archive" | grep -q '"/usr/bin/pullguardd"' || fail "the entrypoint is not pullguardd"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
layer=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/blobs/sha256/"+json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"][7:])); print(m["layers"][0]["digest"][7:])' target/image/oci)
tar -xzf "target/image/oci/blobs/sha256/$layer" -C "$root"
for b in pullguardd pullguard; do
  out=$(chroot "$root" "/usr/bin/$b" --version 2>&1) || fail "$b does not run in the image: $out"
done
# The verifier has no --version; its help exits 2 (it is never a verdict), and says so.
out=$(chroot "$root" /usr/bin/pullguard-verifier --help 2>&1) || true
case $out in "pullguard-verifier: containerd 2.x's image verifier"*) ;; *) fail "pullguard-verifier does not run in the image: $out" ;; esac
echo "image test: $archive $digest runs (pullguardd, pullguard, pullguard-verifier)"
