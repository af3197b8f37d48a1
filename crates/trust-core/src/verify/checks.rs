//! The checks every role goes through: signatures against a threshold of distinct
//! authorised keys, the parent's length and hashes, expiry, rollback.

use super::*;
use crate::metadata::{open, Opened};

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
    passed(role, &t, authorised)
}

/// [`threshold_met`] by every valid signature of a tally.
pub(super) fn passed(role: &str, t: &Tally, authorised: &RoleKeys) -> Result<Vec<String>, Error> {
    threshold_met(role, t, authorised.threshold, |_| true)
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

/// Files at least this large are hashed, and their signatures checked, on a second
/// thread while their body is read: on a 10,000-tag repository SHA-512 alone was a fifth
/// of verification, and the signature's own hash of the body a tenth.
const HASH_BESIDE_PARSE: usize = 64 * 1024;

/// A file read, with the tally of its signatures.
pub(super) type Checked<T> = (Signed<T>, Tally);

/// Who may sign a file: the keys by ID, and the role's authorised IDs and threshold.
pub(super) type Signers<'k> = (&'k BTreeMap<String, PublicKey>, &'k RoleKeys);

/// [`check_file`], then the file read with `body` and its signatures tallied against
/// `signers`. For a large file the hashes and the tally run beside the reading, and the
/// outcome is the same as one after the other: a hash mismatch is the error (whatever
/// the reading said), and nothing read is used unless every hash matched.
pub(super) fn check_then_parse<T, B: FnOnce(&str) -> Result<T, Error>>(
    role: &str,
    parent: &str,
    bytes: &[u8],
    meta: &FileMeta,
    limit: u64,
    (keys, authorised): Signers<'_>,
    body: B,
) -> Result<Checked<T>, Error> {
    check_length(role, parent, bytes, meta, limit)?;
    let count = |o: &Opened<'_>| tally(&o.canonical, &o.signatures, keys, authorised);
    // The same checks one after the other: a small file, or no thread to be had.
    let in_turn = |body: B| {
        let opened = open(role, bytes);
        check_hashes(role, parent, bytes, meta)?;
        let opened = opened?;
        let read = body(opened.signed)?;
        let t = count(&opened);
        Ok((opened.with(read), t))
    };
    if bytes.len() < HASH_BESIDE_PARSE {
        return in_turn(body);
    }
    std::thread::scope(|s| {
        // The envelope goes to the second thread once it is open; until then, and while
        // the body is read here, that thread hashes the file.
        let (give, take) = std::sync::mpsc::sync_channel::<Opened<'_>>(1);
        let beside = std::thread::Builder::new()
            .name("trust-core-hash".to_owned())
            .spawn_scoped(s, move || {
                let hashed = check_hashes(role, parent, bytes, meta);
                if hashed.is_err() {
                    // The mismatch is the outcome: no signature work on bytes it refuses.
                    return (hashed, None);
                }
                let counted = take.recv().ok().map(|o| {
                    let t = count(&o);
                    (o, t)
                });
                (hashed, counted)
            });
        let Ok(beside) = beside else {
            // A process limit on threads.
            return in_turn(body);
        };
        let read = open(role, bytes).map(|opened| {
            let signed = opened.signed;
            // The thread only ends early by panicking, which the join below passes on.
            let _ = give.send(opened);
            body(signed)
        });
        drop(give);
        let (hashed, counted) = beside
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        hashed?;
        let read = read??;
        match counted {
            Some((opened, t)) => Ok((opened.with(read), t)),
            None => Err(Error::malformed(
                role,
                "its signatures could not be checked",
            )),
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
