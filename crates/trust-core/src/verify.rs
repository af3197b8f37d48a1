//! The verification pipeline: root → timestamp → snapshot → targets → delegations.
//!
//! Steps follow the TUF specification's client workflow (section 5, "Detailed client
//! workflow") as Notary implements it; each function says which step it is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};
use time::{Duration, OffsetDateTime};

use crate::error::{short_id, Error};
use crate::keys::PublicKey;
use crate::metadata::{
    parse_meta_role, parse_root, parse_targets, valid_child_name, FileMeta, MetaRole, RoleKeys,
    Root, Signature, Signed, TargetsRole,
};

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timestamp: MIB,
            root: MIB,
            file: 100 * MIB,
            delegations: 1000,
            delegation_depth: 16,
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
    /// the CA certificate is valid.
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

/// How far in the future a root or CA certificate's notBefore may be, as Notary allows
/// (`tuf/utils/x509.go`: `now.AddDate(0, 0, 1)`).
const CERT_NOT_BEFORE_LEEWAY: Duration = Duration::DAY;

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
    walk.visit("targets", &targets.body, &[String::new()], 0)?;
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

/// Signatures of one file, counted once per distinct authorised key.
#[derive(Debug, Default)]
struct Tally {
    valid: BTreeSet<String>,
    invalid: BTreeSet<String>,
    unauthorised: usize,
}

fn tally(
    canonical: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<String, PublicKey>,
    authorised: &RoleKeys,
) -> Tally {
    let mut t = Tally::default();
    for sig in signatures {
        if !authorised.keyids.contains(&sig.keyid) {
            t.unauthorised += 1;
            continue;
        }
        let ok = match (keys.get(&sig.keyid), &sig.sig) {
            (Some(key), Some(bytes)) => key.verify(&sig.method, canonical, bytes),
            _ => false,
        };
        if ok {
            t.valid.insert(sig.keyid.clone());
        } else {
            t.invalid.insert(sig.keyid.clone());
        }
    }
    // A key with one good and one bad signature still signed.
    t.invalid.retain(|id| !t.valid.contains(id));
    t
}

/// The one threshold rule for every role: at least `threshold` distinct authorised keys
/// that pass `counts` produced valid signatures.
fn threshold_met(
    role: &str,
    t: &Tally,
    threshold: u64,
    counts: impl Fn(&str) -> bool,
) -> Result<Vec<String>, Error> {
    let signers: Vec<String> = t.valid.iter().filter(|id| counts(id)).cloned().collect();
    if signers.len() as u64 >= threshold {
        return Ok(signers);
    }
    if t.invalid.is_empty() {
        Err(Error::ThresholdNotMet {
            role: role.to_owned(),
            valid: signers.len(),
            threshold,
            unauthorised: t.unauthorised,
        })
    } else {
        Err(Error::BadSignature {
            role: role.to_owned(),
            valid: signers.len(),
            threshold,
            invalid: t.invalid.iter().cloned().collect(),
        })
    }
}

fn signed_by<T>(
    role: &str,
    file: &Signed<T>,
    keys: &BTreeMap<String, PublicKey>,
    authorised: &RoleKeys,
) -> Result<Vec<String>, Error> {
    let t = tally(&file.canonical, &file.signatures, keys, authorised);
    threshold_met(role, &t, authorised.threshold, |_| true)
}

fn root_role(root: &Root, role: &str) -> Result<RoleKeys, Error> {
    // parse_root guarantees the four top-level roles exist.
    root.roles
        .get(role)
        .cloned()
        .ok_or_else(|| Error::malformed("root", format!("no {role} role")))
}

fn cap(role: &str, bytes: &[u8], limit: u64) -> Result<(), Error> {
    let size = bytes.len() as u64;
    if size > limit {
        return Err(Error::Oversized {
            role: role.to_owned(),
            size,
            limit,
        });
    }
    Ok(())
}

fn not_expired(role: &str, expires: OffsetDateTime, now: OffsetDateTime) -> Result<(), Error> {
    if expires < now {
        return Err(Error::Expired {
            role: role.to_owned(),
            expires,
            now,
        });
    }
    Ok(())
}

/// `state` without the versions whose keys the verified `root` replaced since the root
/// `state` trusted.
fn forget_rotated_versions(state: &TrustedState, root: &Root) -> TrustedState {
    let mut out = state.clone();
    let Ok(old) = parse_root("trusted root", state.root.as_bytes()) else {
        return out;
    };
    if old.body.common.version >= root.common.version {
        return out;
    }
    let keys = |r: &Root, role: &str| {
        let mut ids = r
            .roles
            .get(role)
            .map(|k| k.keyids.clone())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    };
    let changed = |role: &str| keys(&old.body, role) != keys(root, role);
    if changed("timestamp") || changed("snapshot") {
        out.versions.remove("timestamp");
        out.versions.remove("snapshot");
    }
    if changed("targets") {
        out.versions.remove("targets");
    }
    out
}

