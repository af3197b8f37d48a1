//! Sigstore's trusted root kept fresh the way TUF says (the TUF specification 1.0, §5
//! "Detailed client workflow"), for the top-level roles Sigstore's repository signs
//! `trusted_root.json` with: a new root is trusted only when a threshold of the old
//! root's keys and of its own signed it, one version at a time; the timestamp, snapshot
//! and targets must be signed by their roles' thresholds, not expired at `now`, never
//! older than what was trusted before (rollback), and agree with each other's versions
//! and hashes (no mix-and-match); the target's bytes must have the length and hashes the
//! targets role signed.
//!
//! Why our own and not a crate: `tough` (the maintained Rust client) verifies with
//! aws-lc (a second crypto stack beside ring, against deny.toml's rule), cannot be told
//! what time it is (the tests pin the clock; the repository's copies expire weekly),
//! refuses a root of Sigstore's real history (v11: a key ID that is not the hash it
//! should be; python-tuf and sigstore-go accept it) and loads the npm delegation eagerly,
//! so its expiry would block the trusted root. `tuf` (rust-tuf) has no ECDSA. This
//! crate reuses trust-core's canonical JSON and sigstore-core's ring-backed keys.
//!
//! No I/O: the caller fetches (HTTP from Sigstore's CDN or a mirror, a directory copied
//! onto an offline node) through [`Fetch`] and keeps the [`State`] it returns.

#![deny(missing_docs)]

mod error;
mod metadata;

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256, Sha512};
use time::OffsetDateTime;

pub use error::{Error, Reason};
use metadata::{Meta, Root, Signed};

/// The root of Sigstore's public-good TUF repository pullguard starts from (version 15,
/// as sigstore-python 4.5 embeds it; root-signing `metadata/root_history/15.root.json`):
/// an update walks from it to the newest root the repository has.
pub const EMBEDDED_ROOT: &[u8] = include_bytes!("../data/root.json");

/// Where Sigstore serves that repository.
pub const PUBLIC_GOOD_REPOSITORY: &str = "https://tuf-repo-cdn.sigstore.dev";

/// The largest root, timestamp, snapshot, targets file and target read. Sigstore's are
/// a few kilobytes; these leave room without letting a mirror feed us gigabytes.
pub const MAX_ROOT: u64 = 512 * 1024;
/// See [`MAX_ROOT`].
pub const MAX_TIMESTAMP: u64 = 64 * 1024;
/// See [`MAX_ROOT`].
pub const MAX_METADATA: u64 = 4 * 1024 * 1024;
/// See [`MAX_ROOT`].
pub const MAX_TARGET: u64 = 4 * 1024 * 1024;
/// Root versions walked in one update at most (python-tuf's default).
pub const MAX_ROOT_ROTATIONS: u64 = 256;

/// Where the repository's files come from: `path` is relative to the repository's base
/// (`16.root.json`, `timestamp.json`, `165.snapshot.json`, `targets/<sha256>.<name>`).
/// `Ok(None)` when the file does not exist; `Err` when it could not be fetched. At most
/// `max` bytes are read: more is an error.
pub trait Fetch {
    /// The file at `path`, at most `max` bytes.
    fn fetch(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String>;
}

/// What a client trusts between updates: the metadata it verified last, as fetched.
/// Persist it whole, atomically; the next update starts from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The newest root verified.
    pub root: Vec<u8>,
    /// The timestamp verified last.
    pub timestamp: Option<Vec<u8>>,
    /// The snapshot verified last.
    pub snapshot: Option<Vec<u8>>,
    /// The top-level targets verified last.
    pub targets: Option<Vec<u8>>,
}

impl State {
    /// A client that trusts only `root` (an embedded or operator-provided root.json).
    pub fn from_root(root: Vec<u8>) -> State {
        State {
            root,
            timestamp: None,
            snapshot: None,
            targets: None,
        }
    }
}

/// The outcome of an update.
#[derive(Debug, Clone)]
pub struct Updated {
    /// The state to keep.
    pub state: State,
    /// The target's bytes, verified.
    pub target: Vec<u8>,
    /// The root now trusted: version and expiry.
    pub root_version: u64,
    /// When that root expires.
    pub root_expires: OffsetDateTime,
    /// The timestamp's expiry: the next update must come before it.
    pub timestamp_expires: OffsetDateTime,
    /// The targets role's version.
    pub targets_version: u64,
}

