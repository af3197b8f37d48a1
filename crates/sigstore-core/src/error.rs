use std::fmt;

/// Why a signature does not vouch; each maps to one reason code of pullguard's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing that looks like a signature for the digest.
    NoSignature,
    /// A signature is there but does not verify under any trusted key, or is malformed.
    BadSignature,
    /// A valid signature names another digest.
    DigestMismatch,
    /// A valid signature names another repository, or another signer than the rule's.
    IdentityMismatch,
    /// Transparency-log evidence is required and missing or not verifiable.
    TlogMissing,
    /// A signing certificate was not valid when the signature was made.
    CertificateExpired,
}

impl Reason {
    /// How close a failure came to vouching; the closest is reported.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Reason::NoSignature => 0,
            Reason::BadSignature => 1,
            Reason::TlogMissing => 2,
            Reason::CertificateExpired => 3,
            Reason::IdentityMismatch => 4,
            Reason::DigestMismatch => 5,
        }
    }

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// Why.
    pub reason: Reason,
    /// What, for people.
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
