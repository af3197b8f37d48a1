//! cosign's classic layout: the image `REPO@sha256:HEX` is signed by a manifest at the tag
//! `REPO:sha256-HEX.sig`, one layer per signature; a layer's blob is the simple-signing
//! payload, its annotations carry the signature (and, for keyless signing, the
//! certificate, the chain and the transparency-log entry).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::keys::base64_any;
use crate::payload::{shown, Payload};
use crate::{Error, Expect, Reason, Verified};

/// The layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature over the payload.
pub const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding the signing certificate (keyless).
pub const CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding the Rekor entry and its signed timestamp.
pub const REKOR_BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// Signatures considered in one manifest at most; cosign appends one layer per `sign`.
pub const MAX_LAYERS: usize = 64;

/// The tag cosign stores an image's signatures under.
pub fn signature_tag(sha256_hex: &str) -> String {
    format!("sha256-{sha256_hex}.sig")
}

/// One signature of a signature manifest, before its payload is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The payload blob's digest, `sha256:<hex>`.
    pub digest: String,
    /// The payload blob's size, as the manifest claims it.
    pub size: u64,
    /// The base64 signature.
    pub signature: String,
    /// A PEM certificate, for keyless signatures.
    pub certificate: Option<String>,
    /// A Rekor entry with its signed timestamp (JSON).
    pub rekor_bundle: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The signatures a classic signature manifest lists. Layers that are not simple-signing
/// payloads with a signature are skipped; more than [`MAX_LAYERS`] is refused.
pub fn layers(manifest: &[u8]) -> Result<Vec<Layer>, Error> {
    let bad = |m: String| Error::new(Reason::BadSignature, m);
    let m: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| bad(format!("signature manifest is not an OCI manifest: {e}")))?;
    if m.layers.len() > MAX_LAYERS {
        return Err(bad(format!(
            "signature manifest lists {} layers, over the limit of {MAX_LAYERS}",
            m.layers.len()
        )));
    }
    Ok(m.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .filter_map(|mut l| {
            let signature = l.annotations.remove(SIGNATURE)?;
            Some(Layer {
                digest: l.digest,
                size: l.size,
                signature,
                certificate: l.annotations.remove(CERTIFICATE),
                rekor_bundle: l.annotations.remove(REKOR_BUNDLE),
            })
        })
        .collect())
}

/// Does this signature, whose payload blob is `payload`, vouch for `expect.digest`?
pub fn verify(layer: &Layer, payload: &[u8], expect: &Expect<'_>) -> Result<Verified, Error> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(payload)));
    if actual != layer.digest {
        return Err(Error::new(
            Reason::BadSignature,
            format!(
                "the signed payload's bytes hash to {actual}, not the {} its manifest lists",
                shown(&layer.digest)
            ),
        ));
    }
    if expect.keys.is_empty() {
        return Err(Error::new(
            Reason::NoSignature,
            "keyless signatures in cosign's classic layout are not verified by this version; sign with cosign 3 (Sigstore bundle layout)",
        ));
    }
    let sig = base64_any(&layer.signature)?;
    let signer = expect
        .keys
        .iter()
        .find(|k| k.verify(payload, &sig))
        .ok_or_else(|| {
            Error::new(
                Reason::BadSignature,
                format!(
                    "a cosign signature does not verify under any of the rule's {} key(s)",
                    expect.keys.len()
                ),
            )
        })?;
    Payload::parse(payload)?.check(expect)?;
    if expect.tlog {
        let evidence = if layer.rekor_bundle.is_some() {
            "transparency-log entries of cosign's classic layout are not verified by this version (sign with cosign 3: Sigstore bundle layout)"
        } else {
            "it carries no transparency-log entry (signed with --tlog-upload=false?)"
        };
        return Err(Error::new(
            Reason::TlogMissing,
            format!("a signature by key {} is valid, but the rule requires transparency-log evidence and {evidence}", signer.id()),
        ));
    }
    Ok(Verified {
        digest: expect.digest.to_owned(),
        signer: signer.id().to_owned(),
        layout: "classic",
    })
}