/// Updates `state` from `fetch` at `now` (TUF §5.3–5.7) and returns the verified bytes of
/// the top-level target `target` (`trusted_root.json`).
pub fn update(
    state: &State,
    fetch: &mut dyn Fetch,
    now: OffsetDateTime,
    target: &str,
) -> Result<Updated, Error> {
    // §5.3: the trusted root, then every newer one that its predecessor's keys admit.
    let mut root_bytes = state.root.clone();
    let mut root = Root::parse(&Signed::parse(&root_bytes, "root")?)?;
    let first = root.version;
    let old_roles = root.clone();
    root.verify_role(&Signed::parse(&root_bytes, "root")?, "root")?;
    loop {
        let next = root.version + 1;
        if next - first > MAX_ROOT_ROTATIONS {
            return Err(Error::new(
                Reason::Malformed,
                format!("more than {MAX_ROOT_ROTATIONS} new root versions in one update"),
            ));
        }
        let Some(bytes) = get(fetch, &format!("{next}.root.json"), MAX_ROOT)? else {
            break;
        };
        let signed = Signed::parse(&bytes, "root")?;
        // Signed by a threshold of the trusted root's root keys, and of its own.
        root.verify_role(&signed, "root")?;
        let new = Root::parse(&signed)?;
        new.verify_role(&signed, "root")?;
        if new.version != next {
            return Err(Error::new(
                Reason::Rollback,
                format!("{next}.root.json is version {}, not {next}", new.version),
            ));
        }
        root = new;
        root_bytes = bytes;
    }
    // §5.3.10: an expired root is a freeze attack (or a repository left unattended).
    if root.expires <= now {
        return Err(expired("root", root.version, root.expires, now));
    }
    // §5.3.11: new timestamp or snapshot keys void what was trusted under the old ones.
    let rotated = |role: &str| old_roles.role(role) != root.role(role);
    let mut old_timestamp = state.timestamp.clone();
    let mut old_snapshot = state.snapshot.clone();
    if root.version != first && (rotated("timestamp") || rotated("snapshot")) {
        old_timestamp = None;
        old_snapshot = None;
    }

    // §5.4: the timestamp.
    let ts_bytes = get(fetch, "timestamp.json", MAX_TIMESTAMP)?
        .ok_or_else(|| Error::new(Reason::Unavailable, "the repository has no timestamp.json"))?;
    let ts_signed = Signed::parse(&ts_bytes, "timestamp")?;
    root.verify_role(&ts_signed, "timestamp")?;
    let ts = Meta::parse(&ts_signed, "timestamp")?;
    let snapshot_meta = ts.file("snapshot.json")?;
    if let Some(old) = old_timestamp.as_deref() {
        let old = Meta::parse(&Signed::parse(old, "timestamp")?, "timestamp")?;
        if ts.version < old.version {
            return Err(rollback("timestamp", ts.version, old.version));
        }
        let old_snap = old.file("snapshot.json")?;
        if snapshot_meta.version < old_snap.version {
            return Err(rollback(
                "snapshot (as the timestamp lists it)",
                snapshot_meta.version,
                old_snap.version,
            ));
        }
    }
    if ts.expires <= now {
        return Err(expired("timestamp", ts.version, ts.expires, now));
    }

    // §5.5: the snapshot the timestamp names.
    let name = if root.consistent_snapshot {
        format!("{}.snapshot.json", snapshot_meta.version)
    } else {
        "snapshot.json".to_owned()
    };
    let snap_bytes = get(
        fetch,
        &name,
        snapshot_meta
            .length
            .unwrap_or(MAX_METADATA)
            .min(MAX_METADATA),
    )?
    .ok_or_else(|| Error::new(Reason::Unavailable, format!("the repository has no {name}")))?;
    snapshot_meta.check_bytes(&snap_bytes, &name)?;
    let snap_signed = Signed::parse(&snap_bytes, "snapshot")?;
    root.verify_role(&snap_signed, "snapshot")?;
    let snap = Meta::parse(&snap_signed, "snapshot")?;
    if snap.version != snapshot_meta.version {
        return Err(Error::new(
            Reason::Rollback,
            format!(
                "{name} is version {}, and the timestamp names version {} (mixed copies)",
                snap.version, snapshot_meta.version
            ),
        ));
    }
    if let Some(old) = old_snapshot.as_deref() {
        let old = Meta::parse(&Signed::parse(old, "snapshot")?, "snapshot")?;
        for (file, was) in &old.meta {
            let Some(now_meta) = snap.meta.get(file) else {
                return Err(Error::new(
                    Reason::Rollback,
                    format!("the new snapshot no longer lists {file}"),
                ));
            };
            if now_meta.version < was.version {
                return Err(rollback(file, now_meta.version, was.version));
            }
        }
    }
    if snap.expires <= now {
        return Err(expired("snapshot", snap.version, snap.expires, now));
    }

    // §5.6: the targets the snapshot names.
    let targets_meta = snap.file("targets.json")?;
    let name = if root.consistent_snapshot {
        format!("{}.targets.json", targets_meta.version)
    } else {
        "targets.json".to_owned()
    };
    let tgt_bytes = get(
        fetch,
        &name,
        targets_meta
            .length
            .unwrap_or(MAX_METADATA)
            .min(MAX_METADATA),
    )?
    .ok_or_else(|| Error::new(Reason::Unavailable, format!("the repository has no {name}")))?;
    targets_meta.check_bytes(&tgt_bytes, &name)?;
    let tgt_signed = Signed::parse(&tgt_bytes, "targets")?;
    root.verify_role(&tgt_signed, "targets")?;
    let targets = Meta::parse(&tgt_signed, "targets")?;
    if targets.version != targets_meta.version {
        return Err(Error::new(
            Reason::Rollback,
            format!(
                "{name} is version {}, and the snapshot names version {} (mixed copies)",
                targets.version, targets_meta.version
            ),
        ));
    }
    if targets.expires <= now {
        return Err(expired("targets", targets.version, targets.expires, now));
    }

    // §5.7: the target, by the hash the targets role signed.
    let file = targets.target(target)?;
    let sha256 = file.hashes.get("sha256").ok_or_else(|| {
        Error::new(
            Reason::Malformed,
            format!("the targets role gives {target} no sha256"),
        )
    })?;
    let path = if root.consistent_snapshot {
        format!("targets/{sha256}.{target}")
    } else {
        format!("targets/{target}")
    };
    let length = file.length.ok_or_else(|| {
        Error::new(
            Reason::Malformed,
            format!("the targets role gives {target} no length"),
        )
    })?;
    if length > MAX_TARGET {
        return Err(Error::new(
            Reason::Malformed,
            format!("{target} is {length} bytes, over the limit of {MAX_TARGET}"),
        ));
    }
    let bytes = get(fetch, &path, length)?
        .ok_or_else(|| Error::new(Reason::Unavailable, format!("the repository has no {path}")))?;
    file.check_bytes(&bytes, &path)?;
    Ok(Updated {
        state: State {
            root: root_bytes,
            timestamp: Some(ts_bytes),
            snapshot: Some(snap_bytes),
            targets: Some(tgt_bytes),
        },
        target: bytes,
        root_version: root.version,
        root_expires: root.expires,
        timestamp_expires: ts.expires,
        targets_version: targets.version,
    })
}

