//! Notary's metadata files, parsed and checked for structure.
//!
//! Parsing keeps the canonical bytes of the whole `signed` object, unknown fields
//! included, because that is what the signatures cover. Key IDs are recomputed and must
//! match the IDs the file lists them under.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub use crate::digest::Hashes;
use crate::error::Error;
use crate::keys::PublicKey;

mod envelope;
use envelope::typed;
pub(crate) use envelope::{open, Opened};

/// One signature of an envelope.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Key ID as written.
    pub keyid: String,
    /// Method, lower-cased as Notary does when it reads it.
    pub method: String,
    /// Decoded signature; `None` when the base64 does not decode.
    pub sig: Option<Vec<u8>>,
}

/// A parsed file: the role body, the bytes its signatures cover, the signatures.
#[derive(Debug, Clone)]
pub struct Signed<T> {
    /// The typed `signed` object.
    pub body: T,
    /// Canonical JSON of the `signed` object.
    pub canonical: Vec<u8>,
    /// The signatures.
    pub signatures: Vec<Signature>,
}

/// Fields every role has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Version, at least 1.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
}

/// Keys and threshold of one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    /// Authorised key IDs, without duplicates.
    pub keyids: Vec<String>,
    /// Distinct valid signatures needed, at least 1.
    pub threshold: u64,
}

/// `root.json`.
#[derive(Debug, Clone)]
pub struct Root {
    /// Version and expiry.
    pub common: Common,
    /// Keys by ID.
    pub keys: BTreeMap<String, PublicKey>,
    /// `root`, `targets`, `snapshot`, `timestamp`.
    pub roles: BTreeMap<String, RoleKeys>,
}

/// Length and hashes of a file, as a parent role lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Length in bytes.
    pub length: u64,
    /// Hashes by algorithm name (decoded).
    pub hashes: Hashes,
}

/// `timestamp.json` or `snapshot.json`.
#[derive(Debug, Clone)]
pub struct MetaRole {
    /// Version and expiry.
    pub common: Common,
    /// Listed files by role name.
    pub meta: BTreeMap<String, FileMeta>,
}

/// A delegation as its parent lists it.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// Full role name, e.g. `targets/releases`.
    pub name: String,
    /// Keys and threshold.
    pub keys: RoleKeys,
    /// Target name prefixes it may sign; `""` is all.
    pub paths: Vec<String>,
    /// Set when the role uses `path_hash_prefixes`, which Notary does not support and we
    /// do not either: such a role may sign nothing.
    pub uses_hash_prefixes: bool,
}

/// `targets.json` or a delegation file.
#[derive(Debug, Clone)]
pub struct TargetsRole {
    /// Version and expiry.
    pub common: Common,
    /// Targets by name.
    pub targets: BTreeMap<String, FileMeta>,
    /// Delegation keys by ID.
    pub delegation_keys: BTreeMap<String, PublicKey>,
    /// Delegated roles, in the order listed.
    pub delegations: Vec<Delegation>,
}

#[derive(Deserialize)]
struct RawKey {
    keytype: String,
    keyval: RawKeyVal,
}

#[derive(Deserialize)]
struct RawKeyVal {
    public: String,
}

#[derive(Deserialize)]
struct RawRoleKeys {
    keyids: Vec<String>,
    threshold: i64,
}

