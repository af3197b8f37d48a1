//! OTLP export (logs signal, gRPC) to an OpenTelemetry Collector: `[daemon] otlp`.
//!
//! Unlike the other sinks, this one reads the events file, not the broadcast channel: the
//! file is the source of truth, and a cursor in `STATE_DIR/otlp-cursor.json` (which file,
//! by the digest of its first line, and how many of its bytes were accepted) is moved
//! only after the collector accepted a batch. A collector that is down, or a pullguardd
//! restart, therefore loses nothing: lines are resent from the cursor once it answers,
//! following the file through rotation. Delivery is at least once (a batch accepted just
//! before a crash is sent again); receivers can drop repeats by `event_id`.
//!
//! Each line becomes one LogRecord: every field of the JSON line as an attribute of the
//! same name, `message` also as the body, `event` as the event name, `time` as the
//! timestamp and the event's syslog severity mapped to OTLP's.

use std::fs::File;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::engine::Engine;

mod record;

pub use record::{record, request};

/// Lines per export request.
const MAX_BATCH_LINES: usize = 512;
/// Bytes of event lines per export request: well under the 4 MiB a collector's gRPC
/// receiver takes by default, with room for the attributes' encoding.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// A line longer than this is not one pullguardd wrote whole (its fields are capped): it
/// is skipped, counted and reported, never sent.
const MAX_LINE: usize = 512 * 1024;
/// How long one export may take before it is retried.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff between failed exports.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The file is also looked at this often, in case a wake-up was missed.
const POLL: Duration = Duration::from_secs(1);
/// The cursor's file name in the state directory.
const CURSOR_FILE: &str = "otlp-cursor.json";

/// Where export stands: which file (by the sha256 of its first line, which never
/// changes in an append-only file) and how many of its bytes the collector accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `sha256:HEX` of the file's first line, newline included.
    pub file: String,
    /// Bytes of that file already exported (always the end of a line).
    pub offset: u64,
}

/// Lines read from the events file, not yet accepted by the collector.
#[derive(Debug, Default)]
pub struct Batch {
    /// Complete lines, without their newlines, in file order.
    pub lines: Vec<String>,
    /// Lines too long to be pullguardd's, skipped.
    pub skipped: u64,
    /// Set when lines may be missing: the cursor's file had been rotated away.
    pub gap: Option<String>,
}

/// Reads the events file and its rotated copies in order, from a cursor.
pub struct Follower {
    path: PathBuf,
    keep: usize,
    file: Option<File>,
    /// The identity of `file` (see [`Cursor::file`]); empty until it has a line.
    id: String,
    /// Bytes of `file` accepted by the collector.
    committed: u64,
    /// Bytes of `file` handed out in batches, accepted or not.
    read: u64,
    /// Set by [`Follower::resume`] for the next batch.
    gap: Option<String>,
}

/// `sha256:HEX` of the first line of `file`, or `None` while it has no complete line.
fn identity(file: &File) -> std::io::Result<Option<String>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    let mut hash = Sha256::new();
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 || at > MAX_LINE as u64 {
            return Ok(None);
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            hash.update(&buf[..=end]);
            return Ok(Some(format!("sha256:{}", hex::encode(hash.finalize()))));
        }
        hash.update(&buf[..n]);
        at += n as u64;
    }
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

impl Follower {
    /// The events file at `path`, of which `keep` rotated copies (`PATH.1` newest) exist.
    pub fn new(path: &Path, keep: usize) -> Follower {
        Follower {
            path: path.to_path_buf(),
            keep,
            file: None,
            id: String::new(),
            committed: 0,
            read: 0,
            gap: None,
        }
    }

    /// The files that exist, oldest first: `PATH.KEEP` … `PATH.1`, `PATH`.
    fn chain(&self) -> Vec<(PathBuf, File)> {
        let mut out = Vec::new();
        for n in (0..=self.keep).rev() {
            let p = if n == 0 {
                self.path.clone()
            } else {
                PathBuf::from(format!("{}.{n}", self.path.display()))
            };
            if let Ok(f) = File::open(&p) {
                out.push((p, f));
            }
        }
        out
    }