fn get(fetch: &mut dyn Fetch, path: &str, max: u64) -> Result<Option<Vec<u8>>, Error> {
    let got = fetch
        .fetch(path, max)
        .map_err(|e| Error::new(Reason::Unavailable, format!("{path}: {e}")))?;
    match got {
        Some(b) if b.len() as u64 > max => Err(Error::new(
            Reason::Malformed,
            format!("{path} is over its limit of {max} bytes"),
        )),
        other => Ok(other),
    }
}

fn expired(role: &str, version: u64, at: OffsetDateTime, now: OffsetDateTime) -> Error {
    Error::new(
        Reason::Expired,
        format!(
            "the {role} (version {version}) expired at {} (now {}): the repository or mirror is stale, or someone holds back newer copies",
            trust_core::rfc3339(at),
            trust_core::rfc3339(now)
        ),
    )
}

fn rollback(what: &str, got: u64, had: u64) -> Error {
    Error::new(
        Reason::Rollback,
        format!("{what} is version {got}, older than version {had} trusted before"),
    )
}

/// Hashes as the targets and snapshot roles list them: each given one must match.
fn check_hashes(hashes: &BTreeMap<String, String>, bytes: &[u8], what: &str) -> Result<(), Error> {
    for (alg, want) in hashes {
        let got = match alg.as_str() {
            "sha256" => hex::encode(Sha256::digest(bytes)),
            "sha512" => hex::encode(Sha512::digest(bytes)),
            _ => continue,
        };
        if !got.eq_ignore_ascii_case(want) {
            return Err(Error::new(
                Reason::HashMismatch,
                format!("{what}'s {alg} is {got}, not the {want} signed for it"),
            ));
        }
    }
    Ok(())
}
