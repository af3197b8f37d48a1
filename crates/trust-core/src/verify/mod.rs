//! The verification pipeline: root → timestamp → snapshot → targets → delegations.
//!
//! Steps follow the TUF specification's client workflow (section 5, "Detailed client
//! workflow") as Notary implements it; each function says which step it is. Here the
//! types and the pipeline; the root's walk in [`root`], signature thresholds, lengths,
//! hashes, expiry and rollback in [`checks`], the delegations in [`delegations`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};
use time::{Duration, OffsetDateTime};

use crate::error::{short_id, Error};
use crate::keys::PublicKey;
use crate::metadata::{
    meta_role_body, parse_meta_role, parse_root, targets_body, valid_child_name, Delegation,
    FileMeta, MetaRole, RoleKeys, Root, Signature, Signed, TargetsRole,
};

mod checks;
mod delegations;
mod root;

use checks::*;
use delegations::Walk;
use root::{establish_root, EstablishedRoot};

const MIB: u64 = 1024 * 1024;

/// Size and count caps, checked before anything is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `timestamp.json`; Notary's own limit is 1 MiB.
    pub timestamp: u64,
    /// Each `root.json` and `N.root.json`. Nothing lists a root's length before it is
    /// trusted, so this cap stands in; real roots are a few KiB.
    pub root: u64,
    /// Any other file, whatever length its parent states.
    pub file: u64,
    /// Delegated roles walked in one repository (endless-data defence).
    pub delegations: usize,
    /// Depth of the delegation tree below `targets`.
    pub delegation_depth: usize,
    /// Root versions walked from the trusted root to the newest. The newest root's
    /// version is read before anything is verified: without a bound a server could name
    /// version 2^63 and have a client walk (or pre-fetch) that many. TUF's clients stop
    /// at 256 (`max_root_rotations`); a chain longer than that is refused.
    pub root_rotations: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timestamp: MIB,
            root: MIB,
            file: 100 * MIB,
            delegations: 1000,
            delegation_depth: 16,
            root_rotations: 256,
        }
    }
}

/// Files as the trust server serves them, by role name without `.json`:
/// `root`, `2.root`, `timestamp`, `snapshot`, `targets`, `targets/releases`.
#[derive(Debug, Clone, Default)]
pub struct RepoFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl RepoFiles {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a file.
    pub fn insert(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(name.into(), bytes);
    }

    /// A file's bytes.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// Names of the files held.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// What a node remembers about a repository between verifications. Verification takes
/// the previous state and hands back the next one; storing it is the caller's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedState {
    /// Repository name.
    pub gun: String,
    /// The last verified `root.json`, as served.
    pub root: String,
    /// Highest version verified, by role.
    pub versions: BTreeMap<String, u64>,
}

/// Pinned root certificates, key IDs and CAs. A root key counts as pinned when any of
/// them matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// Certificates, DER.
    pub certs: Vec<Vec<u8>>,
    /// Key IDs as root.json lists them (for x509 keys: over the certificate).
    pub key_ids: Vec<String>,
    /// CA certificates: a root certificate they issued (directly) counts as pinned while
    /// the CA certificate is valid, and only when no certificate or key ID is pinned
    /// (Notary's order: the most specific kind of pin decides).
    pub cas: Vec<crate::keys::CertInfo>,
}

/// Where trust in the root comes from when no trusted state is given.
#[derive(Debug, Clone, Copy)]
pub enum RootAnchor<'a> {
    /// Trust on first use.
    ///
    /// # Warning
    /// This trusts whatever self-signed root the server serves. Anyone who controls the
    /// trust server or the network for the first contact controls the verdict. Use it
    /// only where that is an explicit, recorded choice.
    FirstUse,
    /// The root must be signed by a threshold of pinned keys.
    Pinned(&'a Pins),
    /// A root trusted earlier: newer roots must chain to it.
    TrustedRoot(&'a [u8]),
}

/// How root trust was established, as reported to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootTrust {
    /// Trust on first use.
    FirstUse,
    /// Pinned keys or certificates.
    Pinned,
    /// Chained from a root given by the caller.
    TrustedRoot,
    /// Chained from the stored trusted state.
    State,
}

impl RootTrust {
    /// `tofu`, `pinned`, `trusted-root` or `state`.
    pub fn as_str(self) -> &'static str {
        match self {
            RootTrust::FirstUse => "tofu",
            RootTrust::Pinned => "pinned",
            RootTrust::TrustedRoot => "trusted-root",
            RootTrust::State => "state",
        }
    }
}

/// Notary-server's default timestamp lifetime; the issue time of a timestamp is its
/// expiry less this, since the format records no issue time.
pub const NOTARY_TIMESTAMP_LIFETIME: Duration = Duration::days(14);

