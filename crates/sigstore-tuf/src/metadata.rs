//! The parts of TUF metadata the update checks, read strictly: trust-core's canonical
//! JSON (a key twice in one object is refused: two readers must not see two documents),
//! signatures over the canonical form of `signed`, keys as Sigstore's roots write them
//! over their history (ECDSA P-256 as PEM or as a hex point, Ed25519 as hex).

use std::collections::{BTreeMap, BTreeSet};

use proof_kit::canonical::Json;
use sigstore_core::PublicKey;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{Error, Reason};

/// Signatures one file may carry: Sigstore's roles are signed by five keys at most.
const MAX_SIGNATURES: usize = 64;

fn malformed(what: &str, m: impl std::fmt::Display) -> Error {
    Error::new(Reason::Malformed, format!("{what}: {m}"))
}

fn text<'a>(v: Option<&'a Json>, what: &str, key: &str) -> Result<&'a str, Error> {
    match v {
        Some(Json::String(s)) => Ok(s),
        _ => Err(malformed(what, format!("no text {key}"))),
    }
}

fn int(v: Option<&Json>, what: &str, key: &str) -> Result<u64, Error> {
    match v {
        Some(Json::Int(n)) => {
            u64::try_from(*n).map_err(|_| malformed(what, format!("{key} {n} is out of range")))
        }
        _ => Err(malformed(what, format!("no integer {key}"))),
    }
}

fn object<'a>(
    v: Option<&'a Json>,
    what: &str,
    key: &str,
) -> Result<&'a BTreeMap<String, Json>, Error> {
    match v {
        Some(Json::Object(m)) => Ok(m),
        _ => Err(malformed(what, format!("no object {key}"))),
    }
}

/// A metadata file: its `signed` part (decoded and canonical) and its signatures.
pub(crate) struct Signed {
    pub(crate) signed: Json,
    pub(crate) canonical: Vec<u8>,
    pub(crate) signatures: Vec<(String, Vec<u8>)>,
    pub(crate) role: String,
}

impl Signed {
    /// Parses a file that must be of `role`'s type.
    ///
    /// Signatures are at most [`MAX_SIGNATURES`], one per key ID.
    pub(crate) fn parse(bytes: &[u8], role: &str) -> Result<Signed, Error> {
        let doc = Json::parse(bytes).map_err(|e| malformed(role, e))?;
        let signed = doc
            .get("signed")
            .cloned()
            .ok_or_else(|| malformed(role, "no signed part"))?;
        let kind = text(signed.get("_type"), role, "_type")?;
        if kind != role {
            return Err(malformed(
                role,
                format!("it is a {kind:?} file, not {role}"),
            ));
        }
        let spec = text(signed.get("spec_version"), role, "spec_version")?;
        if spec.split('.').next() != Some("1") {
            return Err(malformed(role, format!("spec_version {spec:?} is not 1.x")));
        }
        let Some(Json::Array(sigs)) = doc.get("signatures") else {
            return Err(malformed(role, "no signatures"));
        };
        // Each check hashes the whole signed part, and the file's length is not pinned
        // by its parent (Sigstore's snapshot and timestamp list versions only): a list
        // of signatures is bounded, and a key ID may sign once (python-tuf and tuf-js
        // refuse a key ID given twice too).
        if sigs.len() > MAX_SIGNATURES {
            return Err(malformed(
                role,
                format!("{} signatures, more than {MAX_SIGNATURES}", sigs.len()),
            ));
        }
        let mut signatures: Vec<(String, Vec<u8>)> = Vec::new();
        for s in sigs {
            let keyid = text(s.get("keyid"), role, "keyid")?.to_owned();
            if signatures.iter().any(|(k, _)| *k == keyid) {
                return Err(malformed(role, format!("key ID {keyid} signs twice")));
            }
            // An empty or undecodable signature is no signature (a key that has not
            // signed yet leaves "sig": ""); it simply does not count.
            let sig = hex::decode(text(s.get("sig"), role, "sig")?).unwrap_or_default();
            signatures.push((keyid, sig));
        }
        Ok(Signed {
            canonical: signed.to_canonical(),
            signed,
            signatures,
            role: role.to_owned(),
        })
    }

