//! Events (docs/contracts.md §3): one JSON object per line.
//!
//! The events file is the durable record: a rejection's line is written and fsynced
//! before its verdict is returned. Everything else (stdout, syslog, `WatchEvents`) is fed
//! from a broadcast channel that never blocks a verdict; a sink that falls behind loses
//! lines, which are counted and reported as an `events.dropped` event.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use api::codes::{EventKind, ReasonCode};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// One event. Field names and meanings are a contract once shipped; every coded value
/// (the kind, the reason, the mode, the proofs) is its enum here, written as its text
/// only when the event is serialised, so no event can carry a code the contract lacks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// `pull.rejected`, `pull.allowed`, `pull.audited`, `policy.reloaded`, `policy.invalid`,
    /// `trust.fetch_failed`, `events.dropped`, `access.denied`, `events.unwritable`, …
    #[serde(serialize_with = "text")]
    pub event: EventKind,
    /// Normalised image reference.
    pub image: Option<String>,
    /// Digest asked about, `sha256:HEX`.
    pub digest: Option<String>,
    /// Repository (Notary GUN).
    pub gun: Option<String>,
    /// Rule name.
    pub rule: Option<String>,
    /// `enforce` or `audit`.
    #[serde(serialize_with = "optional_text")]
    pub mode: Option<policy::Mode>,
    /// Reason code.
    #[serde(serialize_with = "optional_text")]
    pub reason: Option<ReasonCode>,
    /// One sentence for people.
    pub message: String,
    /// This node.
    pub host: String,
    /// Policy generation in force.
    pub policy_generation: u64,
    /// Unique ID.
    pub event_id: String,
    /// Set on verdicts asked for as a dry run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Who asked (`containerd-bindir`, `containerd-watcher`, `cli`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// containerd namespace, for images the watcher saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The kinds of proof that vouched, for allowed signed pulls: written
    /// `notary-v1,cosign`.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "proof_list")]
    pub proof: Vec<policy::Proof>,
    /// Each kind of proof asked and its outcome, when the rule accepts several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proofs: Vec<ProofOutcome>,
    /// `container.*` events: the pod (its name) the container belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// `container.*` events: the pod's Kubernetes namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// `container.*` events: the pod's Kubernetes UID (what a Kubernetes Event about the
    /// pod refers to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// `container.*` events: the container's name in its pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

struct FileState {
    file: File,
    size: u64,
}

/// The events file and the fan-out to other sinks.
pub struct EventLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    state: Mutex<FileState>,
    tx: broadcast::Sender<String>,
    host: String,
    seq: AtomicU64,
    started: u128,
    /// Lines lost by slow sinks.
    pub dropped: AtomicU64,
    /// Events that could not be written to the file since it last worked.
    unwritten: AtomicU64,
}

