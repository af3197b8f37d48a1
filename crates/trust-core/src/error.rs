//! The one error type of this crate, and the stable reason codes of docs/contracts.md §2.

use std::fmt;

use time::OffsetDateTime;

/// Stable, machine-readable reason for a rejection. The string forms are a contract:
/// they appear in `pullguard trust verify --json`, in events, and in alerts.
// Not `non_exhaustive`: the daemon maps every reason to its contract code in an
// exhaustive match, so a new reason without a code is a compile error, not a run-time
// `internal_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The repository has no trust data at all.
    NoTrustData,
    /// A signature by an authorised key failed to verify.
    BadSignature,
    /// Fewer distinct authorised keys signed than the role's threshold.
    ThresholdNotMet,
    /// The root does not match the pinned certificates or key IDs, or is not bound to
    /// this repository name.
    RootNotPinned,
    /// A newer root does not chain to the trusted one.
    RootRotationBroken,
    /// A root certificate is outside its validity period.
    CertificateExpired,
    /// A role's `expires` is in the past.
    Expired,
    /// The timestamp is older than the policy's maximum age.
    StaleTimestamp,
    /// A role's version is lower than one already trusted.
    Rollback,
    /// A file's hash differs from what its parent role lists.
    HashMismatch,
    /// A file's length differs from what its parent role lists.
    LengthMismatch,
    /// The tag is not signed by a role the policy accepts.
    UnknownTag,
    /// The digest asked about is not what the trust data signs.
    DigestMismatch,
    /// The metadata cannot be parsed or breaks the format's rules.
    MalformedMetadata,
    /// An input is larger than its limit.
    Oversized,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 15] = [
        Reason::NoTrustData,
        Reason::BadSignature,
        Reason::ThresholdNotMet,
        Reason::RootNotPinned,
        Reason::RootRotationBroken,
        Reason::CertificateExpired,
        Reason::Expired,
        Reason::StaleTimestamp,
        Reason::Rollback,
        Reason::HashMismatch,
        Reason::LengthMismatch,
        Reason::UnknownTag,
        Reason::DigestMismatch,
        Reason::MalformedMetadata,
        Reason::Oversized,
    ];

    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoTrustData => "no_trust_data",
            Reason::BadSignature => "bad_signature",
            Reason::ThresholdNotMet => "threshold_not_met",
            Reason::RootNotPinned => "root_not_pinned",
            Reason::RootRotationBroken => "root_rotation_broken",
            Reason::CertificateExpired => "certificate_expired",
            Reason::Expired => "expired",
            Reason::StaleTimestamp => "stale_timestamp",
            Reason::Rollback => "rollback",
            Reason::HashMismatch => "hash_mismatch",
            Reason::LengthMismatch => "length_mismatch",
            Reason::UnknownTag => "unknown_tag",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::MalformedMetadata => "malformed_metadata",
            Reason::Oversized => "oversized",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why trust data was not accepted. Every variant maps to one [`Reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required file is missing.
    #[error("{gun}: no trust data ({what}); the repository is not signed, or the trust server does not know it")]
    NoTrustData {
        /// Repository name.
        gun: String,
        /// Which file was missing.
        what: String,
    },
    /// A file is larger than its limit.
    #[error("{role}: {size} bytes is over the {limit}-byte limit")]
    Oversized {
        /// Role or file name.
        role: String,
        /// Its size, as far as it was read or as its parent states it.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Unparseable metadata or metadata that breaks the format's rules.
    #[error("{role}: malformed metadata: {detail}")]
    Malformed {
        /// Role or file name.
        role: String,
        /// What is wrong.
        detail: String,
    },
    /// Not enough distinct authorised keys produced valid signatures, and none of the
    /// signatures by authorised keys was invalid.
    #[error("{role}: {valid} of {threshold} required signatures valid{}", unknown_note(*.unauthorised))]
    ThresholdNotMet {
        /// Role name.
        role: String,
        /// Distinct authorised keys with a valid signature.
        valid: usize,
        /// Required count.
        threshold: u64,
        /// Signatures by keys the role does not authorise.
        unauthorised: usize,
    },
    /// A signature by an authorised key did not verify, and the threshold was not met.
    #[error("{role}: {valid} of {threshold} required signatures valid; signature by key {} does not verify (tampered or wrong key)", short_ids(.invalid))]
    BadSignature {
        /// Role name.
        role: String,
        /// Distinct authorised keys with a valid signature.
        valid: usize,
        /// Required count.
        threshold: u64,
        /// Key IDs whose signatures failed.
        invalid: Vec<String>,
    },
    /// The root is not signed by the pinned keys, or its certificates do not name this
    /// repository.
    #[error("root: {detail}")]
    RootNotPinned {
        /// What failed.
        detail: String,
    },
    /// A root rotation could not be followed from the trusted root.
    #[error("root rotation: {detail}")]
    RootRotationBroken {
        /// What failed.
        detail: String,
    },
    /// Root certificates outside their validity period leave the root role short of its
    /// threshold.
    #[error("root: certificate for key {} {}", short_id(.key_id), validity_note(.not_before, .not_after, .now))]
    CertificateExpired {
        /// Key ID of the certificate.
        key_id: String,
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity.
        not_after: OffsetDateTime,
        /// The time of the check.
        now: OffsetDateTime,
    },
    /// A role's `expires` is in the past.
    #[error("{role} expired {}, {} ago", fmt_time(.expires), human_duration(*.now - *.expires))]
    Expired {
        /// Role name.
        role: String,
        /// Its expiry.
        expires: OffsetDateTime,
        /// The time of the check.
        now: OffsetDateTime,
    },
    /// The timestamp was issued longer ago than allowed.
    #[error("timestamp is stale: issued about {} ({} ago), the policy allows {}", fmt_time(.issued), human_duration(*.now - *.issued), human_duration(*.max_age))]
    StaleTimestamp {
        /// When the timestamp was issued (its expiry less the server's lifetime).
        issued: OffsetDateTime,
        /// The time of the check.
        now: OffsetDateTime,
        /// The maximum age.
        max_age: time::Duration,
    },
    /// A version lower than one already trusted.
    #[error("{role}: version {offered} is older than trusted version {trusted} (rollback)")]
    Rollback {
        /// Role name.
        role: String,
        /// The version offered now.
        offered: u64,
        /// The highest version trusted before.
        trusted: u64,
    },
    /// A delegation this node trusted before is gone from what the server offers.
    #[error("{role}: trusted at version {trusted} before, now {what}; a trust server withholding a delegation is a rollback")]
    RoleWithdrawn {
        /// Role name.
        role: String,
        /// The version trusted before.
        trusted: u64,
        /// How it went missing.
        what: &'static str,
    },
    /// A hash differs from the parent's listing.
    #[error("{role}: {algorithm} is {actual}, but {parent} lists {expected}")]
    HashMismatch {
        /// Role name.
        role: String,
        /// The role that lists it.
        parent: String,
        /// Hash algorithm.
        algorithm: String,
        /// Expected (hex).
        expected: String,
        /// Actual (hex).
        actual: String,
    },
    /// A length differs from the parent's listing.
    #[error("{role}: {actual} bytes, but {parent} lists {expected}")]
    LengthMismatch {
        /// Role name.
        role: String,
        /// The role that lists it.
        parent: String,
        /// Expected length.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// The tag is not signed by an accepted role.
    #[error("tag {tag:?} is not signed in {looked_in}{}", .note.as_deref().map(|n| format!("; {n}")).unwrap_or_default())]
    UnknownTag {
        /// The tag.
        tag: String,
        /// The roles consulted, as a sentence fragment.
        looked_in: String,
        /// Extra help, e.g. where else the tag is signed.
        note: Option<String>,
    },
    /// The digest is not what the trust data signs.
    #[error("{detail}")]
    DigestMismatch {
        /// What was compared.
        detail: String,
    },
}

impl Error {
    /// The stable reason code of this error.
    pub fn reason(&self) -> Reason {
        match self {
            Error::NoTrustData { .. } => Reason::NoTrustData,
            Error::Oversized { .. } => Reason::Oversized,
            Error::Malformed { .. } => Reason::MalformedMetadata,
            Error::ThresholdNotMet { .. } => Reason::ThresholdNotMet,
            Error::BadSignature { .. } => Reason::BadSignature,
            Error::RootNotPinned { .. } => Reason::RootNotPinned,
            Error::RootRotationBroken { .. } => Reason::RootRotationBroken,
            Error::CertificateExpired { .. } => Reason::CertificateExpired,
            Error::Expired { .. } => Reason::Expired,
            Error::StaleTimestamp { .. } => Reason::StaleTimestamp,
            Error::Rollback { .. } | Error::RoleWithdrawn { .. } => Reason::Rollback,
            Error::HashMismatch { .. } => Reason::HashMismatch,
            Error::LengthMismatch { .. } => Reason::LengthMismatch,
            Error::UnknownTag { .. } => Reason::UnknownTag,
            Error::DigestMismatch { .. } => Reason::DigestMismatch,
        }
    }

    pub(crate) fn malformed(role: &str, detail: impl fmt::Display) -> Error {
        Error::Malformed {
            role: role.to_owned(),
            detail: detail.to_string(),
        }
    }
}

fn unknown_note(unauthorised: usize) -> String {
    match unauthorised {
        0 => String::new(),
        1 => "; 1 signature is by a key this role does not authorise".to_owned(),
        n => format!("; {n} signatures are by keys this role does not authorise"),
    }
}

/// The first 12 hex digits of a key ID, as people read them in notary's output.
pub(crate) fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn short_ids(ids: &[String]) -> String {
    ids.iter()
        .map(|id| short_id(id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn validity_note(
    not_before: &OffsetDateTime,
    not_after: &OffsetDateTime,
    now: &OffsetDateTime,
) -> String {
    if now < not_before {
        format!(
            "is not valid until {} ({} from now)",
            fmt_time(not_before),
            human_duration(*not_before - *now)
        )
    } else {
        format!(
            "expired {} ({} ago); the repository owner must rotate the root key",
            fmt_time(not_after),
            human_duration(*now - *not_after)
        )
    }
}

/// RFC 3339 in UTC, `2026-12-09T19:28:05Z`: the one spelling of a time in files, events
/// and JSON output. A time RFC 3339 cannot write (a year beyond 9999) falls back to
/// `OffsetDateTime`'s own text rather than to nothing.
pub fn rfc3339(t: OffsetDateTime) -> String {
    // A time whose UTC value `time` cannot hold keeps its own offset rather than panic.
    let t = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `2026-12-09T19:28Z`: minutes are precise enough for people.
pub fn fmt_time(t: &OffsetDateTime) -> String {
    let Some(t) = t.checked_to_offset(time::UtcOffset::UTC) else {
        return t.to_string();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `3h`, `2d 4h`, `12m`, `40s`: the two largest units.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds().unsigned_abs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate {s}");
        }
    }

    #[test]
    fn expired_message_says_when_and_how_long_ago() {
        let expires = time::macros::datetime!(2026-12-09 19:28:31 UTC);
        let now = expires + time::Duration::hours(3);
        let e = Error::Expired {
            role: "timestamp".into(),
            expires,
            now,
        };
        assert_eq!(e.to_string(), "timestamp expired 2026-12-09T19:28Z, 3h ago");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(time::Duration::seconds(40)), "40s");
        assert_eq!(human_duration(time::Duration::minutes(90)), "1h 30m");
        assert_eq!(human_duration(time::Duration::hours(52)), "2d 4h");
    }
}