    /// Starts from `cursor`: at its file and offset when that file is still kept; at the
    /// oldest kept file, with a gap noted, when it was rotated away; at the start of the
    /// current file without a cursor (the first export).
    pub fn resume(&mut self, cursor: Option<&Cursor>) {
        let chain = self.chain();
        let Some(cursor) = cursor else {
            self.start_at(chain.into_iter().last().map(|(_, f)| f), 0);
            return;
        };
        for (_, f) in &chain {
            if identity(f).ok().flatten().as_deref() == Some(cursor.file.as_str()) {
                let len = f.metadata().map_or(0, |m| m.len());
                let f = f.try_clone().ok();
                self.start_at(f, cursor.offset.min(len));
                return;
            }
        }
        self.gap = Some(format!(
            "the events file was rotated past the last line the collector accepted ({} at byte {}) while pullguardd was not exporting; export resumes at the oldest kept file, and what the removed files held is missing from the collector (raise events_keep or events_max_bytes)",
            cursor.file, cursor.offset
        ));
        self.start_at(chain.into_iter().next().map(|(_, f)| f), 0);
    }

    fn start_at(&mut self, file: Option<File>, offset: u64) {
        self.id = file
            .as_ref()
            .and_then(|f| identity(f).ok().flatten())
            .unwrap_or_default();
        self.file = file;
        self.committed = offset;
        self.read = offset;
    }

    /// Whether the file being read is still the one pullguardd appends to. While the
    /// path is missing (the moment between a rotation's rename and its create) it counts
    /// as current: nothing newer exists yet.
    fn is_current(&self, file: &File) -> bool {
        match (std::fs::metadata(&self.path), file.metadata()) {
            (Ok(now), Ok(ours)) => same_file(&now, &ours),
            (Err(_), _) => true,
            (Ok(_), Err(_)) => false,
        }
    }

    /// The next lines after those already handed out; empty when there are none yet.
    pub fn next_batch(&mut self) -> std::io::Result<Batch> {
        let mut batch = Batch {
            gap: self.gap.take(),
            ..Batch::default()
        };
        // A file is only left once it is read to its end and is no longer the current one,
        // so the lines of one file always go before those of the next.
        for _ in 0..=self.keep + 1 {
            if self.file.is_none() {
                let current = File::open(&self.path).ok();
                self.start_at(current, 0);
            }
            let Some(file) = self.file.as_ref() else {
                return Ok(batch);
            };
            let current = self.is_current(file);
            let at_end = self.read_lines(&mut batch)?;
            if !batch.lines.is_empty() || batch.skipped > 0 || !at_end || current {
                return Ok(batch);
            }
            if self.committed < self.read {
                // Lines of this file are out but not accepted: move on only after commit.
                return Ok(batch);
            }
            self.advance();
        }
        Ok(batch)
    }

    /// Reads complete lines at `self.read` into `batch`; true when the file's end (or a
    /// partial last line) was reached.
    fn read_lines(&mut self, batch: &mut Batch) -> std::io::Result<bool> {
        let Some(file) = self.file.as_ref() else {
            return Ok(true);
        };
        let mut bytes = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut skipping = false;
        loop {
            if batch.lines.len() >= MAX_BATCH_LINES || bytes >= MAX_BATCH_BYTES {
                return Ok(false);
            }
            let at = self.read + pending.len() as u64;
            let n = file.read_at(&mut buf, at)?;
            if n == 0 {
                return Ok(true);
            }
            let mut start = 0;
            while let Some(pos) = buf[start..n].iter().position(|&b| b == b'\n') {
                let end = start + pos;
                pending.extend_from_slice(&buf[start..end]);
                let len = pending.len() as u64 + 1;
                if skipping {
                    batch.skipped += 1;
                    skipping = false;
                } else {
                    bytes += pending.len();
                    batch
                        .lines
                        .push(String::from_utf8_lossy(&pending).into_owned());
                }
                pending.clear();
                self.read += len;
                start = end + 1;
                if batch.lines.len() >= MAX_BATCH_LINES || bytes >= MAX_BATCH_BYTES {
                    return Ok(false);
                }
            }
            if skipping {
                // Forget the bytes of a line already judged too long, keep counting them.
                self.read += (n - start) as u64;
                continue;
            }
            pending.extend_from_slice(&buf[start..n]);
            if pending.len() > MAX_LINE {
                self.read += pending.len() as u64;
                pending.clear();
                skipping = true;
            }
        }
    }

