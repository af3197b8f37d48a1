//! Verifies Notary v1 trust data: does this repository's signed metadata vouch for this
//! tag → digest at this time?
//!
//! What it does: parses root, timestamp, snapshot, targets and delegation files as
//! Notary writes them (a pre-1.0 TUF dialect: capitalised `_type`, base64 hashes and
//! signatures with a `method`, x509-wrapped root keys); recomputes key IDs; checks
//! signatures over Notary's canonical JSON; counts thresholds by distinct keys; follows
//! root rotations through `N.root.json`; checks certificate validity, expiry, hashes,
//! lengths and versions against a previous trusted state; walks delegations; resolves
//! tags with Docker's rules.
//!
//! What it does not: no I/O, no clock, no logging. The caller passes bytes
//! ([`RepoFiles`]), the time ([`VerifyOptions::now`]) and the previous
//! [`TrustedState`], and stores the state it gets back. Nothing here can block. A large
//! repository is hashed and parsed on two threads (scoped, joined before [`verify`]
//! returns; the outcome is the one-thread outcome, errors included), so call it where
//! CPU work belongs (the daemon does, off its async workers).
//!
//! Spec: TUF specification section 5 (client workflow), as Notary 0.7 implements it.
//! Deliberate deviations, all of them stricter than Notary:
//! - duplicate JSON keys and non-integer numbers are rejected ([`canonical`]);
//! - an ECDSA signature must be raw r‖s (Notary also accepts ASN.1 DER, which it never
//!   writes);
//! - a delegation whose bytes do not match the snapshot fails the whole repository.
//!
//! And one more lenient: root keys may be bare keys as well as certificates (Notary
//! requires certificates). Bare keys carry no name or validity period to check.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use proof_kit::canonical;
mod digest;
mod error;
pub mod keys;
pub mod metadata;
mod resolve;
mod verify;

pub use digest::{hex64, Sha256};
pub use error::{fmt_time, human_duration, rfc3339, Error, Reason};
pub use resolve::{TagPolicy, TargetMatch, RELEASES};
pub use verify::{
    verify, Limits, Pins, RepoFiles, RoleInfo, RootAnchor, RootTrust, SkipReason, SkippedRole,
    TrustedState, VerifiedRepo, VerifyOptions, NOTARY_TIMESTAMP_LIFETIME,
};
