//! Trusted state per repository, and the latest verification time of the node.
//!
//! Layout under the state directory (0700):
//! - `repos/<sha256 of the GUN>.json`: `{"format":1,"checksum":HEX,"record":{…}}`, the
//!   checksum being SHA-256 over the canonical JSON of `record`;
//! - `clock.json`: the latest time at which anything was verified.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use trust_core::canonical::Json;
use trust_core::TrustedState;

use crate::fsutil::{private_dir, read_secure, sweep_temporaries, write_atomic};
use crate::{Error, Result};

const FORMAT: u64 = 1;
/// State files are small; anything larger is not ours.
const MAX_STATE_FILE: u64 = 8 * 1024 * 1024;
/// Cached trust data kept on disk at most (files, bytes): every repository pulled once
/// leaves a blob, and the names pulled are not the operator's to choose. Past either
/// bound the least recently written go; a repository whose blob went is fetched again,
/// and only loses the `on_unreachable = "cached"` answer across a restart meanwhile.
pub const MAX_CACHE_FILES: usize = 4096;
/// See [`MAX_CACHE_FILES`].
pub const MAX_CACHE_BYTES: u64 = 1024 * 1024 * 1024;
/// Clocks are slewed by NTP; a step back of less than this is not an alarm.
pub const CLOCK_TOLERANCE: time::Duration = time::Duration::minutes(5);

/// What is remembered about one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRecord {
    /// Root, versions: what trust-core takes in and hands back.
    pub trusted: TrustedState,
    /// When this repository was last verified (RFC 3339).
    pub last_verified: String,
    /// Set when the first root was trusted on first use.
    #[serde(default)]
    pub tofu: Option<TofuRecord>,
}

/// Where a verification against stored state starts: the node's clock, checked against
/// the last verification, and the repository's record (`None` on first contact).
#[derive(Debug, Clone)]
pub struct Prior {
    /// The time every check of this verification uses.
    pub now: OffsetDateTime,
    /// What was trusted before.
    pub record: Option<RepoRecord>,
}

impl Prior {
    /// The root version trusted before: the trust server is asked for the roots after it.
    pub fn trusted_root(&self) -> Option<u64> {
        self.record
            .as_ref()
            .and_then(|r| r.trusted.versions.get("root").copied())
    }
}

/// What [`StateStore::verify_and_record`] verified.
#[derive(Debug)]
pub struct Verified {
    /// The verified repository.
    pub repo: trust_core::VerifiedRepo,
    /// How long the durable record took, when the trusted state moved (the daemon
    /// reports it apart from verification: a slow disk shows here).
    pub recorded_in: Option<std::time::Duration>,
    /// The node's clock record, when it is due and was left to the caller
    /// ([`StateStore::verify_and_record_clock_after`]).
    pub clock_due: Option<ClockDue>,
}

/// A verification time the node's clock record is due to get. The record may lag a
/// minute behind by design (clock checks allow five), so a verdict need not wait for
/// its two fsyncs: pullguardd writes it beside the answer.
#[derive(Debug)]
#[must_use = "the node's clock record is due: write it"]
pub struct ClockDue(OffsetDateTime);

impl ClockDue {
    /// Writes the clock record of `store`.
    pub fn write(self, store: &StateStore) -> Result<()> {
        store.write_clock(self.0)
    }
}

/// A trust-on-first-use decision, kept so it can be reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TofuRecord {
    /// When the root was first trusted (RFC 3339).
    pub first_use: String,
    /// Root version trusted then.
    pub root_version: u64,
    /// Root key IDs trusted then.
    pub root_key_ids: Vec<String>,
}

