//! RFC 3161 timestamps from a timestamp authority of the trusted root: a signed statement
//! that a signature existed at `genTime`, which then stands for the signing time. The
//! token's checks are `proof_kit::tsa`'s (shared with Notation's countersignatures).

use time::OffsetDateTime;

pub use proof_kit::tsa::{verify_token, Authorities, Stamp};

use crate::trust_root::TrustedRoot;
use crate::{Error, Reason};

/// Verifies a DER TimeStampResp (as bundles carry it) over `signature` (the bytes the
/// timestamp must cover) against the trusted root's timestamp authorities; returns the
/// time it states. A timestamp that proves nothing leaves the signing time unproven
/// (`tlog_missing`, as a missing log entry does).
pub fn verify(
    response: &[u8],
    signature: &[u8],
    root: &TrustedRoot,
) -> Result<OffsetDateTime, Error> {
    proof_kit::tsa::verify(response, signature, &root.tsas)
        .map_err(|e| Error::new(Reason::TlogMissing, e.to_string()))
}