    /// Moves to the file after the current one in the chain (the oldest kept one when the
    /// current one was removed), at its start.
    fn advance(&mut self) {
        let ours = self.file.as_ref().and_then(|f| f.metadata().ok());
        let chain = self.chain();
        let next = match ours {
            Some(ours) => {
                let pos = chain
                    .iter()
                    .position(|(_, f)| f.metadata().is_ok_and(|m| same_file(&m, &ours)));
                match pos {
                    Some(i) => chain.into_iter().nth(i + 1),
                    None => chain.into_iter().next(),
                }
            }
            None => chain.into_iter().last(),
        };
        self.start_at(next.map(|(_, f)| f), 0);
    }

    /// Everything handed out so far was accepted: the cursor to save.
    pub fn commit(&mut self) -> Option<Cursor> {
        self.committed = self.read;
        if self.id.is_empty() {
            if let Some(f) = &self.file {
                self.id = identity(f).ok().flatten().unwrap_or_default();
            }
        }
        (!self.id.is_empty()).then(|| Cursor {
            file: self.id.clone(),
            offset: self.committed,
        })
    }

    /// Hand out again what was read but not accepted (after a failed export the batch is
    /// rebuilt from the file, not kept in memory: the file is the truth).
    pub fn rewind(&mut self) {
        self.read = self.committed;
    }
}

