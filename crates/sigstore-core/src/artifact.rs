//! A Sigstore bundle over an artifact, verified the way Sigstore's client specification
//! says, offline against a trusted root: the signature (message signature or DSSE
//! envelope) by a public key or by a Fulcio certificate of the expected identity, at a
//! signing time proven by the transparency log (SET) or a timestamp authority, with the
//! log's entry matching what was signed. Used for the conformance suite's `verify-bundle`;
//! image signatures go through [`crate::bundle`] with the same parts.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::bundle::{pae, IN_TOTO};
use crate::certs::{self, check_identity, verify_leaf, Cert, Fulcio as _, Identity};
use crate::keys::PublicKey;
use crate::rekor::{verify_entry, RawEntry};
use crate::trust_root::TrustedRoot;
use crate::{Error, Reason};

/// What was signed: the artifact's bytes, or only its SHA-256.
#[derive(Debug, Clone, Copy)]
pub enum Artifact<'a> {
    /// The artifact's bytes.
    Bytes(&'a [u8]),
    /// Only the artifact's SHA-256 digest.
    Sha256([u8; 32]),
}

impl Artifact<'_> {
    fn sha256(&self) -> [u8; 32] {
        match self {
            Artifact::Bytes(b) => Sha256::digest(b).into(),
            Artifact::Sha256(d) => *d,
        }
    }
}

/// Whose signature counts.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// A public key the verifier holds.
    Key(&'a PublicKey),
    /// A Fulcio certificate of one of these identities.
    Identities(&'a [Identity]),
}

/// What a verified bundle established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who signed: the key's ID, or the certificate's SANs and issuer.
    pub signer: String,
    /// The signing times proven (log integration times, timestamps).
    pub times: Vec<OffsetDateTime>,
    /// The bundle version (1, 2 or 3 for v0.1, v0.2, v0.3).
    pub version: u8,
    /// The DSSE payload, when the bundle held an envelope.
    pub payload: Option<Vec<u8>>,
}

/// Transparency-log entries, and RFC 3161 timestamps, a bundle may carry (sigstore-go's
/// limit for each).
const MAX_EVIDENCE: usize = 32;