fn no_rollback(role: &str, version: u64, state: Option<&TrustedState>) -> Result<(), Error> {
    if let Some(trusted) = state.and_then(|s| s.versions.get(role)) {
        if version < *trusted {
            return Err(Error::Rollback {
                role: role.to_owned(),
                offered: version,
                trusted: *trusted,
            });
        }
    }
    Ok(())
}

/// TUF 5.x "check against the parent's meta": length first (it bounds what is read),
/// then every hash the parent lists that we know; at least one must be known.
fn check_file(
    role: &str,
    parent: &str,
    bytes: &[u8],
    meta: &FileMeta,
    limit: u64,
) -> Result<(), Error> {
    if meta.length > limit {
        return Err(Error::Oversized {
            role: role.to_owned(),
            size: meta.length,
            limit,
        });
    }
    let actual = bytes.len() as u64;
    if actual != meta.length {
        return Err(Error::LengthMismatch {
            role: role.to_owned(),
            parent: parent.to_owned(),
            expected: meta.length,
            actual,
        });
    }
    let mut known = 0;
    for (alg, expected) in &meta.hashes {
        let actual = match alg.as_str() {
            "sha256" => Sha256::digest(bytes).to_vec(),
            "sha512" => Sha512::digest(bytes).to_vec(),
            _ => continue,
        };
        known += 1;
        if &actual != expected {
            return Err(Error::HashMismatch {
                role: role.to_owned(),
                parent: parent.to_owned(),
                algorithm: alg.clone(),
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            });
        }
    }
    if known == 0 {
        return Err(Error::malformed(
            parent,
            format!("lists no sha256 or sha512 hash for {role}"),
        ));
    }
    Ok(())
}

/// TUF 5.3 (update the root role), as Notary does it: the root served must be signed by
/// its own root keys; when a trusted root is known, every version after it must be
/// present as `N.root.json` and signed by the threshold of both the previous root and
/// itself. The final root's certificates must be valid now and name the repository, and
/// pins, if any, must cover the threshold.
struct EstablishedRoot<'f> {
    root: Signed<Root>,
    bytes: &'f [u8],
    trust: RootTrust,
    signers: Vec<String>,
}

fn establish_root<'f>(
    files: &'f RepoFiles,
    opts: &VerifyOptions<'_>,
) -> Result<EstablishedRoot<'f>, Error> {
    let latest_bytes = files.get("root").ok_or_else(|| Error::NoTrustData {
        gun: opts.gun.to_owned(),
        what: "no root.json".to_owned(),
    })?;
    cap("root", latest_bytes, opts.limits.root)?;
    let latest = parse_root("root", latest_bytes)?;

    let from_state = opts.state.map(|s| (s.root.as_bytes(), RootTrust::State));
    let from_anchor = match opts.anchor {
        RootAnchor::TrustedRoot(bytes) => Some((bytes, RootTrust::TrustedRoot)),
        _ => None,
    };
    let mut start = None;
    for (bytes, how) in from_state.into_iter().chain(from_anchor) {
        cap("trusted root", bytes, opts.limits.root)?;
        let parsed = parse_root("trusted root", bytes)?;
        // Of a stored state and a given root, start from the newer.
        if start
            .as_ref()
            .is_none_or(|(s, _): &(Signed<Root>, RootTrust)| {
                parsed.body.common.version > s.body.common.version
            })
        {
            start = Some((parsed, how));
        }
    }
    let trust = match (&start, opts.anchor) {
        (Some((_, how)), _) => *how,
        (None, RootAnchor::Pinned(_)) => RootTrust::Pinned,
        (None, _) => RootTrust::FirstUse,
    };
    if let Some((trusted, _)) = start {
        walk_roots(files, trusted, &latest, opts)?;
    }
    let signers = check_final_root(&latest, opts)?;
    not_expired("root", latest.body.common.expires, opts.now)?;
    Ok(EstablishedRoot {
        root: latest,
        bytes: latest_bytes,
        trust,
        signers,
    })
}

