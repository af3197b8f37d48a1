//! Notary Project (Notation) signatures on container images, verified without I/O as
//! the Notary Project's signature specification says: the envelope (JWS or COSE, see
//! [`envelope`]) verifies under its leaf certificate, its payload names exactly the pulled
//! manifest, the certificate chain leads to a certificate of a trust store of the type the
//! signing scheme requires, the leaf is a code-signing certificate of a trusted identity,
//! valid at the time that counts, and the signature has not expired. The verification
//! level (strict, permissive, audit) says which failures refuse and which are only logged.
//!
//! RFC 3161 countersignatures are verified against the rule's `tsa` trust stores; their
//! time is when a `notary.x509` chain must be valid (without `tsa` stores, now). Not done
//! here, and why: revocation (OCSP/CRL needs the network; the rule says what an offline
//! node does) and plugins (never run).

pub mod cbor;
pub mod envelope;

use sigstore_core::certs::Cert;
use time::OffsetDateTime;
use trust_core::canonical::Json;
use x509_cert::der::asn1::ObjectIdentifier;

const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// The largest envelope read.
pub const MAX_ENVELOPE: usize = 1 << 20;

/// Why a signature does not vouch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No signature for the image.
    NoSignature,
    /// Integrity: the envelope is malformed or its signature does not verify.
    BadSignature,
    /// Integrity: a valid signature over another manifest.
    DigestMismatch,
    /// Authenticity: the chain leads to no certificate of the rule's trust stores.
    UntrustedSigner,
    /// Authenticity: the leaf's subject is none of the trusted identities.
    IdentityMismatch,
    /// A certificate of the chain is not valid at the time that counts.
    CertificateExpired,
    /// The signature's own expiry (`io.cncf.notary.expiry`) has passed.
    Expired,
    /// Something this verifier refuses to handle: a plugin, an unknown critical
    /// attribute, an algorithm it cannot check.
    Unsupported,
    /// A timestamp countersignature that does not verify against the `tsa` trust stores.
    UntrustedTimestamp,
}

impl Reason {
    /// pullguard's reason code text.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoSignature => "no_signature",
            Reason::BadSignature => "bad_signature",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::UntrustedSigner => "untrusted_signer",
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::CertificateExpired => "certificate_expired",
            Reason::Expired => "expired",
            Reason::Unsupported => "unsupported_signature",
            Reason::UntrustedTimestamp => "untrusted_timestamp",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Reason::NoSignature => 0,
            Reason::Unsupported => 1,
            Reason::UntrustedTimestamp => 3,
            Reason::BadSignature => 2,
            Reason::UntrustedSigner => 3,
            Reason::IdentityMismatch => 4,
            Reason::CertificateExpired => 5,
            Reason::Expired => 6,
            Reason::DigestMismatch => 7,
        }
    }
}

/// A failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub reason: Reason,
    pub message: String,
}

impl Error {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Error {
        Error {
            reason,
            message: message.into(),
        }
    }
}

/// Keeps the most telling of several signatures' failures.
#[derive(Debug, Default)]
pub struct Failures(Option<Error>);

impl Failures {
    pub fn add(&mut self, e: Error) {
        if self
            .0
            .as_ref()
            .is_none_or(|w| e.reason.rank() > w.reason.rank())
        {
            self.0 = Some(e);
        }
    }

    pub fn into_error(self, what: &str) -> Error {
        self.0.unwrap_or_else(|| {
            Error::new(
                Reason::NoSignature,
                format!("no Notary Project signature for {what}"),
            )
        })
    }
}

/// Which checks refuse and which are only logged (the trust policy's
/// `signatureVerification.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Everything refuses.
    Strict,
    /// Integrity and authenticity refuse; certificate validity in time and expiry are logged.
    Permissive,
    /// Integrity refuses; the rest is logged.
    Audit,
}

/// What the rule trusts.
#[derive(Debug, Clone)]
pub struct Trust<'a> {
    /// Certificates of the rule's `ca` trust stores (scheme `notary.x509`).
    pub ca: &'a [Cert],
    /// Certificates of its `signingAuthority` trust stores (scheme
    /// `notary.x509.signingAuthority`).
    pub signing_authority: &'a [Cert],
    /// Roots of its `tsa` trust stores: with any, a `notary.x509` signature needs a
    /// countersignature by one of them, whose time is when its chain must be valid.
    /// Without any, countersignatures are not looked at and the chain must be valid now.
    pub tsa: &'a [Cert],
    /// Trusted identities: `x509.subject: C=US, ST=WA, O=..., CN=...`, or `*`.
    pub identities: &'a [String],
    pub level: Level,
    pub now: OffsetDateTime,
}

/// The manifest pulled.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `sha256:<hex>`.
    pub digest: &'a str,
    pub size: u64,
    pub media_type: &'a str,
}