fn bad(m: impl Into<String>) -> Error {
    Error::new(Reason::BadSignature, m)
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, Error> {
    proof_kit::b64::line_wrapped(s).map_err(|e| bad(format!("{what} is not base64: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: Material,
    message_signature: Option<MessageSignature>,
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    certificate: Option<RawBytes>,
    x509_certificate_chain: Option<Chain>,
    public_key: Option<serde_json::Value>,
    #[serde(default)]
    tlog_entries: Vec<RawEntry>,
    timestamp_verification_data: Option<TimestampData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct Chain {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimestampData {
    #[serde(default)]
    rfc3161_timestamps: Vec<SignedTimestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedTimestamp {
    signed_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: Option<MessageDigest>,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

/// A DSSE envelope as a bundle holds it (also read by the key-only bundle check).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope {
    pub(crate) payload: String,
    pub(crate) payload_type: String,
    #[serde(default)]
    pub(crate) signatures: Vec<EnvSig>,
}

/// One signature of a DSSE envelope.
#[derive(Deserialize)]
pub(crate) struct EnvSig {
    pub(crate) sig: String,
}

/// The bundle format version of a media type; others are refused.
fn version(media_type: &str) -> Option<u8> {
    match media_type {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => Some(1),
        "application/vnd.dev.sigstore.bundle+json;version=0.2" => Some(2),
        "application/vnd.dev.sigstore.bundle+json;version=0.3"
        | "application/vnd.dev.sigstore.bundle.v0.3+json" => Some(3),
        _ => None,
    }
}

/// What the signature covers, as the log records it.
pub(crate) struct Signed {
    /// The signature bytes.
    pub(crate) sig: Vec<u8>,
    /// SHA-256 of what was signed (the artifact, or the DSSE PAE).
    pub(crate) digest: [u8; 32],
    /// DSSE: the payload and its envelope signature (intoto/dsse entries record them).
    pub(crate) dsse: Option<(Vec<u8>, String)>,
}

/// Verifies `bundle` over `artifact` for `signer` against `root` at `now`.
pub fn verify_bundle(
    bundle: &[u8],
    artifact: Artifact<'_>,
    signer: Signer<'_>,
    root: &TrustedRoot,
    now: OffsetDateTime,
) -> Result<Verified, Error> {
    verify_bundle_with(bundle, artifact, signer, root, now, true)
}

/// [`verify_bundle`], saying whether a transparency-log entry is required. Without
/// (`cosign_tlog = false`, cosign's `--insecure-ignore-tlog --use-signed-timestamps`),
/// a keyless signature's time may be proven by an RFC 3161 timestamp alone; entries
/// that are present are still verified.
pub fn verify_bundle_with(
    bundle: &[u8],
    artifact: Artifact<'_>,
    signer: Signer<'_>,
    root: &TrustedRoot,
    now: OffsetDateTime,
    tlog_required: bool,
) -> Result<Verified, Error> {
    ParsedBundle::parse(bundle)?.verify(artifact, signer, root, now, tlog_required)
}

/// A bundle read once (bounded, every field typed, a field given twice refused), to be
/// verified for as many signers as a rule names without reading it again.
pub struct ParsedBundle {
    b: Bundle,
    version: u8,
}

impl ParsedBundle {
    /// Reads a bundle of a version this verifier knows.
    pub fn parse(bundle: &[u8]) -> Result<ParsedBundle, Error> {
        if bundle.len() > crate::MAX_DOCUMENT {
            return Err(bad("the bundle is over the size limit"));
        }
        let b: Bundle = serde_json::from_slice(bundle)
            .map_err(|e| bad(format!("not a Sigstore bundle: {e}")))?;
        let version = version(&b.media_type).ok_or_else(|| {
            bad(format!(
                "bundle media type {:?} is not a version this verifier knows",
                b.media_type
            ))
        })?;
        // Each entry and timestamp costs signature checks before the signer is known
        // to be the accepted one: at most sigstore-go's 32 of each, and the same log
        // entry twice is refused as it refuses it (a copy proves nothing more).
        let m = &b.verification_material;
        let stamps = m
            .timestamp_verification_data
            .as_ref()
            .map_or(0, |t| t.rfc3161_timestamps.len());
        if m.tlog_entries.len() > MAX_EVIDENCE || stamps > MAX_EVIDENCE {
            return Err(bad(format!(
                "the bundle carries {} transparency-log entries and {stamps} timestamps; at most {MAX_EVIDENCE} of each are read",
                m.tlog_entries.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &m.tlog_entries {
            // By number, as sigstore-go compares them: absent is 0, and so is "00".
            let index = e.log_index.as_deref().unwrap_or("0");
            if !seen.insert((&e.log_id.key_id, index.parse::<u64>().ok())) {
                return Err(bad(format!(
                    "the bundle carries log entry {index} of one log twice"
                )));
            }
        }
        Ok(ParsedBundle { b, version })
    }

    /// The bundle names a public key (signed by a key, not a certificate).
    pub fn signed_by_key(&self) -> bool {
        self.b
            .verification_material
            .public_key
            .as_ref()
            .is_some_and(serde_json::Value::is_object)
    }

    /// [`verify_bundle_with`] of this bundle.
    pub fn verify(
        &self,
        artifact: Artifact<'_>,
        signer: Signer<'_>,
        root: &TrustedRoot,
        now: OffsetDateTime,
        tlog_required: bool,
    ) -> Result<Verified, Error> {
        let (b, version) = (&self.b, self.version);
        let m = &b.verification_material;

        // The signing key: the verifier's own, or the bundle's certificate.
        let leaf =
            match (&m.certificate, &m.x509_certificate_chain) {
                (Some(c), None) => Some(certs::parse(&b64(&c.raw_bytes, "certificate")?)?),
                (None, Some(chain)) if version < 3 => {
                    let certs = chain
                        .certificates
                        .iter()
                        .map(|c| b64(&c.raw_bytes, "certificate").and_then(|d| certs::parse(&d)))
                        .collect::<Result<Vec<_>, _>>()?;
                    // Only the leaf is used; the chain comes from the trusted root. A bundle that
                    // ships a root (self-signed) certificate is refused, as Sigstore's clients do.
                    if certs.iter().any(Cert::self_signed) {
                        return Err(bad(
                            "the bundle's certificate chain contains a root certificate",
                        ));
                    }
                    Some(
                        certs
                            .into_iter()
                            .next()
                            .ok_or_else(|| bad("the bundle's certificate chain is empty"))?,
                    )
                }
                (None, None) if m.public_key.is_some() => None,
                _ => return Err(bad(
                    "the bundle's verification material is not one certificate, chain or key hint",
                )),
            };
        let key = match (signer, &leaf) {
            (Signer::Key(k), None) => k.clone(),
            (Signer::Identities(_), Some(cert)) => certs::key_of(cert)?,
            (Signer::Key(_), Some(_)) => {
                return Err(Error::new(
                    Reason::IdentityMismatch,
                    "the bundle is signed by a certificate, and a key was expected",
                ))
            }
            (Signer::Identities(_), None) => {
                return Err(Error::new(
                    Reason::IdentityMismatch,
                    "the bundle is signed by a key, and a certificate identity was expected",
                ))
            }
        };

        let want = artifact.sha256();
        let signed = match (&b.message_signature, &b.dsse_envelope) {
            (Some(ms), None) => {
                let sig = b64(&ms.signature, "signature")?;
                if let Some(md) = &ms.message_digest {
                    if md.algorithm != "SHA2_256" || b64(&md.digest, "message digest")? != want {
                        return Err(Error::new(
                            Reason::DigestMismatch,
                            "the bundle's message digest is not the artifact's",
                        ));
                    }
                }
                let ok = match artifact {
                    Artifact::Bytes(bytes) => key.verify(bytes, &sig),
                    Artifact::Sha256(d) => key.verify_sha256_digest(&d, &sig),
                };
                if !ok {
                    return Err(bad("the signature does not verify over the artifact"));
                }
                Signed {
                    sig,
                    digest: want,
                    dsse: None,
                }
            }
            (None, Some(env)) => {
                if env.signatures.len() != 1 {
                    return Err(bad("the DSSE envelope must carry exactly one signature"));
                }
                let payload = b64(&env.payload, "DSSE payload")?;
                let sig = b64(&env.signatures[0].sig, "DSSE signature")?;
                let pae = pae(&env.payload_type, &payload);
                if !key.verify(&pae, &sig) {
                    return Err(bad("the DSSE signature does not verify"));
                }
                if env.payload_type != IN_TOTO {
                    return Err(bad("the DSSE payload is not an in-toto statement"));
                }
                check_subject(&payload, &want)?;
                Signed {
                    sig,
                    digest: Sha256::digest(&pae).into(),
                    dsse: Some((payload, env.signatures[0].sig.clone())),
                }
            }
            _ => {
                return Err(bad(
                    "the bundle holds neither a message signature nor a DSSE envelope",
                ))
            }
        };

        // The log: at least one entry, verified, recording exactly this signature.
        if m.tlog_entries.is_empty() && tlog_required {
            return Err(Error::new(
                Reason::TlogMissing,
                "the bundle has no transparency-log entry",
            ));
        }
        let mut times = Vec::new();
        for e in &m.tlog_entries {
            let v = verify_entry(e, root, version >= 2, now)?;
            check_body(
                &e.kind_version.kind,
                &e.kind_version.version,
                &v.body,
                &signed,
                &key,
                leaf.as_ref(),
            )?;
            times.extend(v.integrated_time);
        }
        if let Some(ts) = &m.timestamp_verification_data {
            for t in &ts.rfc3161_timestamps {
                times.push(crate::tsa::verify(
                    &b64(&t.signed_timestamp, "timestamp")?,
                    &signed.sig,
                    root,
                )?);
            }
        }
        if let Some(cert) = &leaf {
            if times.is_empty() {
                return Err(Error::new(Reason::TlogMissing, "nothing proves when the certificate signed: no transparency-log entry and no RFC 3161 timestamp"));
            }
            for t in &times {
                verify_leaf(cert, root, *t)?;
            }
            if let Signer::Identities(accepted) = signer {
                check_identity(cert, accepted)?;
            }
        }
        let signer = match &leaf {
            Some(cert) => {
                let (sans, issuer) = cert.identity();
                format!("{} ({})", sans.join(", "), issuer.unwrap_or_default())
            }
            None => key.id().to_owned(),
        };
        Ok(Verified {
            signer,
            times,
            version,
            payload: signed.dsse.map(|(p, _)| p),
        })
    }
}

/// The in-toto statement must name the artifact's SHA-256 among its subjects.
fn check_subject(payload: &[u8], want: &[u8; 32]) -> Result<(), Error> {
    let st = crate::intoto::Statement::parse(payload)
        .map_err(|e| bad(format!("in-toto statement: {e}")))?;
    let hexed = hex::encode(want);
    let named = st.sha256s().any(|d| d == hexed);
    if named {
        Ok(())
    } else {
        Err(Error::new(
            Reason::DigestMismatch,
            "the in-toto statement does not name the artifact",
        ))
    }
}

/// The log entry's body must record this signature, over this content, by this key.
pub(crate) fn check_body(
    kind: &str,
    version: &str,
    body: &[u8],
    signed: &Signed,
    key: &PublicKey,
    leaf: Option<&Cert>,
) -> Result<(), Error> {
    let mismatch = |what: &str| {
        Error::new(
            Reason::TlogMissing,
            format!("the transparency-log entry records {what} than the bundle"),
        )
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| mismatch("something other"))?;
    if v["kind"].as_str() != Some(kind) || v["apiVersion"].as_str() != Some(version) {
        return Err(mismatch("another kind"));
    }
    let b64d = |s: &serde_json::Value| s.as_str().and_then(|s| proof_kit::b64::padded(s).ok());
    // A verifier recorded as PEM (v1 entries) or DER (v2): the same key or certificate.
    let same_verifier = |pem_or_der: &[u8]| -> bool {
        match leaf {
            Some(cert) => {
                crate::keys::pem_block(pem_or_der, "CERTIFICATE").is_ok_and(|d| d == cert.der())
                    || pem_or_der == cert.der()
            }
            None => {
                crate::keys::pem_block(pem_or_der, "PUBLIC KEY").is_ok_and(|d| d == key.spki_der())
                    || pem_or_der == key.spki_der()
            }
        }
    };
    match (kind, version, &signed.dsse) {
        ("hashedrekord", "0.0.1", _) => {
            let s = &v["spec"];
            if s["data"]["hash"]["algorithm"].as_str() != Some("sha256")
                || s["data"]["hash"]["value"].as_str() != Some(hex::encode(signed.digest).as_str())
            {
                return Err(mismatch("another artifact digest"));
            }
            if b64d(&s["signature"]["content"]).as_deref() != Some(signed.sig.as_slice()) {
                return Err(mismatch("another signature"));
            }
            if !b64d(&s["signature"]["publicKey"]["content"]).is_some_and(|p| same_verifier(&p)) {
                return Err(mismatch("another signing key"));
            }
        }
        ("hashedrekord", "0.0.2", _) => {
            let s = &v["spec"]["hashedRekordV002"];
            if s["data"]["algorithm"].as_str() != Some("SHA2_256")
                || b64d(&s["data"]["digest"]).as_deref() != Some(signed.digest.as_slice())
            {
                return Err(mismatch("another artifact digest"));
            }
            if b64d(&s["signature"]["content"]).as_deref() != Some(signed.sig.as_slice()) {
                return Err(mismatch("another signature"));
            }
            let verifier = &s["signature"]["verifier"];
            let der = b64d(&verifier["x509Certificate"]["rawBytes"])
                .or_else(|| b64d(&verifier["publicKey"]["rawBytes"]));
            if !der.is_some_and(|d| same_verifier(&d)) {
                return Err(mismatch("another signing key"));
            }
        }
        ("intoto", "0.0.2", Some((payload, sig_b64))) => {
            let c = &v["spec"]["content"];
            if c["payloadHash"]["algorithm"].as_str() != Some("sha256")
                || c["payloadHash"]["value"].as_str()
                    != Some(hex::encode(Sha256::digest(payload)).as_str())
            {
                return Err(mismatch("another payload"));
            }
            let sigs = c["envelope"]["signatures"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ok = sigs.len() == 1
                && b64d(&sigs[0]["sig"])
                    .and_then(|s| String::from_utf8(s).ok())
                    .as_deref()
                    == Some(sig_b64.trim())
                && b64d(&sigs[0]["publicKey"]).is_some_and(|p| same_verifier(&p));
            if !ok {
                return Err(mismatch("another signature or key"));
            }
        }
        ("dsse", "0.0.1", Some((payload, _))) => {
            let s = &v["spec"];
            if s["payloadHash"]["value"].as_str()
                != Some(hex::encode(Sha256::digest(payload)).as_str())
            {
                return Err(mismatch("another payload"));
            }
            let sigs = s["signatures"].as_array().cloned().unwrap_or_default();
            let ok = sigs.len() == 1
                && b64d(&sigs[0]["signature"]).as_deref() == Some(signed.sig.as_slice())
                && b64d(&sigs[0]["verifier"]).is_some_and(|p| same_verifier(&p));
            if !ok {
                return Err(mismatch("another signature or key"));
            }
        }
        _ => {
            return Err(mismatch(&format!(
                "an entry kind ({kind} {version}) this verifier does not check, rather"
            )))
        }
    }
    Ok(())
}
