/// Why a signature does not vouch; each maps to one reason code of pullguard's.
/// Declared from the least to the most telling: the order ranks failures
/// ([`proof_kit::Ranked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Nothing that looks like a signature for the digest.
    NoSignature,
    /// A signature is there but does not verify under any trusted key, or is malformed.
    BadSignature,
    /// Transparency-log evidence is required and missing or not verifiable.
    TlogMissing,
    /// A signing certificate was not valid when the signature was made.
    CertificateExpired,
    /// A valid signature names another repository, or another signer than the rule's.
    IdentityMismatch,
    /// A valid signature names another digest.
    DigestMismatch,
}

impl proof_kit::Ranked for Reason {
    const NONE: Reason = Reason::NoSignature;
    const CANDIDATE: &'static str = "cosign signature";
}

impl Reason {
    /// pullguard's reason code text.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoSignature => "no_signature",
            Reason::BadSignature => "bad_signature",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::TlogMissing => "tlog_missing",
            Reason::CertificateExpired => "certificate_expired",
        }
    }
}

/// A failure: its reason and one sentence saying what was wrong.
pub type Error = proof_kit::Failure<Reason>;
