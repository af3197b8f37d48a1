//! proof-kit's one error: which kind of input was refused, and one sentence saying why.
//! Each format crate turns it into its own reason (a certificate that does not parse is a
//! `bad_signature` for cosign and Notation alike; a timestamp that proves nothing is
//! cosign's `tlog_missing` and Notation's `untrusted_timestamp`).

use std::fmt;

/// An input refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Text that is not base64 of the variant asked for.
    Base64(String),
    /// A document that is not an OCI image manifest (or one over the limits).
    Manifest(String),
    /// A certificate that is not one, or whose key cannot be used.
    Certificate(String),
    /// A timestamp that proves nothing.
    Timestamp(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Base64(m) | Error::Manifest(m) | Error::Certificate(m) => f.write_str(m),
            Error::Timestamp(m) => write!(f, "timestamp: {m}"),
        }
    }
}

impl std::error::Error for Error {}