impl TofuRecord {
    /// The record for a verification whose root was trusted on first use; `None` when
    /// root trust came from pins, a trusted root or earlier state.
    pub fn if_first_use(
        repo: &trust_core::VerifiedRepo,
        now: OffsetDateTime,
    ) -> Option<TofuRecord> {
        let root = repo.roles.get("root");
        (repo.root_trust == trust_core::RootTrust::FirstUse).then(|| TofuRecord {
            first_use: rfc3339(now),
            root_version: root.map_or(0, |r| r.version),
            root_key_ids: root.map(|r| r.signers.clone()).unwrap_or_default(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ClockFile {
    last_verified: String,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

use trust_core::rfc3339;

/// Removes a file; true if it was there.
fn remove_if_present(path: PathBuf) -> Result<bool> {
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Io {
            op: "remove",
            path,
            source,
        }),
    }
}

fn checksum(record: &Json) -> String {
    hex::encode(Sha256::digest(record.to_canonical()))
}

impl StateStore {
    /// Opens (creating, 0700) the state directory; refuses one others can write.
    pub fn open(dir: &Path) -> Result<StateStore> {
        private_dir(dir)?;
        private_dir(&dir.join("repos"))?;
        sweep_temporaries(&dir.join("repos"));
        sweep_temporaries(dir);
        Ok(StateStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a repository's state lives. Hashing keeps any GUN a safe file name.
    pub fn path_for(&self, gun: &str) -> PathBuf {
        self.dir.join("repos").join(format!(
            "{}.json",
            hex::encode(Sha256::digest(gun.as_bytes()))
        ))
    }

    /// The record for `gun`; `None` only when there has never been one.
    pub fn load(&self, gun: &str) -> Result<Option<RepoRecord>> {
        let path = self.path_for(gun);
        let Some(bytes) = read_secure(&path, MAX_STATE_FILE)? else {
            return Ok(None);
        };
        let corrupt = |detail: String| Error::CorruptState {
            path: path.clone(),
            gun: gun.to_owned(),
            detail,
        };
        let doc = Json::parse(&bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        match doc.get("format") {
            Some(Json::Int(n)) if *n == i128::from(FORMAT) => {}
            other => return Err(corrupt(format!("unknown format {other:?}"))),
        }
        let record = doc
            .get("record")
            .ok_or_else(|| corrupt("no record".to_owned()))?;
        let stored = match doc.get("checksum") {
            Some(Json::String(s)) => s.clone(),
            _ => return Err(corrupt("no checksum".to_owned())),
        };
        if stored != checksum(record) {
            return Err(corrupt("checksum does not match its content".to_owned()));
        }
        let raw: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let rec: RepoRecord = serde_json::from_value(raw["record"].clone())
            .map_err(|e| corrupt(format!("record: {e}")))?;
        if rec.trusted.gun != gun {
            return Err(corrupt(format!("it holds state for {}", rec.trusted.gun)));
        }
        Ok(Some(rec))
    }

    /// Saves the record for its repository, durably.
    pub fn save(&self, record: &RepoRecord) -> Result<()> {
        let value = serde_json::to_vec(record).unwrap_or_default();
        let json = Json::parse(&value).map_err(|e| Error::CorruptState {
            path: self.path_for(&record.trusted.gun),
            gun: record.trusted.gun.clone(),
            detail: format!("cannot encode: {e}"),
        })?;
        let doc = format!(
            "{{\"format\":{FORMAT},\"checksum\":\"{}\",\"record\":{}}}\n",
            checksum(&json),
            String::from_utf8_lossy(&json.to_canonical())
        );
        write_atomic(&self.path_for(&record.trusted.gun), doc.as_bytes())
    }

    /// Records a successful verification of `state` at `now`, keeping a TOFU record.
    pub fn record_verified(
        &self,
        state: TrustedState,
        now: OffsetDateTime,
        tofu: Option<TofuRecord>,
    ) -> Result<RepoRecord> {
        self.record(state, now, tofu, false)
            .map(|(record, _)| record)
    }

    /// [`Self::record_verified`]; with `clock_after`, a due clock record is returned,
    /// not written.
    fn record(
        &self,
        state: TrustedState,
        now: OffsetDateTime,
        tofu: Option<TofuRecord>,
        clock_after: bool,
    ) -> Result<(RepoRecord, Option<ClockDue>)> {
        let previous_tofu = self.load(&state.gun).ok().flatten().and_then(|r| r.tofu);
        let record = RepoRecord {
            trusted: state,
            last_verified: rfc3339(now),
            tofu: previous_tofu.or(tofu),
        };
        let due = self.clock_due(now)?;
        if !due || clock_after {
            self.save(&record)?;
            return Ok((record, due.then_some(ClockDue(now))));
        }
        // Two independent files, each with two fsyncs: written side by side, which
        // halves what a first verdict waits for.
        let (saved, clock) = std::thread::scope(|s| {
            let clock = s.spawn(|| self.write_clock(now));
            let saved = self.save(&record);
            (saved, clock.join())
        });
        saved?;
        clock.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok((record, None))
    }

    /// Step one of every verification against stored state (the daemon's, `trust verify
    /// --state-dir`'s, and the publisher's before it signs): the clock must not be behind
    /// the last verification, and the record must read (a damaged one is an error, never
    /// "no state": that would re-open trust on first use).
    pub fn prior(&self, gun: &str, now: OffsetDateTime) -> Result<Prior> {
        self.check_clock(now)?;
        Ok(Prior {
            now,
            record: self.load(gun)?,
        })
    }

    /// Step two: verifies `files` against `prior` (its time and trusted state replace
    /// whatever `opts` said) and records what was verified when it moved the trusted
    /// state. `Error::Untrusted` is a verdict on the trust data; any other error means
    /// it verified but could not be recorded.
    pub fn verify_and_record<'a>(
        &self,
        prior: &'a Prior,
        files: &trust_core::RepoFiles,
        opts: trust_core::VerifyOptions<'a>,
    ) -> Result<Verified> {
        self.verify_then_record(prior, files, opts, false)
    }

    /// [`Self::verify_and_record`], leaving a due clock record to the caller
    /// ([`Verified::clock_due`]): the repository's record is durable when this returns,
    /// the clock's once the caller writes it.
    pub fn verify_and_record_clock_after<'a>(
        &self,
        prior: &'a Prior,
        files: &trust_core::RepoFiles,
        opts: trust_core::VerifyOptions<'a>,
    ) -> Result<Verified> {
        self.verify_then_record(prior, files, opts, true)
    }

    fn verify_then_record<'a>(
        &self,
        prior: &'a Prior,
        files: &trust_core::RepoFiles,
        mut opts: trust_core::VerifyOptions<'a>,
        clock_after: bool,
    ) -> Result<Verified> {
        opts.now = prior.now;
        opts.state = prior.record.as_ref().map(|r| &r.trusted);
        let repo = trust_core::verify(files, &opts)?;
        let (mut recorded_in, mut clock_due) = (None, None);
        if prior.record.as_ref().map(|r| &r.trusted) != Some(&repo.state) {
            let started = std::time::Instant::now();
            let tofu = TofuRecord::if_first_use(&repo, prior.now);
            clock_due = self
                .record(repo.state.clone(), prior.now, tofu, clock_after)?
                .1;
            recorded_in = Some(started.elapsed());
        }
        Ok(Verified {
            repo,
            recorded_in,
            clock_due,
        })
    }

    /// Forgets a repository's state; true if there was any.
    pub fn forget(&self, gun: &str) -> Result<bool> {
        remove_if_present(self.path_for(gun))
    }

    fn clock_path(&self) -> PathBuf {
        self.dir.join("clock.json")
    }

    /// The latest time anything was verified, if known.
    pub fn last_verified(&self) -> Result<Option<OffsetDateTime>> {
        let path = self.clock_path();
        let Some(bytes) = read_secure(&path, 4096)? else {
            return Ok(None);
        };
        let bad = |detail: String| Error::CorruptState {
            path: path.clone(),
            gun: "--clock".to_owned(),
            detail,
        };
        let c: ClockFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        OffsetDateTime::parse(&c.last_verified, &Rfc3339)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    /// Fails if `now` is earlier (beyond [`CLOCK_TOLERANCE`]) than a time at which trust
    /// data was already verified: expiry checks made with such a clock mean nothing.
    pub fn check_clock(&self, now: OffsetDateTime) -> Result<()> {
        if let Some(last) = self.last_verified()? {
            if now + CLOCK_TOLERANCE < last {
                return Err(Error::ClockWentBackwards { now, last });
            }
        }
        Ok(())
    }

    /// Whether `now` should be recorded as the latest verification time. A record at
    /// most a minute old is kept: clock checks allow five minutes, and this spares an
    /// fsync on every verification of a busy node.
    fn clock_due(&self, now: OffsetDateTime) -> Result<bool> {
        Ok(self
            .last_verified()?
            .is_none_or(|last| last < now - time::Duration::minutes(1)))
    }

    fn write_clock(&self, now: OffsetDateTime) -> Result<()> {
        let body = serde_json::to_vec(&ClockFile {
            last_verified: rfc3339(now),
        })
        .unwrap_or_default();
        write_atomic(&self.clock_path(), &body)
    }

    /// Forgets the recorded clock, after an operator has fixed a wrong one.
    pub fn forget_clock(&self) -> Result<bool> {
        remove_if_present(self.clock_path())
    }

    fn cache_path(&self, key: &str) -> PathBuf {
        self.dir.join("cache").join(format!(
            "{}.bin",
            hex::encode(Sha256::digest(key.as_bytes()))
        ))
    }

    /// Keeps a blob of cached trust data under `key`, durably. The content is
    /// re-verified before every use, so it needs no checksum of its own.
    pub fn save_cache(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.save_cache_within(key, bytes, MAX_CACHE_FILES, MAX_CACHE_BYTES)
    }

    /// [`save_cache`](Self::save_cache) with the bounds given (tests use small ones).
    #[doc(hidden)]
    pub fn save_cache_within(
        &self,
        key: &str,
        bytes: &[u8],
        max_files: usize,
        max_bytes: u64,
    ) -> Result<()> {
        let dir = self.dir.join("cache");
        private_dir(&dir)?;
        let path = self.cache_path(key);
        write_atomic(&path, bytes)?;
        prune_cache(&dir, &path, max_files, max_bytes);
        Ok(())
    }

    /// The blob saved under `key`, if any (at most `limit` bytes).
    pub fn load_cache(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        read_secure(&self.cache_path(key), limit)
    }

    /// Repository names with stored state (those that load).
    pub fn repositories(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("repos")) {
            for e in entries.flatten() {
                if let Ok(Some(bytes)) = read_secure(&e.path(), MAX_STATE_FILE) {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                        if let Some(g) = v["record"]["trusted"]["gun"].as_str() {
                            out.push(g.to_owned());
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }
}

/// Removes the least recently written blobs of `dir` until at most `max_files` and
/// `max_bytes` remain, `keep` (the one just written) never. Best effort: a blob that
/// cannot be removed now is tried again on the next write.
fn prune_cache(dir: &Path, keep: &Path, max_files: usize, max_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut blobs: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut files = blobs.len();
    let mut bytes: u64 = blobs.iter().map(|b| b.1).sum();
    if files <= max_files && bytes <= max_bytes {
        return;
    }
    blobs.sort();
    for (_, len, path) in blobs {
        if files <= max_files && bytes <= max_bytes {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            files -= 1;
            bytes = bytes.saturating_sub(len);
        }
    }
}
