//! The two envelope formats of the Notary Project signature specification, read into one
//! shape: JWS JSON serialization (`application/jose+json`) and COSE_Sign1
//! (`application/cose`). What each signs is computed here; nothing is verified yet.

use proof_kit::canonical::Json;
use time::OffsetDateTime;

use crate::cbor::{self, Item};
use crate::{Error, Reason};

/// The media type of a JWS envelope.
pub const JWS: &str = "application/jose+json";
/// The media type of a COSE envelope.
pub const COSE: &str = "application/cose";
/// The payload content type a Notary Project signature must declare.
pub const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

const SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const PLUGIN: &str = "io.cncf.notary.verificationPlugin";
const PLUGIN_MIN: &str = "io.cncf.notary.verificationPluginMinVersion";
const AGENT: &str = "io.cncf.notary.signingAgent";
const TIMESTAMP: &str = "io.cncf.notary.timestampSignature";
/// The critical attributes this verifier understands; any other listed in `crit` refuses
/// the signature, as the specification requires.
const UNDERSTOOD: [&str; 3] = [SCHEME, EXPIRY, AUTHENTIC_TIME];

/// An envelope, read.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `ES256`, `ES384`, `PS256`, `PS384`, `PS512`, ...
    pub alg: String,
    /// `notary.x509` or `notary.x509.signingAuthority`.
    pub scheme: String,
    /// The signer's claimed signing time (`notary.x509`).
    pub signing_time: Option<OffsetDateTime>,
    /// The signing time vouched for by a signing authority (`notary.x509.signingAuthority`).
    pub authentic_signing_time: Option<OffsetDateTime>,
    /// When the signature stops counting, if it says.
    pub expiry: Option<OffsetDateTime>,
    /// The protected header's `crit` list.
    pub crit: Vec<String>,
    /// The payload (JSON with `targetArtifact`).
    pub payload: Vec<u8>,
    /// The bytes the signature covers.
    pub signed: Vec<u8>,
    /// The signature over `signed`.
    pub signature: Vec<u8>,
    /// x5c / x5chain: DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// An RFC 3161 countersignature, when present.
    pub timestamp: Option<Vec<u8>>,
}

/// Certificates an envelope's chain may hold (stricter than notation-go, which sets no
/// number: docs/notation-differences.md).
pub const MAX_CHAIN: usize = 10;

fn bad(m: impl Into<String>) -> Error {
    Error::new(Reason::BadSignature, m)
}

fn rfc3339(s: &str, what: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(format!("{what} {s:?}: {e}")))
}

/// Reads an envelope of `media_type`.
pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Envelope, Error> {
    if bytes.len() > crate::MAX_ENVELOPE {
        return Err(bad(format!(
            "signature envelope of {} bytes is over the limit",
            bytes.len()
        )));
    }
    let envelope = match media_type {
        JWS => parse_jws(bytes),
        COSE => parse_cose(bytes),
        other => Err(bad(format!(
            "signature envelope type {:?} is neither JWS nor COSE",
            other.chars().take(100).collect::<String>()
        ))),
    }?;
    check_signed_attributes(&envelope, media_type == JWS)?;
    // Each certificate costs a signature check before the chain meets the trust store;
    // real chains are a leaf, an intermediate or two and a root.
    if envelope.chain.len() > MAX_CHAIN {
        return Err(bad(format!(
            "the signature carries a chain of {} certificates; at most {MAX_CHAIN} are read",
            envelope.chain.len()
        )));
    }
    Ok(envelope)
}

/// What the specification requires of the signed attributes, as notation-core-go v1.3.0
/// checks it: the signing scheme, an expiry and a signing authority's authentic signing
/// time are marked critical; a JWS carries its scheme's time and not the other one; a
/// COSE `notary.x509` signature carries its signing time.
fn check_signed_attributes(e: &Envelope, jws: bool) -> Result<(), Error> {
    let authority = e.scheme == "notary.x509.signingAuthority";
    let mut must = vec![SCHEME];
    if e.expiry.is_some() {
        must.push(EXPIRY);
    }
    if authority {
        must.push(AUTHENTIC_TIME);
    }
    if let Some(m) = must.iter().find(|m| !e.crit.iter().any(|c| c == *m)) {
        return Err(bad(format!(
            "{m} is not marked critical, as the specification requires"
        )));
    }
    let (extra, missing) = match (e.scheme.as_str(), jws) {
        ("notary.x509", true) => (e.authentic_signing_time.map(|_| AUTHENTIC_TIME), None),
        ("notary.x509", false) => (None, e.signing_time.is_none().then_some(SIGNING_TIME)),
        (_, true) if authority => (
            e.signing_time.map(|_| SIGNING_TIME),
            e.authentic_signing_time.is_none().then_some(AUTHENTIC_TIME),
        ),
        _ => (None, None),
    };
    if let Some(h) = extra {
        return Err(bad(format!(
            "{h} must not be present for the {} signing scheme",
            e.scheme
        )));
    }
    if let Some(h) = missing {
        return Err(bad(format!(
            "{h} must be present for the {} signing scheme",
            e.scheme
        )));
    }
    Ok(())
}

