//! Sigstore (cosign) signatures on container images, verified without I/O: the caller
//! fetches the signature manifests from the registry and hands over their bytes, the
//! keys the rule trusts and the digest being pulled; this crate says whether a signature
//! vouches for exactly that digest, or why not.
//!
//! What cosign writes, and what is checked here:
//! - the *classic* layout ([`classic`]): a manifest at the tag `sha256-<hex>.sig` whose
//!   layers are simple-signing payloads ([`payload`]), each with its signature in the
//!   layer annotation `dev.cosignproject.cosign/signature`;
//! - the *bundle* layout ([`bundle`]): a Sigstore bundle (v0.3) attached to the image
//!   through the OCI 1.1 referrers API.
//!
//! Only a signature that verifies under a trusted key *and* whose signed payload names
//! the pulled digest vouches. Every other outcome is an [`Error`] with a [`Reason`].

#![deny(missing_docs)]

pub mod artifact;
pub mod bundle;
pub mod certs;
pub mod classic;
mod error;
mod intoto;
pub use proof_kit::keys;
pub mod payload;
pub mod rekor;
pub mod trust_root;
pub mod tsa;

pub use error::{Error, Reason};
pub use keys::PublicKey;

/// The largest signature document (simple-signing payload, bundle) accepted: cosign's
/// are under 10 KiB; a megabyte leaves room for certificate chains.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// What the rule expects of a signature.
#[derive(Clone, Copy)]
pub struct Expect<'a> {
    /// The digest pulled, `sha256:<hex>`.
    pub digest: &'a str,
    /// Whether the signature's `docker-reference` names the pulled repository, when the
    /// rule asks (the caller knows how references are normalised).
    pub same_repository: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// The keys the rule trusts; one must have signed.
    pub keys: &'a [PublicKey],
    /// Transparency-log evidence is required.
    pub tlog: bool,
    /// Keyless signer identities the rule accepts (Fulcio certificates).
    pub identities: &'a [certs::Identity],
    /// The trusted root: Fulcio CAs, logs, timestamp authorities. Needed for keyless
    /// signatures and transparency-log evidence.
    pub root: Option<&'a trust_root::TrustedRoot>,
    /// Now, for log entries claiming future integration times.
    pub now: time::OffsetDateTime,
}

/// A signature that vouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The digest it vouches for, `sha256:<hex>`.
    pub digest: String,
    /// The key that signed: its ID (hex SHA-256 of the SubjectPublicKeyInfo).
    pub signer: String,
    /// Where the signature was found: `classic` or `bundle`.
    pub layout: &'static str,
}

/// Keeps the most telling of several failures: when several signatures are present and
/// none vouches, the one that came closest is reported (a valid signature over another
/// digest says more than a signature by an unknown key, which says more than a missing one).
pub type Failures = proof_kit::Failures<Reason>;

/// A signature's base64 as cosign writes it (padding optional, see
/// [`proof_kit::b64::padding_optional`]).
pub(crate) fn base64_any(s: &str) -> Result<Vec<u8>, Error> {
    proof_kit::b64::padding_optional(s).map_err(|e| {
        Error::new(
            Reason::BadSignature,
            format!("signature is not base64: {e}"),
        )
    })
}
