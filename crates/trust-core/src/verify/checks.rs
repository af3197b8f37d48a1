//! The checks every role goes through: signatures against a threshold of distinct
//! authorised keys, the parent's length and hashes, expiry, rollback.

use super::*;

/// Signatures of one file, counted once per distinct authorised key.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) valid: BTreeSet<String>,
    pub(super) invalid: BTreeSet<String>,
    pub(super) unauthorised: usize,
    /// The key behind each valid key ID: one key listed under two IDs (an `ecdsa` SPKI
    /// and its `ecdsa-x509` certificate, or a point written compressed and
    /// uncompressed) is still one signer.
    pub(super) material: BTreeMap<String, Vec<u8>>,
}

pub(super) fn tally(
    canonical: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<String, PublicKey>,
    authorised: &RoleKeys,
) -> Tally {
    let mut t = Tally::default();
    let mut checked = 0;
    for sig in signatures {
        if !authorised.keyids.contains(&sig.keyid) {
            t.unauthorised += 1;
            continue;
        }
        // Each check hashes the whole signed body again: signatures piled under an
        // authorised key ID would cost that many hashes of up to a MiB each, with no key
        // needed (Notary checks them all). Only the first under each key ID is checked
        // (Notary's signers write one per key), and at most MAX_SIGNATURE_CHECKS in all.
        if t.valid.contains(&sig.keyid)
            || t.invalid.contains(&sig.keyid)
            || checked == MAX_SIGNATURE_CHECKS
        {
            continue;
        }
        checked += 1;
        let ok = match (keys.get(&sig.keyid), &sig.sig) {
            (Some(key), Some(bytes)) => key.verify(&sig.method, canonical, bytes),
            _ => false,
        };
        if ok {
            t.valid.insert(sig.keyid.clone());
            if let Some(m) = keys.get(&sig.keyid).and_then(PublicKey::material) {
                t.material.insert(sig.keyid.clone(), m.to_vec());
            }
        } else {
            t.invalid.insert(sig.keyid.clone());
        }
    }
    t
}

/// Signatures checked per file at most. Real ones carry one per signing key: a root in
/// rotation is signed by the old and the new keys, a handful in all.
pub(super) const MAX_SIGNATURE_CHECKS: usize = 64;

/// The one threshold rule for every role: at least `threshold` distinct authorised keys
/// that pass `counts` produced valid signatures. Distinct keys, not key IDs: a key
/// listed twice under two IDs counts once (the first of its IDs in order is named).
pub(super) fn threshold_met(
    role: &str,
    t: &Tally,
    threshold: u64,
    counts: impl Fn(&str) -> bool,
) -> Result<Vec<String>, Error> {
    let mut seen = BTreeSet::new();
    let signers: Vec<String> = t
        .valid
        .iter()
        .filter(|id| counts(id))
        .filter(|id| {
            t.material
                .get(*id)
                .is_none_or(|m| seen.insert(m.as_slice()))
        })
        .cloned()
        .collect();
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

pub(super) fn signed_by<T>(
    role: &str,
    file: &Signed<T>,
    keys: &BTreeMap<String, PublicKey>,
    authorised: &RoleKeys,
) -> Result<Vec<String>, Error> {
    let t = tally(&file.canonical, &file.signatures, keys, authorised);
    threshold_met(role, &t, authorised.threshold, |_| true)
}

pub(super) fn root_role(root: &Root, role: &str) -> Result<RoleKeys, Error> {
    // parse_root guarantees the four top-level roles exist.
    root.roles
        .get(role)
        .cloned()
        .ok_or_else(|| Error::malformed("root", format!("no {role} role")))
}

pub(super) fn cap(role: &str, bytes: &[u8], limit: u64) -> Result<(), Error> {
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

pub(super) fn not_expired(
    role: &str,
    expires: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), Error> {
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
pub(super) fn forget_rotated_versions(state: &TrustedState, root: &Root) -> TrustedState {
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

pub(super) fn no_rollback(
    role: &str,
    version: u64,
    state: Option<&TrustedState>,
) -> Result<(), Error> {
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

/// Files at least this large are hashed on a second thread while they are parsed: on a
/// 10,000-tag repository SHA-512 alone was a fifth of verification.
const HASH_BESIDE_PARSE: usize = 64 * 1024;

/// [`check_file`], then `parse`. For a large file both run at once, and the outcome is
/// the same as one after the other: a hash mismatch is the error (whatever the parse
/// said), and the parse is used only once every hash matched.
pub(super) fn check_then_parse<T>(
    role: &str,
    parent: &str,
    bytes: &[u8],
    meta: &FileMeta,
    limit: u64,
    parse: impl FnOnce(&[u8]) -> Result<T, Error>,
) -> Result<T, Error> {
    check_length(role, parent, bytes, meta, limit)?;
    if bytes.len() < HASH_BESIDE_PARSE {
        check_hashes(role, parent, bytes, meta)?;
        return parse(bytes);
    }
    std::thread::scope(|s| {
        let hashing = std::thread::Builder::new()
            .name("trust-core-hash".to_owned())
            .spawn_scoped(s, || check_hashes(role, parent, bytes, meta));
        match hashing {
            Ok(hashing) => {
                let parsed = parse(bytes);
                hashing
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                parsed
            }
            // No thread to be had (a process limit): the same checks, in turn.
            Err(_) => {
                check_hashes(role, parent, bytes, meta)?;
                parse(bytes)
            }
        }
    })
}

/// TUF 5.x "check against the parent's meta": length first (it bounds what is read),
/// then every hash the parent lists that we know; at least one must be known.
pub(super) fn check_file(
    role: &str,
    parent: &str,
    bytes: &[u8],
    meta: &FileMeta,
    limit: u64,
) -> Result<(), Error> {
    check_length(role, parent, bytes, meta, limit)?;
    check_hashes(role, parent, bytes, meta)
}

fn check_length(
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
    Ok(())
}

fn check_hashes(role: &str, parent: &str, bytes: &[u8], meta: &FileMeta) -> Result<(), Error> {
    let mut known = 0;
    for (alg, expected) in meta.hashes.iter() {
        let actual = match alg {
            "sha256" => Sha256::digest(bytes).to_vec(),
            "sha512" => Sha512::digest(bytes).to_vec(),
            _ => continue,
        };
        known += 1;
        if actual != expected {
            return Err(Error::HashMismatch {
                role: role.to_owned(),
                parent: parent.to_owned(),
                algorithm: alg.to_owned(),
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
