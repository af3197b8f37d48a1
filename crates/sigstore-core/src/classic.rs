//! cosign's classic layout: the image `REPO@sha256:HEX` is signed by a manifest at the tag
//! `REPO:sha256-HEX.sig`, one layer per signature; a layer's blob is the simple-signing
//! payload, its annotations carry the signature (and, for keyless signing, the
//! certificate, the chain and the transparency-log entry).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::artifact::{check_body, Signed};
use crate::base64_any;
use crate::certs::{self, check_identity, verify_leaf, Cert, Fulcio as _};
use crate::payload::{shown, Payload};
use crate::rekor::{verify_entry, KindVersion, Promise, RawEntry, RawLogId};
use crate::{Error, Expect, Reason, Verified};

/// The layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature over the payload.
pub const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding the signing certificate (keyless).
pub const CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding the Rekor entry and its signed timestamp.
pub const REKOR_BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// The annotation holding an RFC 3161 timestamp over the signature.
pub const TIMESTAMP: &str = "dev.sigstore.cosign/rfc3161timestamp";
/// Signatures considered in one manifest at most; cosign appends one layer per `sign`.
pub const MAX_LAYERS: usize = proof_kit::oci::MAX_LAYERS;

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
    /// An RFC 3161 timestamp over the signature (JSON).
    pub timestamp: Option<String>,
}

/// The signatures a classic signature manifest lists. Layers that are not simple-signing
/// payloads with a signature are skipped; more than [`MAX_LAYERS`] is refused.
pub fn layers(manifest: &[u8]) -> Result<Vec<Layer>, Error> {
    let m = proof_kit::oci::Manifest::parse(manifest)
        .map_err(|e| Error::new(Reason::BadSignature, format!("signature manifest: {e}")))?;
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
                timestamp: l.annotations.remove(TIMESTAMP),
            })
        })
        .collect())
}

/// Does this signature, whose payload blob is `payload`, vouch for `expect.digest`?
///
/// A layer with a certificate, judged by a rule with keyless identities, is verified as
/// cosign verifies keyless signatures: the signature under the certificate's key, the
/// Rekor entry's SET and body (the same hashedrekord record a bundle's entry is) or an
/// RFC 3161 timestamp proving the signing time, the certificate chaining to a Fulcio CA
/// of the trusted root at that time with an SCT, and its identity. The chain annotation
/// is not used: the chain comes from the trusted root, as for bundles.
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
    let sig = base64_any(&layer.signature)?;
    let keyless = match &layer.certificate {
        Some(pem) if !expect.identities.is_empty() => {
            match verify_keyless(layer, pem, payload, &sig, expect) {
                // A rule with keys too: a key's signature may still vouch.
                Err(e) if !expect.keys.is_empty() => Some(e),
                done => return done,
            }
        }
        _ => None,
    };
    if expect.keys.is_empty() {
        return Err(Error::new(
            Reason::IdentityMismatch,
            "a cosign signature in the classic layout carries no certificate (it was signed with a key), and the rule accepts only keyless identities",
        ));
    }
    let by_key = verify_by_key(layer, payload, &sig, expect);
    match (by_key, keyless) {
        (Err(e), Some(k)) if k.reason >= e.reason => Err(k),
        (r, _) => r,
    }
}

fn verify_by_key(
    layer: &Layer,
    payload: &[u8],
    sig: &[u8],
    expect: &Expect<'_>,
) -> Result<Verified, Error> {
    let signer = expect
        .keys
        .iter()
        .find(|k| k.verify(payload, sig))
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
        let missing = |evidence: &str| {
            Error::new(
                Reason::TlogMissing,
                format!("a signature by key {} is valid, but the rule requires transparency-log evidence and {evidence}", signer.id()),
            )
        };
        let Some(entry) = &layer.rekor_bundle else {
            return Err(missing(
                "it carries no transparency-log entry (signed with --tlog-upload=false?)",
            ));
        };
        let Some(root) = expect.root else {
            return Err(missing("its transparency-log entry cannot be verified: the rule names no trusted_root with the log's keys"));
        };
        rekor_entry(entry, payload, sig, signer, None, root, expect.now)?;
    }
    Ok(Verified {
        digest: expect.digest.to_owned(),
        signer: signer.id().to_owned(),
        layout: "classic",
    })
}