/// Everything verification depends on besides the files.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    /// Repository name (GUN); root certificates must name it.
    pub gun: &'a str,
    /// The time to verify at.
    pub now: OffsetDateTime,
    /// Root trust when `state` is absent; with `state`, pins still apply to the root.
    pub anchor: RootAnchor<'a>,
    /// The previous trusted state: its root is the starting point, its versions the floor.
    pub state: Option<&'a TrustedState>,
    /// Reject a timestamp issued longer ago than this.
    pub max_timestamp_age: Option<Duration>,
    /// How long the server makes timestamps valid (to infer their issue time).
    pub timestamp_lifetime: Duration,
    /// Size and count caps.
    pub limits: Limits,
}

impl<'a> VerifyOptions<'a> {
    /// Options with default limits, no state and no maximum age.
    pub fn new(gun: &'a str, now: OffsetDateTime, anchor: RootAnchor<'a>) -> Self {
        VerifyOptions {
            gun,
            now,
            anchor,
            state: None,
            max_timestamp_age: None,
            timestamp_lifetime: NOTARY_TIMESTAMP_LIFETIME,
            limits: Limits::default(),
        }
    }
}

/// A verified role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
    /// Key IDs whose signatures verified.
    pub signers: Vec<String>,
}

/// A delegation left out of the verified set, and why: one never published, badly
/// named or too deep vouches for nothing (as in Notary). Unlike Notary, a published
/// delegation that cannot be fetched or verified fails the repository instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRole {
    /// Role name.
    pub role: String,
    /// Why it was skipped.
    pub error: SkipReason,
}

/// Why a delegation was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Listed by its parent but absent from the snapshot: never published.
    NotPublished,
    /// Its name breaks Notary's naming rules or is not directly under its parent.
    BadName,
    /// Deeper than the depth limit.
    TooDeep,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotPublished => f.write_str("not in the snapshot (never published)"),
            SkipReason::BadName => f.write_str("invalid delegation name"),
            SkipReason::TooDeep => f.write_str("deeper than the delegation depth limit"),
        }
    }
}

/// A repository whose chain verified.
#[derive(Debug, Clone)]
pub struct VerifiedRepo {
    /// Repository name.
    pub gun: String,
    /// How root trust was established.
    pub root_trust: RootTrust,
    /// Verified roles: `root`, `timestamp`, `snapshot`, `targets` and delegations.
    pub roles: BTreeMap<String, RoleInfo>,
    /// Delegations that vouch for nothing, and why.
    pub skipped: Vec<SkippedRole>,
    /// The state to remember for the next verification.
    pub state: TrustedState,
    /// Targets each verified targets role may vouch for, path rules applied.
    pub(crate) targets: BTreeMap<String, BTreeMap<String, FileMeta>>,
    /// Targets roles in the order Notary walks them: `targets`, then depth first.
    pub(crate) walk_order: Vec<String>,
}

/// Verifies a repository's whole chain at `opts.now`.
pub fn verify(files: &RepoFiles, opts: &VerifyOptions<'_>) -> Result<VerifiedRepo, Error> {
    if let Some(state) = opts.state {
        if state.gun != opts.gun {
            return Err(Error::malformed(
                "trusted state",
                format!("state is for {}, not {}", state.gun, opts.gun),
            ));
        }
    }
    let mut roles = BTreeMap::new();
    let EstablishedRoot {
        root,
        bytes: root_bytes,
        trust: root_trust,
        signers: root_signers,
    } = establish_root(files, opts)?;
    roles.insert("root".to_owned(), info(&root.body.common, root_signers));

    // Fast-forward recovery (TUF 5.3.11): a root that replaced the timestamp or snapshot
    // keys voids the versions those keys vouched for — whoever held the old keys may
    // have inflated them — and one that replaced the targets key, the targets version.
    // Only a root signed by the old root keys can do this.
    let recovered;
    let reset_opts;
    let opts = match opts.state {
        Some(state) => {
            recovered = forget_rotated_versions(state, &root.body);
            reset_opts = VerifyOptions {
                state: Some(&recovered),
                ..opts.clone()
            };
            &reset_opts
        }
        None => opts,
    };

    let timestamp = verify_timestamp(files, &root.body, opts)?;
    roles.insert(
        "timestamp".to_owned(),
        info(&timestamp.0.body.common, timestamp.1),
    );

    let (snapshot, snapshot_signers) = verify_snapshot(files, &root.body, &timestamp.0.body, opts)?;
    if let Some(meta) = snapshot.body.meta.get("root") {
        // Mix-and-match defence: the root served must be the one the snapshot names.
        check_file("root", "snapshot", root_bytes, meta, opts.limits.root)?;
    }
    roles.insert(
        "snapshot".to_owned(),
        info(&snapshot.body.common, snapshot_signers),
    );

    let (targets, targets_signers) = verify_targets(files, &root.body, &snapshot.body, opts)?;
    roles.insert(
        "targets".to_owned(),
        info(&targets.body.common, targets_signers),
    );

    let mut walk = Walk {
        files,
        snapshot: &snapshot.body,
        opts,
        roles: &mut roles,
        skipped: Vec::new(),
        targets: BTreeMap::new(),
        order: Vec::new(),
        count: 0,
    };
    walk.visit("targets", targets.body, &[String::new()], 0)?;
    let (skipped, targets_by_role, walk_order) = (walk.skipped, walk.targets, walk.order);

    let mut versions = opts.state.map(|s| s.versions.clone()).unwrap_or_default();
    for (name, r) in &roles {
        let v = versions.entry(name.clone()).or_insert(0);
        *v = (*v).max(r.version);
    }
    let state = TrustedState {
        gun: opts.gun.to_owned(),
        root: String::from_utf8_lossy(root_bytes).into_owned(),
        versions,
    };
    Ok(VerifiedRepo {
        gun: opts.gun.to_owned(),
        root_trust,
        roles,
        skipped,
        state,
        targets: targets_by_role,
        walk_order,
    })
}