/// A signature that vouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The leaf certificate's subject.
    pub signer: String,
    /// `jws` or `cose`.
    pub envelope: &'static str,
    /// Failures the level only logs.
    pub logged: Vec<String>,
}

/// Verifies one signature envelope for `target` under `trust`.
pub fn verify(
    media_type: &str,
    bytes: &[u8],
    target: &Target<'_>,
    trust: &Trust<'_>,
) -> Result<Verified, Error> {
    let env = envelope::parse(media_type, bytes)?;
    let bad = |m: String| Error::new(Reason::BadSignature, m);

    // Integrity.
    if env.chain.is_empty() {
        return Err(bad("the signature carries no certificate chain".to_owned()));
    }
    let chain: Vec<Cert> = env
        .chain
        .iter()
        .map(|d| Cert::parse(d).map_err(|e| bad(format!("a certificate of the chain: {e}"))))
        .collect::<Result<_, _>>()?;
    let leaf = &chain[0];
    let key = leaf.public_key().map_err(|e| bad(e.to_string()))?;
    if !["ES256", "ES384", "PS256", "PS384", "PS512"].contains(&env.alg.as_str()) {
        return Err(Error::new(
            Reason::Unsupported,
            format!(
                "signature algorithm {:?} is not one pullguard verifies",
                env.alg
            ),
        ));
    }
    if !key.verify_jose(&env.alg, &env.signed, &env.signature) {
        return Err(bad(
            "the signature does not verify under its leaf certificate".to_owned(),
        ));
    }
    check_target(&env.payload, target)?;

    let mut logged = Vec::new();
    let mut judge = |e: Error, refuses: bool| -> Result<(), Error> {
        if refuses {
            Err(e)
        } else {
            logged.push(format!("{} ({})", e.message, e.reason.as_str()));
            Ok(())
        }
    };
    let authenticity_refuses = trust.level != Level::Audit;
    let time_refuses = trust.level == Level::Strict;

    // Authenticity: the trust store of the scheme's type, the path to it, the identity.
    // With tsa stores, a notary.x509 signature must carry a countersignature by one of
    // them (Notation's authentic timestamp); its time is when the chain must be valid.
    let mut stamped = (trust.now, trust.now);
    if !trust.tsa.is_empty() && env.scheme == "notary.x509" {
        use sigstore_core::tsa::{verify_token, Authorities};
        match &env.timestamp {
            Some(token) => match verify_token(token, &env.signature, Authorities::Roots(trust.tsa)) {
                Ok(t) => stamped = t.range(),
                Err(e) => judge(Error::new(Reason::UntrustedTimestamp, e.message), time_refuses)?,
            },
            None => judge(
                Error::new(Reason::UntrustedTimestamp, "the signature has no timestamp countersignature, and the rule names tsa trust stores"),
                time_refuses,
            )?,
        }
    }
    // The moments at which the chain must be valid: now, the whole range a timestamp
    // stands for, or a signing authority's authentic signing time.
    let (store, when) = match env.scheme.as_str() {
        "notary.x509" => (trust.ca, stamped),
        "notary.x509.signingAuthority" => {
            let t = env.authentic_signing_time.ok_or_else(|| {
                bad("a signingAuthority signature without its authentic signing time".to_owned())
            })?;
            (trust.signing_authority, (t, t))
        }
        other => {
            return Err(Error::new(
                Reason::Unsupported,
                format!(
                    "signing scheme {:?} is not one the specification defines",
                    other.chars().take(80).collect::<String>()
                ),
            ))
        }
    };
    // The specification's leaf: not a CA, code signing among its extended key usages,
    // digitalSignature among its key usages.
    let signs = leaf
        .extension(KEY_USAGE)
        .and_then(|v| <x509_cert::ext::pkix::KeyUsage as x509_cert::der::Decode>::from_der(v).ok())
        .is_some_and(|ku| ku.digital_signature());
    if leaf.is_ca() || !leaf.code_signing() || !signs {
        judge(
            Error::new(
                Reason::UntrustedSigner,
                "the leaf certificate is not a code-signing certificate",
            ),
            authenticity_refuses,
        )?;
    }
    match path_to_store(&chain, store) {
        Some(path) => {
            if let Some(c) = path
                .iter()
                .find(|c| !c.valid_at(when.0) || !c.valid_at(when.1))
            {
                let (nb, na) = c.validity();
                let at = if when.0 == when.1 {
                    format!("at {}", when.0)
                } else {
                    format!("over {} to {}", when.0, when.1)
                };
                judge(
                    Error::new(
                        Reason::CertificateExpired,
                        format!("a certificate of the chain is valid from {nb} to {na}, not {at}"),
                    ),
                    time_refuses,
                )?;
            }
        }
        None => judge(
            Error::new(
                Reason::UntrustedSigner,
                format!(
                    "the certificate chain leads to no certificate of the rule's {} trust stores",
                    if store.len() == trust.ca.len() {
                        "ca"
                    } else {
                        "signingAuthority"
                    }
                ),
            ),
            authenticity_refuses,
        )?,
    }
    let subject = subject_attributes(leaf);
    let shown = subject
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !trust
        .identities
        .iter()
        .any(|i| identity_matches(i, &subject))
    {
        judge(
            Error::new(
                Reason::IdentityMismatch,
                format!("the signer {shown:?} is none of the rule's trusted identities"),
            ),
            authenticity_refuses,
        )?;
    }
    if let Some(exp) = env.expiry {
        if exp < trust.now {
            judge(
                Error::new(Reason::Expired, format!("the signature expired at {exp}")),
                time_refuses,
            )?;
        }
    }
    Ok(Verified {
        signer: shown,
        envelope: if media_type == envelope::JWS {
            "jws"
        } else {
            "cose"
        },
        logged,
    })
}