fn walk_roots(
    files: &RepoFiles,
    trusted: Signed<Root>,
    latest: &Signed<Root>,
    opts: &VerifyOptions<'_>,
) -> Result<(), Error> {
    let from = trusted.body.common.version;
    let to = latest.body.common.version;
    if to < from {
        return Err(Error::Rollback {
            role: "root".to_owned(),
            offered: to,
            trusted: from,
        });
    }
    if to == from {
        if latest.canonical != trusted.canonical {
            return Err(Error::RootRotationBroken {
                detail: format!(
                    "root.json version {to} differs from the trusted root of the same version"
                ),
            });
        }
        return Ok(());
    }
    let mut current = trusted;
    for v in from + 1..=to {
        let next = if v == to {
            latest.clone()
        } else {
            let name = format!("{v}.root");
            let bytes = files.get(&name).ok_or_else(|| Error::RootRotationBroken {
                detail: format!(
                    "{v}.root.json is missing: cannot walk from trusted version {from} to {to}"
                ),
            })?;
            cap(&name, bytes, opts.limits.root)?;
            parse_root(&name, bytes)?
        };
        if next.body.common.version != v {
            return Err(Error::RootRotationBroken {
                detail: format!(
                    "{v}.root.json says it is version {}",
                    next.body.common.version
                ),
            });
        }
        let prev_keys = root_role(&current.body, "root")?;
        signed_by("root", &next, &current.body.keys, &prev_keys).map_err(|e| {
            Error::RootRotationBroken {
                detail: format!(
                    "version {v} is not signed by the root keys of version {}: {e}",
                    v - 1
                ),
            }
        })?;
        let own_keys = root_role(&next.body, "root")?;
        signed_by("root", &next, &next.body.keys, &own_keys).map_err(|e| {
            Error::RootRotationBroken {
                detail: format!("version {v} is not signed by its own root keys: {e}"),
            }
        })?;
        current = next;
    }
    Ok(())
}

fn check_final_root(root: &Signed<Root>, opts: &VerifyOptions<'_>) -> Result<Vec<String>, Error> {
    let role = root_role(&root.body, "root")?;
    let t = tally(&root.canonical, &root.signatures, &root.body.keys, &role);
    threshold_met("root", &t, role.threshold, |_| true)?;

    // Notary checks root certificates apart from the TUF expiry: a key whose certificate
    // is out of its validity period or names another repository does not count.
    let now = opts.now;
    let cert_problem = |id: &str| -> Option<Error> {
        let cert = root.body.keys.get(id)?.cert()?;
        if cert.common_name.as_deref() != Some(opts.gun) {
            return Some(Error::RootNotPinned {
                detail: format!(
                    "certificate for key {} is issued to {:?}, not to this repository {:?}",
                    short_id(id),
                    cert.common_name.as_deref().unwrap_or(""),
                    opts.gun
                ),
            });
        }
        // Notary gives a certificate's start one day of leeway (clock skew between the
        // signer's machine and the node) and none to its end.
        if now + CERT_NOT_BEFORE_LEEWAY < cert.not_before || now > cert.not_after {
            return Some(Error::CertificateExpired {
                key_id: id.to_owned(),
                not_before: cert.not_before,
                not_after: cert.not_after,
                now,
            });
        }
        None
    };
    let signers = match threshold_met("root", &t, role.threshold, |id| cert_problem(id).is_none()) {
        Ok(s) => s,
        Err(e) => return Err(t.valid.iter().find_map(|id| cert_problem(id)).unwrap_or(e)),
    };

    if let RootAnchor::Pinned(pins) = opts.anchor {
        let pinned = |id: &str| {
            let cert = root.body.keys.get(id).and_then(PublicKey::cert);
            pins.key_ids.iter().any(|p| p == id)
                || cert.is_some_and(|c| pins.certs.contains(&c.der))
                || cert.is_some_and(|c| {
                    pins.cas.iter().any(|ca| {
                        ca.not_before <= now + CERT_NOT_BEFORE_LEEWAY
                            && now <= ca.not_after
                            && c.issued_by(ca)
                    })
                })
        };
        return threshold_met("root", &t, role.threshold, |id| {
            pinned(id) && cert_problem(id).is_none()
        })
        .map_err(|_| Error::RootNotPinned {
            detail: format!(
                "signed by key {}, but {} of them must be pinned and none of the signers is",
                signers
                    .iter()
                    .map(|s| short_id(s))
                    .collect::<Vec<_>>()
                    .join(", "),
                role.threshold
            ),
        });
    }
    Ok(signers)
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
    check_file("snapshot", "timestamp", bytes, meta, opts.limits.file)?;
    let snap = parse_meta_role("snapshot", "Snapshot", bytes)?;
    let signers = signed_by("snapshot", &snap, &root.keys, &root_role(root, "snapshot")?)?;
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
    check_file("targets", "snapshot", bytes, meta, opts.limits.file)?;
    let targets = parse_targets("targets", bytes)?;
    let signers = signed_by(
        "targets",
        &targets,
        &root.keys,
        &root_role(root, "targets")?,
    )?;
    no_rollback("targets", targets.body.common.version, opts.state)?;
    not_expired("targets", targets.body.common.expires, opts.now)?;
    Ok((targets, signers))
}