fn info(common: &crate::metadata::Common, signers: Vec<String>) -> RoleInfo {
    RoleInfo {
        version: common.version,
        expires: common.expires,
        signers,
    }
}

/// TUF 5.4 (update the timestamp role).
fn verify_timestamp(
    files: &RepoFiles,
    root: &Root,
    opts: &VerifyOptions<'_>,
) -> Result<(Signed<MetaRole>, Vec<String>), Error> {
    let bytes = files.get("timestamp").ok_or_else(|| Error::NoTrustData {
        gun: opts.gun.to_owned(),
        what: "no timestamp.json".to_owned(),
    })?;
    cap("timestamp", bytes, opts.limits.timestamp)?;
    let ts = parse_meta_role("timestamp", "Timestamp", bytes)?;
    let signers = signed_by("timestamp", &ts, &root.keys, &root_role(root, "timestamp")?)?;
    no_rollback("timestamp", ts.body.common.version, opts.state)?;
    not_expired("timestamp", ts.body.common.expires, opts.now)?;
    if let Some(max_age) = opts.max_timestamp_age {
        let issued = ts.body.common.expires - opts.timestamp_lifetime;
        if opts.now - issued > max_age {
            return Err(Error::StaleTimestamp {
                issued,
                now: opts.now,
                max_age,
            });
        }
    }
    if !ts.body.meta.contains_key("snapshot") {
        return Err(Error::malformed("timestamp", "lists no snapshot"));
    }
    Ok((ts, signers))
}

fn required<'f>(files: &'f RepoFiles, role: &str) -> Result<&'f [u8], Error> {
    files.get(role).ok_or_else(|| {
        Error::malformed(
            role,
            format!("{role}.json is missing: the repository's trust data is incomplete"),
        )
    })
}

/// TUF 5.5 (update the snapshot role).
fn verify_snapshot(
    files: &RepoFiles,
    root: &Root,
    timestamp: &MetaRole,
    opts: &VerifyOptions<'_>,
) -> Result<(Signed<MetaRole>, Vec<String>), Error> {
    let bytes = required(files, "snapshot")?;
    let meta = timestamp
        .meta
        .get("snapshot")
        .ok_or_else(|| Error::malformed("timestamp", "lists no snapshot"))?;
    let authorised = root_role(root, "snapshot")?;
    let (snap, t) = check_then_parse(
        "snapshot",
        "timestamp",
        bytes,
        meta,
        opts.limits.file,
        (&root.keys, &authorised),
        |s| meta_role_body("snapshot", "Snapshot", s),
    )?;
    let signers = passed("snapshot", &t, &authorised)?;
    no_rollback("snapshot", snap.body.common.version, opts.state)?;
    not_expired("snapshot", snap.body.common.expires, opts.now)?;
    Ok((snap, signers))
}

/// TUF 5.6 (update the targets role).
fn verify_targets(
    files: &RepoFiles,
    root: &Root,
    snapshot: &MetaRole,
    opts: &VerifyOptions<'_>,
) -> Result<(Signed<TargetsRole>, Vec<String>), Error> {
    let bytes = required(files, "targets")?;
    let meta = snapshot
        .meta
        .get("targets")
        .ok_or_else(|| Error::malformed("snapshot", "lists no targets"))?;
    let authorised = root_role(root, "targets")?;
    let (targets, t) = check_then_parse(
        "targets",
        "snapshot",
        bytes,
        meta,
        opts.limits.file,
        (&root.keys, &authorised),
        |s| targets_body("targets", s),
    )?;
    let signers = passed("targets", &t, &authorised)?;
    no_rollback("targets", targets.body.common.version, opts.state)?;
    not_expired("targets", targets.body.common.expires, opts.now)?;
    Ok((targets, signers))
}
