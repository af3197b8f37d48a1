#!/usr/bin/env python3
"""Puts a real keyless signature in cosign's classic layout into a registry, as cosign
left it in the publisher's: the simple-signing payload as a blob and the signature
manifest, whose one layer carries the annotations, at the tag sha256-<hex>.sig of the
signed digest. The signed image itself is not needed to judge the signature.
Usage: push-classic.py API FIXTURE_DIR   (API: http://HOST:PORT/v2/REPO)
Prints the digest the signature signs."""
import hashlib
import json
import pathlib
import sys
import urllib.request

api, fixture = sys.argv[1], pathlib.Path(sys.argv[2])


def put_blob(data):
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.urlopen(urllib.request.Request(f"{api}/blobs/uploads/", method="POST"))
    loc = start.headers["Location"]
    loc = loc if loc.startswith("http") else api.split("/v2/")[0] + loc
    sep = "&" if "?" in loc else "?"
    urllib.request.urlopen(urllib.request.Request(
        f"{loc}{sep}digest={dg}", data=data, method="PUT",
        headers={"Content-Type": "application/octet-stream"}))
    return dg


payload = (fixture / "payload").read_bytes()
annotations = json.loads((fixture / "annotations.json").read_text())
digest = (fixture / "digest").read_text().strip()
config = json.dumps({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
                     "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                     "rootfs": {"type": "layers", "diff_ids": [
                         "sha256:" + hashlib.sha256(payload).hexdigest()]}},
                    separators=(",", ":")).encode()
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": put_blob(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": put_blob(payload), "size": len(payload),
                "annotations": annotations}],
}
tag = digest.replace(":", "-", 1) + ".sig"
urllib.request.urlopen(urllib.request.Request(
    f"{api}/manifests/{tag}", data=json.dumps(manifest).encode(), method="PUT",
    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
print(digest)