fn check_crit(crit: &[String], present: &dyn Fn(&str) -> bool) -> Result<(), Error> {
    for (i, c) in crit.iter().enumerate() {
        // Linear in effect: every name before this one was understood and unique (or
        // the loop ended there), and only a handful of names are understood.
        if crit[..i].contains(c) {
            return Err(bad(format!("{c} is listed twice in crit")));
        }
        if c == PLUGIN || c == PLUGIN_MIN {
            return Err(Error::new(
                Reason::Unsupported,
                "the signature requires a verification plugin, which pullguard does not run",
            ));
        }
        if !UNDERSTOOD.contains(&c.as_str()) {
            return Err(Error::new(
                Reason::Unsupported,
                format!(
                    "the signature marks {:?} critical, which this verifier does not understand",
                    c.chars().take(100).collect::<String>()
                ),
            ));
        }
        if !present(c) {
            return Err(bad(format!("the critical attribute {c} is missing")));
        }
    }
    Ok(())
}

fn parse_jws(bytes: &[u8]) -> Result<Envelope, Error> {
    let b64url = |s: &str, what: &str| {
        proof_kit::b64::url_unpadded(s)
            .map_err(|e| bad(format!("JWS {what} is not base64url: {e}")))
    };
    let doc = Json::parse(bytes).map_err(|e| bad(format!("JWS envelope: {e}")))?;
    let text = |j: &Json, k: &str| match j.get(k) {
        Some(Json::String(s)) => Ok(s.clone()),
        _ => Err(bad(format!("JWS envelope has no {k}"))),
    };
    let protected_b64 = text(&doc, "protected")?;
    let payload_b64 = text(&doc, "payload")?;
    let signature = b64url(&text(&doc, "signature")?, "signature")?;
    if let Json::Object(m) = &doc {
        if let Some(k) = m
            .keys()
            .find(|k| !["protected", "payload", "signature", "header"].contains(&k.as_str()))
        {
            return Err(bad(format!("JWS envelope has an unknown member {k:?}")));
        }
    }
    let protected_raw = b64url(&protected_b64, "protected header")?;
    let protected =
        Json::parse(&protected_raw).map_err(|e| bad(format!("JWS protected header: {e}")))?;
    let ptext = |k: &str| match protected.get(k) {
        Some(Json::String(s)) => Some(s.clone()),
        _ => None,
    };
    let crit: Vec<String> = match protected.get("crit") {
        Some(Json::Array(a)) => a
            .iter()
            .map(|c| match c {
                Json::String(s) => Ok(s.clone()),
                _ => Err(bad("JWS crit is not a list of names")),
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
        _ => return Err(bad("JWS crit is not a list")),
    };
    check_crit(&crit, &|c| protected.get(c).is_some())?;
    if ptext("cty").as_deref() != Some(PAYLOAD_TYPE) {
        return Err(bad(format!(
            "the payload content type is not {PAYLOAD_TYPE}"
        )));
    }
    let mut chain = Vec::new();
    let mut timestamp = None;
    if let Some(header) = doc.get("header") {
        let Json::Object(h) = header else {
            return Err(bad("JWS header is not an object"));
        };
        for (k, v) in h {
            match (k.as_str(), v) {
                ("x5c", Json::Array(certs)) => {
                    for c in certs {
                        let Json::String(s) = c else {
                            return Err(bad("x5c holds a non-string"));
                        };
                        chain
                            .push(proof_kit::b64::padded(s).map_err(|e| bad(format!("x5c: {e}")))?);
                    }
                }
                (AGENT, Json::String(_)) => {}
                (TIMESTAMP, Json::String(s)) => {
                    timestamp = Some(
                        proof_kit::b64::padded(s).map_err(|e| bad(format!("timestamp: {e}")))?,
                    );
                }
                _ => {
                    return Err(bad(format!(
                        "JWS unprotected header has an unknown or malformed member {k:?}"
                    )))
                }
            }
        }
    }
    // A time that is there but no string is refused, never read as absent: an expiry
    // written as a number would otherwise simply not apply (notation-go cannot decode
    // such an envelope).
    let time = |k: &str| match protected.get(k) {
        None => Ok(None),
        Some(Json::String(s)) => rfc3339(s, k).map(Some),
        Some(_) => Err(bad(format!("{k} is not an RFC 3339 time string"))),
    };
    Ok(Envelope {
        alg: ptext("alg").ok_or_else(|| bad("JWS has no alg"))?,
        scheme: ptext(SCHEME).ok_or_else(|| bad("the signature names no signing scheme"))?,
        signing_time: time(SIGNING_TIME)?,
        authentic_signing_time: time(AUTHENTIC_TIME)?,
        expiry: time(EXPIRY)?,
        payload: b64url(&payload_b64, "payload")?,
        signed: format!("{protected_b64}.{payload_b64}").into_bytes(),
        signature,
        chain,
        timestamp,
        crit,
    })
}

fn parse_cose(bytes: &[u8]) -> Result<Envelope, Error> {
    let item = cbor::decode(bytes).map_err(|e| bad(format!("COSE envelope: {e}")))?;
    let item = match item {
        Item::Tag(18, inner) => *inner,
        // go-cose, Notation's reader, takes the tagged form only.
        _ => return Err(bad("COSE envelope is not a tagged COSE_Sign1")),
    };
    let Item::Array(parts) = item else {
        return Err(bad("COSE_Sign1 is not an array"));
    };
    let [Item::Bytes(protected_raw), unprotected, Item::Bytes(payload), Item::Bytes(signature)] =
        parts.as_slice()
    else {
        return Err(bad(
            "COSE_Sign1 is not [protected, unprotected, payload, signature]",
        ));
    };
    let protected =
        cbor::decode(protected_raw).map_err(|e| bad(format!("COSE protected header: {e}")))?;
    let Item::Map(pmap) = &protected else {
        return Err(bad("COSE protected header is not a map"));
    };
    let label = |s: &str| Item::Text(s.to_owned());
    let alg = match protected.get(&Item::Int(1)) {
        Some(Item::Int(-7)) => "ES256",
        Some(Item::Int(-35)) => "ES384",
        Some(Item::Int(-36)) => "ES512",
        Some(Item::Int(-37)) => "PS256",
        Some(Item::Int(-38)) => "PS384",
        Some(Item::Int(-39)) => "PS512",
        _ => {
            return Err(bad(
                "COSE alg is missing or not one the specification allows",
            ))
        }
    };
    let crit: Vec<String> = match protected.get(&Item::Int(2)) {
        Some(Item::Array(a)) => a
            .iter()
            .map(|c| match c {
                Item::Text(s) => Ok(s.clone()),
                Item::Int(n) => Ok(n.to_string()),
                _ => Err(bad(
                    "COSE crit holds a label that is neither text nor integer",
                )),
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
        _ => return Err(bad("COSE crit is not a list")),
    };
    check_crit(&crit, &|c| {
        pmap.iter().any(|(k, _)| *k == Item::Text(c.to_owned()))
    })?;
    if protected.get(&Item::Int(3)) != Some(&label(PAYLOAD_TYPE)) {
        return Err(bad(format!(
            "the payload content type is not {PAYLOAD_TYPE}"
        )));
    }
    let time = |k: &str| match protected.get(&label(k)) {
        None => Ok(None),
        Some(Item::Tag(1, t)) => match t.as_ref() {
            Item::Int(n) => i64::try_from(*n)
                .ok()
                .and_then(|n| OffsetDateTime::from_unix_timestamp(n).ok())
                .map(Some)
                .ok_or_else(|| bad(format!("{k} is out of range"))),
            _ => Err(bad(format!("{k} is not an epoch time"))),
        },
        _ => Err(bad(format!("{k} is not a tagged time"))),
    };
    let scheme = match protected.get(&label(SCHEME)) {
        Some(Item::Text(s)) => s.clone(),
        _ => return Err(bad("the signature names no signing scheme")),
    };
    let Item::Map(umap) = unprotected else {
        return Err(bad("COSE unprotected header is not a map"));
    };
    let mut chain = Vec::new();
    let mut timestamp = None;
    for (k, v) in umap {
        match (k, v) {
            (Item::Int(33), Item::Array(certs)) => {
                for c in certs {
                    let Item::Bytes(d) = c else {
                        return Err(bad("x5chain holds a non-certificate"));
                    };
                    chain.push(d.clone());
                }
            }
            (Item::Int(33), Item::Bytes(d)) => chain.push(d.clone()),
            (Item::Text(t), Item::Text(_)) if t == AGENT => {}
            (Item::Text(t), Item::Bytes(d)) if t == TIMESTAMP => timestamp = Some(d.clone()),
            _ => {
                return Err(bad(
                    "COSE unprotected header has an unknown or malformed member",
                ))
            }
        }
    }
    // Sig_structure = ["Signature1", protected, external_aad = h'', payload].
    let mut signed = Vec::new();
    cbor::head(4, 4, &mut signed);
    cbor::head(3, 10, &mut signed);
    signed.extend(b"Signature1");
    cbor::head(2, protected_raw.len() as u64, &mut signed);
    signed.extend(protected_raw);
    cbor::head(2, 0, &mut signed);
    cbor::head(2, payload.len() as u64, &mut signed);
    signed.extend(payload);
    Ok(Envelope {
        alg: alg.to_owned(),
        scheme,
        signing_time: time(SIGNING_TIME)?,
        authentic_signing_time: time(AUTHENTIC_TIME)?,
        expiry: time(EXPIRY)?,
        payload: payload.clone(),
        signed,
        signature: signature.clone(),
        chain,
        timestamp,
        crit,
    })
}