/// The payload's `targetArtifact` must be the pulled manifest: digest, size, media type.
fn check_target(payload: &[u8], target: &Target<'_>) -> Result<(), Error> {
    let bad = |m: &str| Error::new(Reason::BadSignature, format!("the signed payload {m}"));
    let p = Json::parse(payload).map_err(|_| bad("is not JSON without duplicate keys"))?;
    let t = p
        .get("targetArtifact")
        .ok_or_else(|| bad("names no targetArtifact"))?;
    let digest = match t.get("digest") {
        Some(Json::String(s)) => s.clone(),
        _ => return Err(bad("names no digest")),
    };
    let size = match t.get("size") {
        Some(Json::Int(n)) => *n,
        _ => return Err(bad("names no size")),
    };
    let media_type = match t.get("mediaType") {
        Some(Json::String(s)) => s.clone(),
        _ => return Err(bad("names no media type")),
    };
    if digest != target.digest || size != i128::from(target.size) || media_type != target.media_type
    {
        return Err(Error::new(
            Reason::DigestMismatch,
            format!(
                "a valid signature signs {} ({} bytes, {}) but the image pulled is {} ({} bytes, {})",
                digest.chars().take(80).collect::<String>(),
                size,
                media_type.chars().take(80).collect::<String>(),
                target.digest,
                target.size,
                target.media_type
            ),
        ));
    }
    Ok(())
}

/// The certificates from the leaf to the first that is in `store`, each signed by the
/// next; `None` when the chain reaches no certificate of the store.
fn path_to_store<'c>(chain: &'c [Cert], store: &'c [Cert]) -> Option<Vec<&'c Cert>> {
    let mut path = Vec::new();
    for (i, c) in chain.iter().enumerate() {
        path.push(c);
        if store.iter().any(|s| s.der == c.der) {
            return Some(path);
        }
        if i > 0 && !c.is_ca() {
            return None;
        }
        match chain.get(i + 1) {
            Some(next) if c.signed_by(next) => {}
            _ => {
                // The chain's last certificate may be issued by a store certificate the
                // envelope does not carry.
                path.push(store.iter().find(|s| c.signed_by(s))?);
                return Some(path);
            }
        }
    }
    None
}

const ATTRS: [(&str, &str); 10] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "postalCode"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

/// The leaf's subject as (short name, value) pairs.
pub fn subject_attributes(c: &Cert) -> Vec<(String, String)> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    let mut out = Vec::new();
    for rdn in c.cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let name = ATTRS
                .iter()
                .find(|(oid, _)| ObjectIdentifier::new(oid).is_ok_and(|o| o == atv.oid))
                .map_or_else(|| atv.oid.to_string(), |(_, n)| (*n).to_owned());
            let v = &atv.value;
            let value = v
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.to_string())
                .or_else(|_| {
                    v.decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .or_else(|_| v.decode_as::<Ia5StringRef<'_>>().map(|s| s.to_string()))
                .unwrap_or_default();
            out.push((name, value));
        }
    }
    out
}

/// Parses `C=US, ST=WA, O=Acme, CN=signer` (commas inside values escaped as `\,`).
pub fn parse_dn(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut parts = Vec::new();
    let mut escaped = false;
    for ch in s.chars() {
        match ch {
            _ if escaped => {
                cur.push(ch);
                escaped = false;
            }
            '\\' => escaped = true,
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    for p in parts {
        let (k, v) = p.split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return None;
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Some(out)
}

/// Does a trusted identity match the subject? `*` matches any; `x509.subject: DN` matches
/// when every attribute it names is in the subject with the same value.
pub fn identity_matches(identity: &str, subject: &[(String, String)]) -> bool {
    if identity.trim() == "*" {
        return true;
    }
    let Some(dn) = identity.trim().strip_prefix("x509.subject:") else {
        return false;
    };
    let Some(wanted) = parse_dn(dn) else {
        return false;
    };
    !wanted.is_empty()
        && wanted.iter().all(|w| {
            subject
                .iter()
                .any(|s| s.0.eq_ignore_ascii_case(&w.0) && s.1 == w.1)
        })
}
