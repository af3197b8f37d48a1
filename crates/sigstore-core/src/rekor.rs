//! Transparency-log entries as a bundle carries them: the signed entry timestamp (SET,
//! Rekor v1's inclusion promise), the inclusion proof (RFC 9162 Merkle audit path) with
//! its checkpoint (a signed note by the log), and the entry body the caller compares with
//! what was signed.

use proof_kit::canonical::Json;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::keys::Hash;
use crate::trust_root::{Log, TrustedRoot};
use crate::{Error, Reason};

/// An entry as the bundle has it (`verificationMaterial.tlogEntries[i]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEntry {
    #[serde(default)]
    /// The entry's index in the log (a decimal string in bundles; absent means 0).
    pub log_index: Option<String>,
    /// Which log (its key ID).
    pub log_id: RawLogId,
    /// The entry's kind and version (`hashedrekord` `0.0.1`).
    pub kind_version: KindVersion,
    #[serde(default)]
    /// When the log integrated it (Unix seconds, decimal string).
    pub integrated_time: Option<String>,
    #[serde(default)]
    /// The log's signed promise to include it (SET).
    pub inclusion_promise: Option<Promise>,
    #[serde(default)]
    /// The Merkle inclusion proof, with its checkpoint.
    pub inclusion_proof: Option<RawProof>,
    /// The entry body, base64 of its canonical JSON.
    pub canonicalized_body: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
/// A log ID as bundles write it.
pub struct RawLogId {
    /// The log's key ID, base64.
    pub key_id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
/// A Rekor entry's kind and version.
pub struct KindVersion {
    /// The kind (`hashedrekord`).
    pub kind: String,
    /// Its version (`0.0.1`).
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
/// An inclusion promise.
pub struct Promise {
    /// The signed entry timestamp, base64.
    pub signed_entry_timestamp: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
/// An inclusion proof as bundles write it.
pub struct RawProof {
    /// Protobuf's JSON leaves out a zero: an absent index is 0.
    #[serde(default = "zero")]
    pub log_index: String,
    /// The tree's root hash, base64.
    pub root_hash: String,
    /// The tree's size (decimal string).
    pub tree_size: String,
    #[serde(default)]
    /// The sibling hashes from leaf to root, base64.
    pub hashes: Vec<String>,
    /// The signed checkpoint over the tree.
    pub checkpoint: Option<Checkpoint>,
}

fn zero() -> String {
    "0".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
/// A signed checkpoint (note) as bundles write it.
pub struct Checkpoint {
    /// The note's text with its signature lines.
    pub envelope: String,
}

fn tlog(m: impl Into<String>) -> Error {
    Error::new(Reason::TlogMissing, m)
}

fn b64(s: &str) -> Result<Vec<u8>, Error> {
    proof_kit::b64::line_wrapped(s)
        .map_err(|e| tlog(format!("transparency-log entry: not base64: {e}")))
}

fn int(s: &str, what: &str) -> Result<i64, Error> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            tlog(format!(
                "transparency-log entry: {what} {s:?} is not a non-negative integer"
            ))
        })
}

/// What a verified entry established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The entry's body (the log's canonical record of what was signed).
    pub body: Vec<u8>,
    /// The integration time, when a SET signed it.
    pub integrated_time: Option<OffsetDateTime>,
    /// The log.
    pub log: Log,
}

/// Verifies an entry against the trusted root's logs: its SET when present (then its
/// integration time is trusted), and its inclusion proof and checkpoint when present or
/// `proof_required`. At least one of the two must verify.
pub fn verify_entry(
    e: &RawEntry,
    root: &TrustedRoot,
    proof_required: bool,
    now: OffsetDateTime,
) -> Result<Verified, Error> {
    let log_id = b64(&e.log_id.key_id)?;
    let log = root
        .tlogs
        .iter()
        .find(|l| l.id == log_id)
        .ok_or_else(|| tlog("the entry's log is not a transparency log of the trusted root"))?;
    let body = b64(&e.canonicalized_body)?;
    // Protobuf's JSON leaves out a zero: an absent index is 0 (the SET then only
    // verifies if 0 is what the log signed).
    let index = e
        .log_index
        .as_deref()
        .map_or(Ok(0), |s| int(s, "logIndex"))?;
    let mut integrated_time = None;
    if let Some(p) = &e.inclusion_promise {
        let t = int(e.integrated_time.as_deref().unwrap_or(""), "integratedTime")?;
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "body".to_owned(),
            Json::String(e.canonicalized_body.clone()),
        );
        m.insert("integratedTime".to_owned(), Json::Int(i128::from(t)));
        m.insert("logID".to_owned(), Json::String(hex::encode(&log_id)));
        m.insert("logIndex".to_owned(), Json::Int(i128::from(index)));
        let signed = Json::Object(m).to_canonical();
        if !log
            .key
            .verify_with(Hash::Sha256, &signed, &b64(&p.signed_entry_timestamp)?)
        {
            return Err(tlog(
                "the entry's signed entry timestamp (SET) does not verify under the log's key",
            ));
        }
        let when = OffsetDateTime::from_unix_timestamp(t).map_err(|e| tlog(e.to_string()))?;
        if when > now + time::Duration::minutes(5) {
            return Err(tlog(format!(
                "the entry's integration time {when} is in the future"
            )));
        }
        if !log.valid.contains(when) {
            return Err(tlog(format!(
                "the log {} was not trusted at the entry's integration time {when}",
                log.url
            )));
        }
        integrated_time = Some(when);
    }
    match &e.inclusion_proof {
        Some(p) => verify_proof(p, &body, log)?,
        None if proof_required || integrated_time.is_none() => {
            return Err(tlog("the entry has no inclusion proof"));
        }
        None => {}
    }
    Ok(Verified {
        body,
        integrated_time,
        log: log.clone(),
    })
}