    fn expires(&self) -> Result<OffsetDateTime, Error> {
        let s = text(self.signed.get("expires"), &self.role, "expires")?;
        OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| malformed(&self.role, format!("expires {s:?}: {e}")))
    }

    fn version(&self) -> Result<u64, Error> {
        int(self.signed.get("version"), &self.role, "version")
    }
}

/// A role as the root defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Role {
    keyids: BTreeSet<String>,
    threshold: u64,
}

/// A root: its keys and roles.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    pub(crate) version: u64,
    pub(crate) expires: OffsetDateTime,
    pub(crate) consistent_snapshot: bool,
    keys: BTreeMap<String, PublicKey>,
    roles: BTreeMap<String, Role>,
}

/// A key as TUF writes it. Key IDs are taken as the root gives them (as python-tuf and
/// sigstore-go do; Sigstore's root v11 has one that is not the hash it should be); a key
/// listed under two IDs still counts once toward a threshold.
fn key(v: &Json, what: &str) -> Option<PublicKey> {
    let keytype = text(v.get("keytype"), what, "keytype").ok()?;
    let public = text(
        v.get("keyval").and_then(|k| k.get("public")),
        what,
        "public",
    )
    .ok()?;
    match keytype {
        "ecdsa" | "ecdsa-sha2-nistp256" => {
            if public.contains("-----BEGIN") {
                return PublicKey::from_pem(public.as_bytes()).ok();
            }
            // An uncompressed P-256 point in hex: wrap it in its SubjectPublicKeyInfo.
            let point = hex::decode(public)
                .ok()
                .filter(|p| p.len() == 65 && p[0] == 4)?;
            let mut spki =
                hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").ok()?;
            spki.extend_from_slice(&point);
            PublicKey::from_spki_der(&spki).ok()
        }
        "ed25519" => {
            let raw = hex::decode(public).ok().filter(|p| p.len() == 32)?;
            let mut spki = hex::decode("302a300506032b6570032100").ok()?;
            spki.extend_from_slice(&raw);
            PublicKey::from_spki_der(&spki).ok()
        }
        _ => None,
    }
}

impl Root {
    pub(crate) fn parse(s: &Signed) -> Result<Root, Error> {
        let what = "root";
        let mut keys = BTreeMap::new();
        for (id, v) in object(s.signed.get("keys"), what, "keys")? {
            // Keys of other types cannot sign for us; they count for nothing.
            if let Some(k) = key(v, what) {
                keys.insert(id.clone(), k);
            }
        }
        let mut roles = BTreeMap::new();
        for (name, v) in object(s.signed.get("roles"), what, "roles")? {
            let threshold = int(v.get("threshold"), what, "threshold")?;
            if threshold == 0 {
                return Err(malformed(what, format!("role {name} has threshold 0")));
            }
            let Some(Json::Array(ids)) = v.get("keyids") else {
                return Err(malformed(what, format!("role {name} has no keyids")));
            };
            let keyids = ids
                .iter()
                .map(|i| match i {
                    Json::String(s) => Ok(s.clone()),
                    _ => Err(malformed(
                        what,
                        format!("role {name}: a key ID is not text"),
                    )),
                })
                .collect::<Result<_, _>>()?;
            roles.insert(name.clone(), Role { keyids, threshold });
        }
        for needed in ["root", "timestamp", "snapshot", "targets"] {
            if !roles.contains_key(needed) {
                return Err(malformed(what, format!("no {needed} role")));
            }
        }
        Ok(Root {
            version: s.version()?,
            expires: s.expires()?,
            consistent_snapshot: matches!(
                s.signed.get("consistent_snapshot"),
                Some(Json::Bool(true))
            ),
            keys,
            roles,
        })
    }

