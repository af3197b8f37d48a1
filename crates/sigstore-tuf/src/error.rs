use std::fmt;

/// Why an update was refused; the trusted state is then left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A file could not be fetched (the repository or mirror is unreachable or incomplete).
    Unavailable,
    /// A file does not parse, breaks the format, or is over its size limit.
    Malformed,
    /// Too few of a role's keys signed it (a forged or re-signed copy).
    ThresholdNotMet,
    /// A role's metadata is past its expiry (a freeze, or a stale mirror).
    Expired,
    /// Older metadata than trusted before, or copies of different versions mixed.
    Rollback,
    /// A file's hash or length differs from what was signed for it.
    HashMismatch,
}

impl Reason {
    /// Stable text for messages and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unavailable => "unavailable",
            Reason::Malformed => "malformed_metadata",
            Reason::ThresholdNotMet => "threshold_not_met",
            Reason::Expired => "expired",
            Reason::Rollback => "rollback",
            Reason::HashMismatch => "hash_mismatch",
        }
    }
}

/// A refused update: its reason and one sentence saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// Which check refused it.
    pub reason: Reason,
    /// What was wrong.
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
        write!(f, "{} ({})", self.message, self.reason.as_str())
    }
}
