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

#![deny(missing_docs)]

pub mod cbor;
pub mod dn;
pub mod envelope;
pub mod profile;

pub use dn::identity_matches;

use proof_kit::canonical::Json;
use sigstore_core::certs::Cert;
use time::OffsetDateTime;

/// The largest envelope read.
pub const MAX_ENVELOPE: usize = 1 << 20;

/// Why a signature does not vouch. Declared from the least to the most telling: the
/// order ranks failures ([`proof_kit::Ranked`]). A signature refused for its timestamp
/// passed the certificate profile but may not lead to a trust store; one refused for
/// its chain is one whose timestamp (if any was asked for) verified: the timestamp ranks
/// above the signer as the other checks of time (certificate validity, expiry) do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// No signature for the image.
    NoSignature,
    /// Something this verifier refuses to handle: a plugin, an unknown critical
    /// attribute, an algorithm it cannot check.
    Unsupported,
    /// Integrity: the envelope is malformed or its signature does not verify.
    BadSignature,
    /// Authenticity: the chain leads to no certificate of the rule's trust stores.
    UntrustedSigner,
    /// A timestamp countersignature that does not verify against the `tsa` trust stores.
    UntrustedTimestamp,
    /// Authenticity: the leaf's subject is none of the trusted identities.
    IdentityMismatch,
    /// A certificate of the chain is not valid at the time that counts.
    CertificateExpired,
    /// The signature's own expiry (`io.cncf.notary.expiry`) has passed.
    Expired,
    /// Integrity: a valid signature over another manifest.
    DigestMismatch,
}

impl proof_kit::Ranked for Reason {
    const NONE: Reason = Reason::NoSignature;
    const CANDIDATE: &'static str = "Notary Project signature";
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
}

/// A failure: which check refused it, and what was wrong.
pub type Error = proof_kit::Failure<Reason>;

/// Keeps the most telling of several signatures' failures.
pub type Failures = proof_kit::Failures<Reason>;

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
    /// How strictly (Notation's verification level).
    pub level: Level,
    /// The time to judge validity at when no timestamp proves another.
    pub now: OffsetDateTime,
}

/// The manifest pulled.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `sha256:<hex>`.
    pub digest: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: &'a str,
}

/// A signature that vouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The leaf certificate's subject.
    pub signer: String,
    /// `jws` or `cose`.
    pub envelope: &'static str,
    /// Failures the level let through (logged, not refused): each with its reason, so
    /// that the verdict can show the failed check.
    pub logged: Vec<Error>,
    /// When this verdict stops holding (strict level): the signature's expiry, and the
    /// end of its chain's validity when that was checked at `now` (no timestamp or
    /// authentic signing time fixed the moment). A verdict kept for later must not be
    /// served past it.
    pub expires: Option<OffsetDateTime>,
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
    // The algorithm is bound to the leaf's key, as Notation binds it (P-256 ES256, P-384
    // ES384, P-521 ES512, RSA 2048/3072/4096 PS256/384/512). P-521 is Notation's but
    // not pullguard's: refused as unsupported, never as a bad signature.
    let spec = profile::key_spec(leaf);
    match spec.and_then(profile::KeySpec::algorithm) {
        Some(alg) if alg != env.alg => {
            return Err(bad(format!(
                "the envelope says {:?} but the leaf's key signs with {alg}",
                env.alg.chars().take(20).collect::<String>()
            )))
        }
        Some("ES512") => {
            return Err(Error::new(
                Reason::Unsupported,
                "an ES512 signature by a P-521 key: Notation allows them, pullguard does not verify them (sign with ES256/ES384 or PS256/PS384/PS512)",
            ))
        }
        Some(_) => {}
        None => {
            return Err(Error::new(
                Reason::Unsupported,
                format!(
                    "the leaf's key is not one Notation signs with ({spec:?}); algorithm {:?}",
                    env.alg.chars().take(20).collect::<String>()
                ),
            ))
        }
    }
    let key = leaf.public_key().map_err(|e| bad(e.to_string()))?;
    if !key.verify_jose(&env.alg, &env.signed, &env.signature) {
        return Err(bad(
            "the signature does not verify under its leaf certificate".to_owned(),
        ));
    }
    check_target(&env.payload, target)?;
    // The chain's profile is part of the envelope's integrity in Notation: refused at
    // every level.
    profile::check_chain(&chain).map_err(|e| {
        Error::new(
            Reason::UntrustedSigner,
            format!("the certificate chain breaks the Notary Project's certificate profile: {e}"),
        )
    })?;

    let mut logged = Vec::new();
    let mut judge = |e: Error, refuses: bool| -> Result<(), Error> {
        if refuses {
            Err(e)
        } else {
            logged.push(e);
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
        use proof_kit::tsa::{verify_token_chain, Authorities};
        match &env.timestamp {
            Some(token) => match verify_token_chain(token, &env.signature, Authorities::Roots(trust.tsa))
                .and_then(|(t, chain)| match profile::check_tsa_chain(&chain) {
                    Ok(()) => Ok(t),
                    Err(why) => Err(proof_kit::Error::Timestamp(format!("its certificate chain breaks the Notary Project's profile: {why}"))),
                }) {
                Ok(t) => stamped = t.range(),
                Err(e) => judge(Error::new(Reason::UntrustedTimestamp, e.to_string()), time_refuses)?,
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
    // Trusted when a certificate of the chain is one of the store's (as Notation: byte
    // equality), and every certificate of the chain valid at the time that counts.
    if chain
        .iter()
        .any(|c| store.iter().any(|s| s.der() == c.der()))
    {
        if let Some(c) = chain
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
    } else {
        judge(
            Error::new(
                Reason::UntrustedSigner,
                format!(
                    "the certificate chain holds no certificate of the rule's {} trust stores",
                    if store.len() == trust.ca.len() {
                        "ca"
                    } else {
                        "signingAuthority"
                    }
                ),
            ),
            authenticity_refuses,
        )?;
    }
    let (shown, matched) = match dn::subject(leaf) {
        Ok(subject) => (
            dn::show(&subject),
            trust
                .identities
                .iter()
                .any(|i| identity_matches(i, &subject)),
        ),
        // `*` trusts any signer of the stores; no other identity can match such a subject.
        Err(why) => (
            format!("{} ({why})", leaf.certificate().tbs_certificate.subject),
            trust.identities.iter().any(|i| i.trim() == "*"),
        ),
    };
    if !matched {
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
    let expires = if time_refuses {
        let chain_ends = (when == (trust.now, trust.now))
            .then(|| chain.iter().map(|c| c.validity().1).min())
            .flatten();
        env.expiry.into_iter().chain(chain_ends).min()
    } else {
        None
    };
    Ok(Verified {
        expires,
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