/// The fields every role has, written into each role's struct rather than flattened:
/// serde's `flatten` first copies every other field (10,000 targets) into a generic
/// tree.
macro_rules! raw_role {
    ($(#[$m:meta])* struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Deserialize)]
        struct $name {
            #[serde(rename = "_type")]
            kind: String,
            version: i64,
            expires: String,
            $($field: $ty,)*
        }

        impl $name {
            fn common(&self, role: &str, expected_type: &str) -> Result<Common, Error> {
                common(role, expected_type, &self.kind, self.version, &self.expires)
            }
        }
    };
}

raw_role! {
    struct RawRoot {
        keys: BTreeMap<String, RawKey>,
        roles: BTreeMap<String, RawRoleKeys>,
    }
}

#[derive(Deserialize)]
struct RawFileMeta {
    length: i64,
    hashes: Entries<Base64>,
}

/// An object's members in the order written, read without building a map: the
/// caller builds the one it keeps from them in one pass (a 10,000-target file would
/// otherwise be sorted into a map here and copied into another). A member given twice
/// never gets here: the `signed` text is either canonical (keys strictly ordered) or
/// decoded first by a reader that refuses it.
struct Entries<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Members<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
                while let Some(key) = map.next_key::<String>()? {
                    out.push((key, map.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// A hash as the file writes it (base64), decoded as it is read, without keeping the
/// text; `None` when it is not base64 (the caller says which one, where).
struct Base64(Option<Vec<u8>>);

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Base64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Base64, E> {
                Ok(Base64(b64(v)))
            }
        }
        d.deserialize_str(Text)
    }
}

raw_role! {
    struct RawMetaRole {
        meta: Entries<RawFileMeta>,
    }
}

raw_role! {
    // Absent `Option` fields are `None` without `#[serde(default)]`.
    struct RawTargets {
        targets: Option<Entries<RawFileMeta>>,
        delegations: Option<RawDelegations>,
    }
}

#[derive(Deserialize)]
struct RawDelegations {
    #[serde(default)]
    keys: Option<BTreeMap<String, RawKey>>,
    #[serde(default)]
    roles: Option<Vec<RawDelegationRole>>,
}

#[derive(Deserialize)]
struct RawDelegationRole {
    name: String,
    keyids: Vec<String>,
    threshold: i64,
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    path_hash_prefixes: Option<Vec<String>>,
}

fn common(
    role: &str,
    expected_type: &str,
    kind: &str,
    version: i64,
    expires: &str,
) -> Result<Common, Error> {
    if !kind.eq_ignore_ascii_case(expected_type) {
        return Err(Error::malformed(
            role,
            format!("_type is {kind:?}, expected {expected_type:?}"),
        ));
    }
    let version = u64::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            Error::malformed(role, format!("version {version} is not a positive integer"))
        })?;
    let expires = OffsetDateTime::parse(expires, &Rfc3339).map_err(|e| {
        Error::malformed(
            role,
            format!("expires {expires:?} is not an RFC 3339 time: {e}"),
        )
    })?;
    // "9999-12-31T23:59:59-23:59" parses, but its UTC time is in the year 10000, which
    // `time` cannot hold: converting it (to write it in UTC) would panic.
    if expires.checked_to_offset(time::UtcOffset::UTC).is_none() {
        return Err(Error::malformed(
            role,
            format!("expires {expires} is past the year 9999 in UTC"),
        ));
    }
    Ok(Common { version, expires })
}

fn keys(role: &str, raw: BTreeMap<String, RawKey>) -> Result<BTreeMap<String, PublicKey>, Error> {
    let mut out = BTreeMap::new();
    for (listed, key) in raw {
        let public = b64(&key.keyval.public).ok_or_else(|| {
            Error::malformed(role, format!("key {listed}: public key is not base64"))
        })?;
        let parsed = PublicKey::new(&key.keytype, &public);
        if parsed.id() != listed {
            return Err(Error::malformed(
                role,
                format!(
                    "key ID {listed} does not match its key (computed {})",
                    parsed.id()
                ),
            ));
        }
        out.insert(listed, parsed);
    }
    Ok(out)
}

fn role_keys(role: &str, raw: RawRoleKeys) -> Result<RoleKeys, Error> {
    let threshold = u64::try_from(raw.threshold)
        .ok()
        .filter(|t| *t >= 1)
        .ok_or_else(|| Error::malformed(role, format!("threshold {} is below 1", raw.threshold)))?;
    let mut seen = BTreeSet::new();
    for id in &raw.keyids {
        if !seen.insert(id) {
            return Err(Error::malformed(
                role,
                format!("key ID {id} is listed twice"),
            ));
        }
    }
    Ok(RoleKeys {
        keyids: raw.keyids,
        threshold,
    })
}

fn b64(s: &str) -> Option<Vec<u8>> {
    proof_kit::b64::padded(s).ok()
}