fn verify_keyless(
    layer: &Layer,
    pem: &str,
    payload: &[u8],
    sig: &[u8],
    expect: &Expect<'_>,
) -> Result<Verified, Error> {
    let bad = |m: &str| Error::new(Reason::BadSignature, m);
    let root = expect.root.ok_or_else(|| {
        Error::new(
            Reason::TlogMissing,
            "a keyless cosign signature cannot be verified: the rule names no trusted_root",
        )
    })?;
    if pem.len() > crate::MAX_DOCUMENT {
        return Err(bad(
            "the signing certificate annotation is over the size limit",
        ));
    }
    let der = crate::keys::pem_block(pem.as_bytes(), "CERTIFICATE").map_err(|e| {
        bad(&format!(
            "the signing certificate annotation is not PEM: {e}"
        ))
    })?;
    let leaf = certs::parse(&der)?;
    let key = certs::key_of(&leaf)?;
    if !key.verify(payload, sig) {
        return Err(bad(
            "a keyless cosign signature does not verify under its certificate's key",
        ));
    }
    let mut times = Vec::new();
    match &layer.rekor_bundle {
        Some(entry) => times.push(rekor_entry(
            entry,
            payload,
            sig,
            &key,
            Some(&leaf),
            root,
            expect.now,
        )?),
        None if expect.tlog => {
            return Err(Error::new(
                Reason::TlogMissing,
                "a keyless signature carries no transparency-log entry, and the rule requires one (cosign_tlog)",
            ))
        }
        None => {}
    }
    if let Some(ts) = &layer.timestamp {
        times.push(timestamp(ts, sig, root)?);
    }
    if times.is_empty() {
        return Err(Error::new(
            Reason::TlogMissing,
            "nothing proves when the certificate signed: no transparency-log entry and no RFC 3161 timestamp",
        ));
    }
    for t in &times {
        verify_leaf(&leaf, root, *t)?;
    }
    check_identity(&leaf, expect.identities)?;
    Payload::parse(payload)?.check(expect)?;
    let (sans, issuer) = leaf.identity();
    Ok(Verified {
        digest: expect.digest.to_owned(),
        signer: format!("{} ({})", sans.join(", "), issuer.unwrap_or_default()),
        layout: "classic",
    })
}

/// cosign's `dev.sigstore.cosign/bundle` annotation: a Rekor v1 entry with its SET.
#[derive(Deserialize)]
struct RekorBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    set: String,
    #[serde(rename = "Payload")]
    payload: RekorPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// Verifies the annotation's entry (its SET under a log of the trusted root, as a
/// bundle's inclusion promise is verified) and that its body records this signature
/// over this payload by this key or certificate; returns the integration time.
fn rekor_entry(
    annotation: &str,
    payload: &[u8],
    sig: &[u8],
    key: &crate::PublicKey,
    leaf: Option<&Cert>,
    root: &crate::trust_root::TrustedRoot,
    now: time::OffsetDateTime,
) -> Result<time::OffsetDateTime, Error> {
    let tlog = |m: String| Error::new(Reason::TlogMissing, m);
    if annotation.len() > crate::MAX_DOCUMENT {
        return Err(tlog(
            "the transparency-log annotation is over the size limit".to_owned(),
        ));
    }
    let b: RekorBundle = serde_json::from_str(annotation).map_err(|e| {
        tlog(format!(
            "the transparency-log annotation is not cosign's Rekor bundle: {e}"
        ))
    })?;
    let log_id = hex::decode(&b.payload.log_id)
        .map_err(|_| tlog("the transparency-log entry's logID is not hex".to_owned()))?;
    let body = proof_kit::b64::line_wrapped(&b.payload.body).map_err(|e| {
        tlog(format!(
            "the transparency-log entry's body is not base64: {e}"
        ))
    })?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        kind: String,
        api_version: String,
    }
    let kind: Kind = serde_json::from_slice(&body).map_err(|e| {
        tlog(format!(
            "the transparency-log entry's body is not a Rekor entry: {e}"
        ))
    })?;
    let entry = RawEntry {
        log_index: Some(b.payload.log_index.to_string()),
        log_id: RawLogId {
            key_id: proof_kit::b64::encode(&log_id),
        },
        kind_version: KindVersion {
            kind: kind.kind,
            version: kind.api_version,
        },
        integrated_time: Some(b.payload.integrated_time.to_string()),
        inclusion_promise: Some(Promise {
            signed_entry_timestamp: b.set,
        }),
        inclusion_proof: None,
        canonicalized_body: b.payload.body,
    };
    let v = verify_entry(&entry, root, false, now)?;
    let signed = Signed {
        sig: sig.to_vec(),
        digest: Sha256::digest(payload).into(),
        dsse: None,
    };
    check_body(
        &entry.kind_version.kind,
        &entry.kind_version.version,
        &v.body,
        &signed,
        key,
        leaf,
    )?;
    v.integrated_time
        .ok_or_else(|| tlog("the transparency-log entry has no integration time".to_owned()))
}

/// cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation: a timestamp over the raw
/// signature bytes; returns the time it proves.
fn timestamp(
    annotation: &str,
    sig: &[u8],
    root: &crate::trust_root::TrustedRoot,
) -> Result<time::OffsetDateTime, Error> {
    #[derive(Deserialize)]
    struct Stamp {
        #[serde(rename = "SignedRFC3161Timestamp")]
        token: String,
    }
    let bad = |m: String| Error::new(Reason::BadSignature, m);
    if annotation.len() > crate::MAX_DOCUMENT {
        return Err(bad(
            "the timestamp annotation is over the size limit".to_owned()
        ));
    }
    let s: Stamp = serde_json::from_str(annotation)
        .map_err(|e| bad(format!("the timestamp annotation is not cosign's: {e}")))?;
    let der = proof_kit::b64::line_wrapped(&s.token)
        .map_err(|e| bad(format!("the timestamp is not base64: {e}")))?;
    crate::tsa::verify(&der, sig, root)
}
