//! Sigstore's `trusted_root.json`: the transparency logs, certificate authorities (Fulcio),
//! certificate-transparency logs and timestamp authorities a verifier trusts, each with the
//! period it may vouch for. Operators manage the file (docs/policy.md says how to refresh it
//! from Sigstore's TUF repository); nothing here fetches it.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::keys::PublicKey;

/// The largest trusted root read.
pub const MAX_TRUSTED_ROOT: usize = 4 << 20;

/// A transparency log or CT log.
#[derive(Debug, Clone)]
pub struct Log {
    /// Its ID: SHA-256 of its key (the trusted root's `logId.keyId`).
    pub id: Vec<u8>,
    /// The log's public key.
    pub key: PublicKey,
    /// When entries signed by the key count.
    pub valid: Validity,
    /// Its base URL, for messages.
    pub url: String,
}

pub use proof_kit::tsa::{Authority, Validity};

/// A parsed trusted root.
#[derive(Debug, Clone, Default)]
pub struct TrustedRoot {
    /// Transparency logs (Rekor).
    pub tlogs: Vec<Log>,
    /// Certificate transparency logs (for Fulcio's SCTs).
    pub ctlogs: Vec<Log>,
    /// Certificate authorities (Fulcio).
    pub cas: Vec<Authority>,
    /// Timestamp authorities (RFC 3161).
    pub tsas: Vec<Authority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
    #[serde(default)]
    timestamp_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    #[serde(default)]
    base_url: String,
    public_key: RawKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: Option<String>,
    key_details: Option<String>,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
struct RawValidity {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    #[serde(default)]
    uri: String,
    cert_chain: RawChain,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    proof_kit::b64::padded(s.trim()).map_err(|e| format!("{what} is not base64: {e}"))
}

/// RFC 3339 as the trusted root writes it (with or without fractions).
pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("time {s:?}: {e}"))
}

fn validity(v: Option<RawValidity>, what: &str) -> Result<Validity, String> {
    // A period without a start is refused: "trusted since whenever" is not a statement
    // a verifier can check a signing time against.
    let v = v.ok_or_else(|| format!("{what} has no validFor"))?;
    let start = v
        .start
        .as_deref()
        .ok_or_else(|| format!("{what}'s validFor has no start"))
        .and_then(parse_time)?;
    let end = v.end.as_deref().map(parse_time).transpose()?;
    Ok(Validity { start, end })
}

impl TrustedRoot {
    /// Parses a trusted root. Entries that cannot be used make the whole file an error:
    /// a half-read root would trust less, or more, than the operator wrote.
    pub fn parse(bytes: &[u8]) -> Result<TrustedRoot, String> {
        if bytes.len() > MAX_TRUSTED_ROOT {
            return Err(format!(
                "trusted root of {} bytes is over the limit",
                bytes.len()
            ));
        }
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| format!("not a trusted root: {e}"))?;
        if !raw
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(format!(
                "media type {:?} is not a Sigstore trusted root",
                raw.media_type
            ));
        }
        let logs = |list: Vec<RawLog>, kind: &str| -> Result<Vec<Log>, String> {
            list.into_iter()
                .enumerate()
                .map(|(i, l)| {
                    let what = format!("{kind} {i} ({})", l.base_url);
                    let raw = l
                        .public_key
                        .raw_bytes
                        .as_deref()
                        .ok_or_else(|| format!("{what} has no public key"))?;
                    let der = b64(raw, &what)?;
                    let key = match l.public_key.key_details.as_deref() {
                        Some(d) if d.starts_with("PKCS1_RSA") => PublicKey::from_pkcs1_rsa(&der),
                        _ => PublicKey::from_spki_der(&der),
                    }
                    .map_err(|e| format!("{what}: {e}"))?;
                    Ok(Log {
                        id: b64(&l.log_id.key_id, &what)?,
                        key,
                        valid: validity(l.public_key.valid_for, &what)?,
                        url: l.base_url,
                    })
                })
                .collect()
        };
        let authorities = |list: Vec<RawAuthority>, kind: &str| -> Result<Vec<Authority>, String> {
            list.into_iter()
                .enumerate()
                .map(|(i, a)| {
                    let what = format!("{kind} {i} ({})", a.uri);
                    let chain = a
                        .cert_chain
                        .certificates
                        .iter()
                        .map(|c| b64(&c.raw_bytes, &what))
                        .collect::<Result<Vec<_>, _>>()?;
                    if chain.is_empty() {
                        return Err(format!("{what} has an empty certificate chain"));
                    }
                    Ok(Authority {
                        chain,
                        valid: validity(a.valid_for, &what)?,
                        url: a.uri,
                    })
                })
                .collect()
        };
        Ok(TrustedRoot {
            tlogs: logs(raw.tlogs, "tlog")?,
            ctlogs: logs(raw.ctlogs, "ctlog")?,
            cas: authorities(raw.certificate_authorities, "certificate authority")?,
            tsas: authorities(raw.timestamp_authorities, "timestamp authority")?,
        })
    }
}

/// The name a rule gives to use Sigstore's public-good trusted root shipped with
/// pullguard (`trusted_root = "sigstore-public-good"`) instead of a file.
pub const PUBLIC_GOOD: &str = "sigstore-public-good";

/// Sigstore's public-good `trusted_root.json`, as shipped (provenance:
/// `data/public-good/PROVENANCE.md`).
pub fn public_good_bytes() -> &'static [u8] {
    include_bytes!("../data/public-good/trusted_root.json")
}