    pub(crate) fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// A threshold of `role`'s distinct keys signed `s`'s canonical form.
    pub(crate) fn verify_role(&self, s: &Signed, role: &str) -> Result<(), Error> {
        let r = self
            .roles
            .get(role)
            .ok_or_else(|| malformed("root", format!("no {role} role")))?;
        let mut signers: BTreeSet<&str> = BTreeSet::new();
        for (keyid, sig) in &s.signatures {
            if !r.keyids.contains(keyid) {
                continue;
            }
            let Some(k) = self.keys.get(keyid) else {
                continue;
            };
            if k.verify(&s.canonical, sig) {
                // Counted by the key itself, not by the ID it is listed under.
                signers.insert(k.id());
            }
        }
        if (signers.len() as u64) < r.threshold {
            return Err(Error::new(
                Reason::ThresholdNotMet,
                format!(
                    "{} (version {}) is signed by {} of the {} keys root version {} names for {role}, and {} must sign",
                    s.role,
                    s.version().unwrap_or_default(),
                    signers.len(),
                    r.keyids.len(),
                    self.version,
                    r.threshold
                ),
            ));
        }
        Ok(())
    }
}

/// A file a timestamp, snapshot or targets role lists.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    pub(crate) version: u64,
    pub(crate) length: Option<u64>,
    pub(crate) hashes: BTreeMap<String, String>,
}

impl FileMeta {
    fn parse(v: &Json, what: &str, versioned: bool) -> Result<FileMeta, Error> {
        let version = if versioned {
            int(v.get("version"), what, "version")?
        } else {
            0
        };
        let length = match v.get("length") {
            None => None,
            l => Some(int(l, what, "length")?),
        };
        let mut hashes = BTreeMap::new();
        if let Some(h) = v.get("hashes") {
            for (alg, hv) in object(Some(h), what, "hashes")? {
                let Json::String(hv) = hv else {
                    return Err(malformed(what, format!("hash {alg} is not text")));
                };
                hashes.insert(alg.clone(), hv.clone());
            }
        }
        Ok(FileMeta {
            version,
            length,
            hashes,
        })
    }

    /// Length and every hash given must match.
    pub(crate) fn check_bytes(&self, bytes: &[u8], what: &str) -> Result<(), Error> {
        if let Some(l) = self.length {
            if bytes.len() as u64 != l {
                return Err(Error::new(
                    Reason::HashMismatch,
                    format!("{what} is {} bytes, not the {l} signed for it", bytes.len()),
                ));
            }
        }
        crate::check_hashes(&self.hashes, bytes, what)
    }
}

/// A timestamp, snapshot or targets file's content.
pub(crate) struct Meta {
    pub(crate) version: u64,
    pub(crate) expires: OffsetDateTime,
    pub(crate) meta: BTreeMap<String, FileMeta>,
    targets: BTreeMap<String, FileMeta>,
    role: String,
}

impl Meta {
    pub(crate) fn parse(s: &Signed, role: &str) -> Result<Meta, Error> {
        let mut meta = BTreeMap::new();
        let mut targets = BTreeMap::new();
        if role == "targets" {
            for (name, v) in object(s.signed.get("targets"), role, "targets")? {
                targets.insert(name.clone(), FileMeta::parse(v, role, false)?);
            }
        } else {
            for (name, v) in object(s.signed.get("meta"), role, "meta")? {
                meta.insert(name.clone(), FileMeta::parse(v, role, true)?);
            }
        }
        Ok(Meta {
            version: s.version()?,
            expires: s.expires()?,
            meta,
            targets,
            role: role.to_owned(),
        })
    }

    pub(crate) fn file(&self, name: &str) -> Result<&FileMeta, Error> {
        self.meta
            .get(name)
            .ok_or_else(|| malformed(&self.role, format!("it does not list {name}")))
    }

    pub(crate) fn target(&self, name: &str) -> Result<&FileMeta, Error> {
        self.targets.get(name).ok_or_else(|| {
            Error::new(
                Reason::Malformed,
                format!("the targets role does not list {name}"),
            )
        })
    }
}