impl EventLog {
    /// The events file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// This host's name, for events.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

impl EventLog {
    /// Opens (creating) the events file; its directory is created 0750.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<EventLog> {
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir)?;
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o750))?;
            }
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let (tx, _) = broadcast::channel(4096);
        Ok(EventLog {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            state: Mutex::new(FileState { file, size }),
            tx,
            host: hostname(),
            seq: AtomicU64::new(0),
            started: OffsetDateTime::now_utc()
                .unix_timestamp_nanos()
                .unsigned_abs(),
            dropped: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
        })
    }

    /// A new event of `kind` with time, host and ID filled in.
    pub fn new_event(&self, kind: EventKind, generation: u64, message: impl Into<String>) -> Event {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Event {
            time: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            event: kind,
            image: None,
            digest: None,
            gun: None,
            rule: None,
            mode: None,
            reason: None,
            // Messages quote what servers and clients sent: bounded for every sink.
            message: api::capped(&message.into(), 4000),
            host: self.host.clone(),
            policy_generation: generation,
            event_id: format!("{:x}-{}-{n}", self.started, std::process::id()),
            dry_run: false,
            source: None,
            namespace: None,
            proof: Vec::new(),
            proofs: Vec::new(),
            pod: None,
            pod_namespace: None,
            pod_uid: None,
            container: None,
        }
    }

    /// Appends the event; with `durable`, returns only once it is on disk (fsync).
    /// Then hands it to the other sinks without waiting for them — also when the file
    /// cannot be written, so a full or read-only disk never silences a rejection: the
    /// other sinks get the event, preceded by one `events.unwritable` per outage, and the
    /// file gets an `events.recovered` with the count once it can be written again.
    pub fn record(&self, event: &Event, durable: bool) -> std::io::Result<()> {
        let line = line_of(event)?;
        let res = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.append(&mut st, &line, durable)
        };
        self.recorded(event, line, res)
    }

    /// [`EventLog::record`] of an event not to be synced, without waiting for the file:
    /// `None` when another write holds it (a rejection being synced, which a loaded disk
    /// can make last seconds). An async worker must not wait for that: every worker
    /// stuck so would stall every verdict, and the NRI gate's answer past containerd's
    /// deadline lets the container be created.
    pub fn try_record(&self, event: &Event) -> Option<std::io::Result<()>> {
        let line = line_of(event).ok()?;
        let res = {
            let mut st = match self.state.try_lock() {
                Ok(st) => st,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            };
            self.append(&mut st, &line, false)
        };
        Some(self.recorded(event, line, res))
    }

    /// After a write of `event` as `line`: the unwritable and recovered notices, and the
    /// other sinks.
    fn recorded(
        &self,
        event: &Event,
        mut line: String,
        res: std::io::Result<()>,
    ) -> std::io::Result<()> {
        line.pop();
        match &res {
            Ok(()) => {
                let missed = self.unwritten.swap(0, Ordering::Relaxed);
                if missed > 0 {
                    let ev = self.new_event(
                        api::codes::EventKind::EventsRecovered,
                        event.policy_generation,
                        format!(
                            "the events file {} is writable again; {missed} event(s) could not be written to it and went to the other sinks only",
                            self.path.display()
                        ),
                    );
                    let _ = self.record(&ev, true);
                }
            }
            Err(e) => {
                if self.unwritten.fetch_add(1, Ordering::Relaxed) == 0 {
                    let ev = self.new_event(
                        api::codes::EventKind::EventsUnwritable,
                        event.policy_generation,
                        format!(
                            "cannot write the events file {}: {e}; pulls under enforce rules are refused (events_unwritable) until it can be written, and events go to the other sinks meanwhile: free space on, or fix, its file system",
                            self.path.display()
                        ),
                    );
                    if let Ok(notice) = serde_json::to_string(&ev) {
                        let _ = self.tx.send(notice);
                    }
                }
            }
        }
        // No receivers is fine; a lagging receiver counts its own losses.
        let _ = self.tx.send(line);
        res
    }

    fn append(&self, st: &mut FileState, line: &str, durable: bool) -> std::io::Result<()> {
        if st.size + line.len() as u64 > self.max_bytes && st.size > 0 {
            self.rotate(st)?;
        }
        let written = st.file.write_all(line.as_bytes()).and_then(|()| {
            if durable {
                st.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Cut a partly written line, so the next one starts on a line of its own
            // and the file stays one JSON object per line.
            let _ = st.file.set_len(st.size);
            return Err(e);
        }
        st.size += line.len() as u64;
        Ok(())
    }

    /// Rotation happens under the lock every verdict takes to record its event, so it
    /// does no more than it must: the full file is not synced (its durable events, the
    /// rejections, were synced one by one as they were written; the others never are),
    /// while the renames and the new file are (one sync of the directory), so that a
    /// rejection synced into the new file is found there after a crash. Syncing the
    /// whole 100 MiB file here held every verdict for the length of its writeback.
    fn rotate(&self, st: &mut FileState) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        st.file = open_append(&self.path)?;
        st.size = 0;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }

    /// A receiver of every event line from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}

/// An event's line in the file: one JSON object and a newline.
fn line_of(event: &Event) -> std::io::Result<String> {
    let mut line = serde_json::to_string(event).map_err(std::io::Error::other)?;
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that holds the file (a rejection's sync on a loaded disk) does not make
    /// an event that needs no sync wait for it on an async worker: the engine hands that
    /// one to the blocking pool instead.
    #[tokio::test(flavor = "current_thread")]
    async fn an_event_not_synced_never_waits_on_a_worker_for_another_writes_sync() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = std::sync::Arc::new(
            EventLog::open(&tmp.path().join("events.jsonl"), 1 << 20, 1).expect("open"),
        );
        let ev = log.new_event(EventKind::PullAllowed, 1, "ok");
        let held = log.state.lock().expect("lock");
        assert!(log.try_record(&ev).is_none(), "it waited for the file");
        drop(held);
        assert!(matches!(log.try_record(&ev), Some(Ok(()))));
        let text = std::fs::read_to_string(tmp.path().join("events.jsonl")).expect("read");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// The coded fields are enums in the code and their contract text on the wire: the
    /// same line as when they were strings.
    #[test]
    fn coded_fields_are_written_as_their_contract_text() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = EventLog::open(&tmp.path().join("events.jsonl"), 1 << 20, 1).expect("open");
        let mut ev = log.new_event(EventKind::PullRejected, 3, "no");
        let bare: serde_json::Value = serde_json::to_value(&ev).expect("json");
        assert_eq!(bare["event"], "pull.rejected");
        assert!(bare["mode"].is_null() && bare["reason"].is_null(), "{bare}");
        assert!(
            bare.get("proof").is_none() && bare.get("proofs").is_none(),
            "{bare}"
        );
        ev.mode = Some(policy::Mode::Enforce);
        ev.reason = Some(ReasonCode::NoSignature);
        ev.proof = vec![policy::Proof::NotaryV1, policy::Proof::Cosign];
        ev.proofs = vec![
            ProofOutcome {
                proof: policy::Proof::NotaryV1,
                passed: true,
                reason: None,
            },
            ProofOutcome {
                proof: policy::Proof::Notation,
                passed: false,
                reason: Some(ReasonCode::UntrustedSigner),
            },
        ];
        let v: serde_json::Value = serde_json::to_value(&ev).expect("json");
        assert_eq!(v["mode"], "enforce");
        assert_eq!(v["reason"], "no_signature");
        assert_eq!(v["proof"], "notary-v1,cosign");
        assert_eq!(
            v["proofs"],
            serde_json::json!([
                {"proof": "notary-v1", "passed": true},
                {"proof": "notation", "passed": false, "reason": "untrusted_signer"}
            ])
        );
    }

    #[test]
    fn lines_are_json_and_rotation_keeps_files() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("log/events.jsonl");
        let log = EventLog::open(&path, 600, 2).expect("open");
        let mut rx = log.subscribe();
        for i in 0..10 {
            let ev = log.new_event(api::codes::EventKind::PullRejected, 1, format!("event {i}"));
            log.record(&ev, true).expect("record");
        }
        let first: serde_json::Value =
            serde_json::from_str(&rx.try_recv().expect("broadcast")).expect("json");
        assert_eq!(first["event"], "pull.rejected");
        assert!(path.exists());
        assert!(PathBuf::from(format!("{}.1", path.display())).exists());
        assert!(
            !PathBuf::from(format!("{}.3", path.display())).exists(),
            "keeps 2"
        );
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("one object per line");
            assert!(v["event_id"].as_str().is_some_and(|s| !s.is_empty()));
        }
    }
}

/// One kind of proof's outcome, in an event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProofOutcome {
    /// `notary-v1`, `cosign`.
    #[serde(serialize_with = "text")]
    pub proof: policy::Proof,
    /// It vouched.
    pub passed: bool,
    /// Its reason code when it did not.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_text"
    )]
    pub reason: Option<ReasonCode>,
}

/// A contract value written as its text.
trait Text {
    fn text(&self) -> &'static str;
}

impl Text for EventKind {
    fn text(&self) -> &'static str {
        self.as_str()
    }
}

impl Text for ReasonCode {
    fn text(&self) -> &'static str {
        self.as_str()
    }
}

impl Text for policy::Mode {
    fn text(&self) -> &'static str {
        self.as_str()
    }
}

impl Text for policy::Proof {
    fn text(&self) -> &'static str {
        self.as_str()
    }
}

fn text<T: Text, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.text())
}

fn optional_text<T: Text, S: serde::Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v.text()),
        None => s.serialize_none(),
    }
}

fn proof_list<S: serde::Serializer>(v: &[policy::Proof], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::engine::proof_list(v))
}