/// TUF 5.6.7 (preorder depth-first search of delegations). Every delegation the
/// snapshot lists must be served, verify and be unexpired, or the whole repository
/// fails (Notary would skip it); one the parent names but the snapshot never listed is
/// skipped and reported, unless this node trusted it before (a rollback).
struct Walk<'w, 'o> {
    files: &'w RepoFiles,
    snapshot: &'w MetaRole,
    opts: &'w VerifyOptions<'o>,
    roles: &'w mut BTreeMap<String, RoleInfo>,
    skipped: Vec<SkippedRole>,
    targets: BTreeMap<String, BTreeMap<String, FileMeta>>,
    order: Vec<String>,
    count: usize,
}

impl Walk<'_, '_> {
    fn skip(&mut self, role: &str, error: SkipReason) {
        self.skipped.push(SkippedRole {
            role: role.to_owned(),
            error,
        });
    }

    fn visit(
        &mut self,
        name: &str,
        role: &TargetsRole,
        paths: &[String],
        depth: usize,
    ) -> Result<(), Error> {
        let allowed: BTreeMap<String, FileMeta> = role
            .targets
            .iter()
            .filter(|(target, _)| paths.iter().any(|p| target.starts_with(p.as_str())))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.targets.insert(name.to_owned(), allowed);
        self.order.push(name.to_owned());

        for d in &role.delegations {
            self.count += 1;
            if self.count > self.opts.limits.delegations {
                return Err(Error::Oversized {
                    role: "delegations".to_owned(),
                    size: self.count as u64,
                    limit: self.opts.limits.delegations as u64,
                });
            }
            if !valid_child_name(name, &d.name) {
                self.skip(&d.name, SkipReason::BadName);
                continue;
            }
            if depth + 1 > self.opts.limits.delegation_depth {
                self.skip(&d.name, SkipReason::TooDeep);
                continue;
            }
            // A delegation this node trusted before may not vanish: whoever serves the
            // snapshot (often the trust server itself) could drop it to bring back what
            // a lower-priority role still lists.
            let trusted = self
                .opts
                .state
                .and_then(|s| s.versions.get(&d.name).copied());
            let Some(meta) = self.snapshot.meta.get(&d.name) else {
                if let Some(trusted) = trusted {
                    return Err(Error::RoleWithdrawn {
                        role: d.name.clone(),
                        trusted,
                        what: "no longer listed in the snapshot",
                    });
                }
                self.skip(&d.name, SkipReason::NotPublished);
                continue;
            };
            // Stricter than Notary on purpose: Notary skips a listed delegation it cannot
            // get or verify and falls back to its parent, so a server withholding
            // targets/releases could bring back a digest `targets` still lists for a tag
            // that releases has re-signed. Here the whole repository fails.
            let Some(bytes) = self.files.get(&d.name) else {
                return Err(match trusted {
                    Some(trusted) => Error::RoleWithdrawn {
                        role: d.name.clone(),
                        trusted,
                        what: "listed in the snapshot but not served",
                    },
                    None => Error::NoTrustData {
                        gun: self.opts.gun.to_owned(),
                        what: format!(
                            "delegation {} is listed in the snapshot but was not served; \
                             a repository is verified with all of its delegations or not at all",
                            d.name
                        ),
                    },
                });
            };
            check_file(&d.name, "snapshot", bytes, meta, self.opts.limits.file)?;
            let child = parse_targets(&d.name, bytes)?;
            no_rollback(&d.name, child.body.common.version, self.opts.state)?;
            let signers = signed_by(&d.name, &child, &role.delegation_keys, &d.keys)?;
            not_expired(&d.name, child.body.common.expires, self.opts.now)?;
            // A child may only narrow its parent's paths.
            let child_paths: Vec<String> = if d.uses_hash_prefixes {
                Vec::new()
            } else {
                d.paths
                    .iter()
                    .filter(|p| paths.iter().any(|pp| p.starts_with(pp.as_str())))
                    .cloned()
                    .collect()
            };
            self.roles
                .insert(d.name.clone(), info(&child.body.common, signers));
            self.visit(&d.name, &child.body, &child_paths, depth + 1)?;
        }
        Ok(())
    }
}