fn file_meta(role: &str, name: &str, raw: RawFileMeta) -> Result<FileMeta, Error> {
    let length = u64::try_from(raw.length)
        .map_err(|_| Error::malformed(role, format!("{name}: negative length {}", raw.length)))?;
    let hashes = raw
        .hashes
        .0
        .into_iter()
        .map(|(alg, h)| match h.0 {
            Some(bytes) => Ok((alg, bytes)),
            None => Err(Error::malformed(
                role,
                format!("{name}: {alg} hash is not base64"),
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(FileMeta {
        length,
        hashes: Hashes(hashes),
    })
}

/// The files an object lists, by name: built in one pass from members in order (sorted
/// already in canonical text, so the map is mostly built without comparing each new
/// name with those before it; other text arrives in document order, which the map
/// sorts, its names made unique by the decoder).
fn file_metas(
    role: &str,
    entries: Entries<RawFileMeta>,
) -> Result<BTreeMap<String, FileMeta>, Error> {
    entries
        .0
        .into_iter()
        .map(|(name, m)| file_meta(role, &name, m).map(|parsed| (name, parsed)))
        .collect()
}

/// The canonical role names of a root.
pub const TOP_ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// Parses `root.json`.
pub fn parse_root(role: &str, bytes: &[u8]) -> Result<Signed<Root>, Error> {
    let opened = open(role, bytes)?;
    let raw: RawRoot = typed(role, opened.signed)?;
    let common = raw.common(role, "Root")?;
    let keys = keys(role, raw.keys)?;
    let mut roles = BTreeMap::new();
    for (name, r) in raw.roles {
        roles.insert(name.clone(), role_keys(&format!("{role} role {name}"), r)?);
    }
    for needed in TOP_ROLES {
        if !roles.contains_key(needed) {
            return Err(Error::malformed(role, format!("no {needed} role")));
        }
    }
    Ok(opened.with(Root {
        common,
        keys,
        roles,
    }))
}

/// Parses `timestamp.json` (`expected_type` "Timestamp") or `snapshot.json` ("Snapshot").
pub fn parse_meta_role(
    role: &str,
    expected_type: &str,
    bytes: &[u8],
) -> Result<Signed<MetaRole>, Error> {
    let opened = open(role, bytes)?;
    let body = meta_role_body(role, expected_type, opened.signed)?;
    Ok(opened.with(body))
}

/// The body of an opened `timestamp.json` or `snapshot.json`.
pub(crate) fn meta_role_body(
    role: &str,
    expected_type: &str,
    signed: &str,
) -> Result<MetaRole, Error> {
    let raw: RawMetaRole = typed(role, signed)?;
    let common = raw.common(role, expected_type)?;
    let meta = file_metas(role, raw.meta)?;
    Ok(MetaRole { common, meta })
}

/// Parses `targets.json` or a delegation file named `role`.
pub fn parse_targets(role: &str, bytes: &[u8]) -> Result<Signed<TargetsRole>, Error> {
    let opened = open(role, bytes)?;
    let body = targets_body(role, opened.signed)?;
    Ok(opened.with(body))
}

/// The body of an opened `targets.json` or delegation file.
pub(crate) fn targets_body(role: &str, signed: &str) -> Result<TargetsRole, Error> {
    let raw: RawTargets = typed(role, signed)?;
    let common = raw.common(role, "Targets")?;
    let targets = match raw.targets {
        Some(entries) => file_metas(role, entries)?,
        None => BTreeMap::new(),
    };
    let (delegation_keys, delegations) = match raw.delegations {
        None => (BTreeMap::new(), Vec::new()),
        Some(d) => {
            let dkeys = keys(role, d.keys.unwrap_or_default())?;
            let mut roles = Vec::new();
            let mut names = BTreeSet::new();
            for r in d.roles.unwrap_or_default() {
                if !names.insert(r.name.clone()) {
                    return Err(Error::malformed(
                        role,
                        format!("delegation {} is listed twice", r.name),
                    ));
                }
                let uses_hash_prefixes =
                    r.path_hash_prefixes.as_ref().is_some_and(|p| !p.is_empty());
                let keys = role_keys(
                    &r.name,
                    RawRoleKeys {
                        keyids: r.keyids,
                        threshold: r.threshold,
                    },
                )?;
                roles.push(Delegation {
                    name: r.name,
                    keys,
                    paths: r.paths.unwrap_or_default(),
                    uses_hash_prefixes,
                });
            }
            (dkeys, roles)
        }
    };
    Ok(TargetsRole {
        common,
        targets,
        delegation_keys,
        delegations,
    })
}

/// Whether `name` is a valid delegation name directly under `parent`, by Notary's rules:
/// starts with `targets/`, only `[-a-z0-9_/]`, under 256 bytes, already clean (no `.`,
/// `..`, doubled or trailing slashes), and one level below its parent.
pub fn valid_child_name(parent: &str, name: &str) -> bool {
    let charset_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'/'));
    let clean = name
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    let direct_child = name
        .strip_prefix(parent)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|leaf| !leaf.contains('/'));
    name.starts_with("targets/") && charset_ok && clean && name.len() < 256 && direct_child
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_names_follow_notary_rules() {
        assert!(valid_child_name("targets", "targets/releases"));
        assert!(valid_child_name("targets/a", "targets/a/b-c_1"));
        assert!(!valid_child_name("targets", "targets/a/b"), "grandchild");
        assert!(
            !valid_child_name("targets", "targets/Releases"),
            "uppercase"
        );
        assert!(!valid_child_name("targets", "targets/../root"));
        assert!(!valid_child_name("targets", "targets/"));
        assert!(!valid_child_name("targets/a", "targets/ab"));
        assert!(!valid_child_name(
            "targets",
            &format!("targets/{}", "a".repeat(250))
        ));
    }
}