/// RFC 9162 §2.1.3.2: the root an audit path leads to from a leaf.
fn root_from_path(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let node = |l: &[u8], r: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    };
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

fn verify_proof(p: &RawProof, body: &[u8], log: &Log) -> Result<(), Error> {
    let index = u64::try_from(int(&p.log_index, "inclusion proof logIndex")?).unwrap_or(u64::MAX);
    let size = u64::try_from(int(&p.tree_size, "treeSize")?).unwrap_or(0);
    let root_hash = b64(&p.root_hash)?;
    let path: Vec<[u8; 32]> = p
        .hashes
        .iter()
        .map(|h| {
            b64(h).and_then(|b| {
                <[u8; 32]>::try_from(b).map_err(|_| tlog("an inclusion proof hash is not 32 bytes"))
            })
        })
        .collect::<Result<_, _>>()?;
    if path.len() > 64 {
        return Err(tlog("the inclusion proof is longer than any tree"));
    }
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    let leaf: [u8; 32] = h.finalize().into();
    let root = root_from_path(index, size, leaf, &path)
        .ok_or_else(|| tlog("the inclusion proof does not fit the tree size"))?;
    if root.as_slice() != root_hash {
        return Err(tlog(
            "the inclusion proof leads to another root hash than it states",
        ));
    }
    let cp = p
        .checkpoint
        .as_ref()
        .ok_or_else(|| tlog("the inclusion proof has no checkpoint"))?;
    verify_checkpoint(&cp.envelope, log, size, &root_hash)
}

/// A checkpoint (C2SP signed note): `origin\nsize\nbase64(root)\n[extensions]\n\n` then
/// signature lines `— NAME base64(keyhint ‖ signature)`. One of them must be the log's,
/// over the text before the blank line, and the note must state the proof's size and root.
fn verify_checkpoint(envelope: &str, log: &Log, size: u64, root_hash: &[u8]) -> Result<(), Error> {
    let (text, sigs) = envelope
        .split_once("\n\n")
        .ok_or_else(|| tlog("the checkpoint is not a signed note"))?;
    let signed = format!("{text}\n");
    let mut lines = text.lines();
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| tlog("the checkpoint has no origin"))?;
    let stated_size = lines
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| tlog("the checkpoint has no tree size"))?;
    let stated_root = lines
        .next()
        .and_then(|s| proof_kit::b64::padded(s).ok())
        .ok_or_else(|| tlog("the checkpoint has no root hash"))?;
    if stated_size != size || stated_root != root_hash {
        return Err(tlog(
            "the checkpoint states another tree size or root hash than the inclusion proof",
        ));
    }
    let spki_hint = &Sha256::digest(log.key.spki_der())[..4];
    for line in sigs.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            continue;
        };
        let Some((name, sig)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(sig) = proof_kit::b64::padded(sig) else {
            continue;
        };
        if sig.len() < 5 {
            continue;
        }
        let (hint, sig) = sig.split_at(4);
        let note_hint = log.key.ed25519_raw().map(|raw| {
            let mut h = Sha256::new();
            h.update(name.as_bytes());
            h.update(b"\n");
            h.update([1u8]);
            h.update(raw);
            h.finalize()[..4].to_vec()
        });
        let hinted = hint == spki_hint || note_hint.as_deref() == Some(hint);
        if hinted && log.key.verify_with(Hash::Sha256, signed.as_bytes(), sig) {
            let _ = origin;
            return Ok(());
        }
    }
    Err(tlog("the checkpoint carries no valid signature by the log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(n: u8) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8, n]);
        h.finalize().into()
    }

    fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }

    #[test]
    fn audit_paths_of_a_five_leaf_tree() {
        let l: Vec<[u8; 32]> = (0..5).map(leaf).collect();
        let ab = node(&l[0], &l[1]);
        let cd = node(&l[2], &l[3]);
        let abcd = node(&ab, &cd);
        let root = node(&abcd, &l[4]);
        assert_eq!(root_from_path(2, 5, l[2], &[l[3], ab, l[4]]), Some(root));
        assert_eq!(root_from_path(4, 5, l[4], &[abcd]), Some(root));
        assert_eq!(root_from_path(0, 5, l[0], &[l[1], cd, l[4]]), Some(root));
        // Wrong index, a path too short or too long, an index past the tree.
        assert_ne!(root_from_path(3, 5, l[2], &[l[3], ab, l[4]]), Some(root));
        assert_eq!(root_from_path(2, 5, l[2], &[l[3], ab]), None);
        assert_eq!(root_from_path(4, 5, l[4], &[abcd, abcd]), None);
        assert_eq!(root_from_path(5, 5, l[4], &[abcd]), None);
    }
}