/// The cursor saved in `state_dir`, if any (an unreadable one counts as none: export
/// starts again at the current file, sending some lines twice rather than none).
pub fn load_cursor(state_dir: &Path) -> Option<Cursor> {
    let text = std::fs::read(state_dir.join(CURSOR_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Saves the cursor the way the trusted state is saved (key_store::write_atomic).
pub fn save_cursor(state_dir: &Path, cursor: &Cursor) -> Result<(), key_store::Error> {
    // A string and a number: serialising cannot fail.
    let bytes = serde_json::to_vec(cursor).unwrap_or_default();
    key_store::write_atomic(&state_dir.join(CURSOR_FILE), &bytes)
}

/// Starts exporting to `endpoint` (`http://HOST:PORT`).
pub fn spawn(engine: Arc<Engine>, endpoint: String) {
    let settings = engine.loaded().policy.daemon.clone();
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(5))
            .timeout(EXPORT_TIMEOUT)
            .connect_lazy(),
        Err(e) => {
            engine
                .otlp_state
                .set(format!("off: {endpoint} is not a usable address: {e}"));
            return;
        }
    };
    let mut follower = Follower::new(&settings.events_file, settings.events_keep);
    follower.resume(load_cursor(&settings.state_dir).as_ref());
    engine.otlp_state.set(format!("exporting to {endpoint}"));
    tokio::spawn(export(
        engine,
        LogsServiceClient::new(channel),
        follower,
        endpoint,
        settings.state_dir,
    ));
}

async fn export(
    engine: Arc<Engine>,
    mut client: LogsServiceClient<tonic::transport::Channel>,
    mut follower: Follower,
    endpoint: String,
    state_dir: PathBuf,
) {
    let host = crate::events::hostname();
    // Any new line rings; what is read comes from the file.
    let mut doorbell = engine.events.subscribe();
    let mut exported: u64 = 0;
    let mut backoff = Duration::from_millis(100);
    let mut failing_since: Option<String> = None;
    loop {
        let (f, batch) = match tokio::task::spawn_blocking(move || {
            let b = follower.next_batch();
            (follower, b)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                engine
                    .otlp_state
                    .set(format!("stopped: the reader failed: {e}"));
                return;
            }
        };
        follower = f;
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                engine.otlp_state.set(format!(
                    "exporting to {endpoint}; cannot read the events file: {e}; retrying"
                ));
                tokio::time::sleep(MAX_BACKOFF).await;
                continue;
            }
        };
        if let Some(gap) = &batch.gap {
            tracing::warn!("{gap}");
            crate::sinks::report_drops_text(&engine, gap).await;
        }
        if batch.skipped > 0 {
            let why = format!(
                "{} line(s) of the events file are longer than {MAX_LINE} bytes, not lines pullguardd wrote whole; not exported to {endpoint}",
                batch.skipped
            );
            crate::sinks::report_drops_text(&engine, &why).await;
        }
        if batch.lines.is_empty() {
            if batch.skipped > 0 {
                commit(&engine, &mut follower, &state_dir);
                continue;
            }
            // Wait for a new line, or poll: a wake-up lost to lag is harmless. Rings queued
            // meanwhile are spent at once: one read catches up with all of them.
            if let Ok(Err(RecvError::Closed)) = tokio::time::timeout(POLL, doorbell.recv()).await {
                tokio::time::sleep(POLL).await;
            }
            while !matches!(
                doorbell.try_recv(),
                Err(TryRecvError::Empty | TryRecvError::Closed)
            ) {}
            continue;
        }
        let req = request(&batch.lines, &host);
        match client.export(req).await {
            Ok(resp) => {
                let rejected = resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_log_records);
                if rejected > 0 {
                    tracing::warn!(
                        rejected,
                        "the collector at {endpoint} refused some event records; they are not sent again"
                    );
                }
                exported += batch.lines.len() as u64;
                commit(&engine, &mut follower, &state_dir);
                backoff = Duration::from_millis(100);
                failing_since = None;
                engine.otlp_state.set(format!(
                    "exporting to {endpoint}; {exported} event(s) accepted since start"
                ));
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                // The collector will never take these records: retrying would stop the
                // export for good. Skipped, said, and the rest goes on.
                let why = format!(
                    "the collector at {endpoint} refused {} event record(s) as invalid ({}); they are skipped, the events file has them",
                    batch.lines.len(),
                    api::capped(status.message(), 300)
                );
                tracing::warn!("{why}");
                commit(&engine, &mut follower, &state_dir);
                crate::sinks::report_drops_text(&engine, &why).await;
            }
            Err(status) => {
                follower.rewind();
                let cause = api::capped(&format!("{}: {}", status.code(), status.message()), 300);
                if failing_since.is_none() {
                    // Once per outage; status has the rest.
                    tracing::warn!(cause = %cause, "OTLP collector at {endpoint} not accepting; events stay in the events file and are resent when it does");
                }
                let since = failing_since.get_or_insert_with(|| {
                    OffsetDateTime::now_utc()
                        .format(&Rfc3339)
                        .unwrap_or_default()
                });
                engine.otlp_state.set(format!(
                        "exporting to {endpoint}; failing since {since}: {cause}; events are resent from the events file when it answers"
                    ),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn commit(engine: &Engine, follower: &mut Follower, state_dir: &Path) {
    if let Some(cursor) = follower.commit() {
        if let Err(e) = save_cursor(state_dir, &cursor) {
            // Export goes on; after a restart some lines would be sent twice.
            tracing::warn!(
                "cannot save the OTLP cursor in {}: {e}; after a restart some events would be sent again",
                state_dir.display()
            );
            let mut errs = engine.last_errors.lock().unwrap_or_else(|p| p.into_inner());
            errs.push(format!("otlp cursor: {e}"));
        }
    }
}

#[cfg(test)]
mod tests;
