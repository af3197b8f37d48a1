//! Policy hot reload.
//!
//! Three triggers send the same message on one channel: an inotify watch on the policy
//! file's directory (editors' atomic renames and Kubernetes ConfigMap symlink swaps
//! replace inodes, so the directory is watched, not the file), SIGHUP, and a one-second
//! check of the file's content as a safety net for a watch that was lost. A reload
//! parses and validates on the side, then swaps; a bad edit keeps the last good policy
//! and is reported as `policy.invalid` with file, line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::engine::{Engine, Loaded};

fn digest_of(path: &Path) -> Option<Vec<u8>> {
    // Follows symlinks, as a ConfigMap mount needs. Bounded like Policy::load, so a
    // runaway file is read once per check at most up to the limit (and then refused).
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut limited = file.take(policy::MAX_POLICY_BYTES + 1);
    let mut buf = [0u8; 64 * 1024];
    loop {
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            // A directory or an unreadable file: "missing or unreadable".
            Err(_) => return None,
        }
    }
    Some(hasher.finalize().to_vec())
}

/// What in the policy file's directory can bring a new policy: a file written and
/// closed, created, deleted, renamed in or out (editors, ConfigMap symlink swaps), its
/// mode changed; the directory itself going. Not plain writes (`IN_MODIFY`) nor opens:
/// an events file or a log kept beside the policy would wake the watch on every line it
/// gets (one wake-up per verdict: a quarter of the throughput of cached verdicts on a
/// 2-core node), and our own reads of the policy on every read. A file written and kept
/// open is picked up when it is closed, or by the one-second check.
const WATCHED: inotify::WatchMask = inotify::WatchMask::CLOSE_WRITE
    .union(inotify::WatchMask::CREATE)
    .union(inotify::WatchMask::DELETE)
    .union(inotify::WatchMask::MOVED_FROM)
    .union(inotify::WatchMask::MOVED_TO)
    .union(inotify::WatchMask::ATTRIB)
    .union(inotify::WatchMask::DELETE_SELF)
    .union(inotify::WatchMask::MOVE_SELF);

/// The trigger for a policy file known to be whole: written and closed, or renamed into
/// place (an editor's save, a ConfigMap's `..data` swap).
const WRITTEN: &str = "file written";

/// Watches `dir` ([`WATCHED`]) from a thread of its own, sending [`WRITTEN`] on `tx` for
/// a batch of events that closes `name` after writing it or renames something into its
/// place, "file change" for any other (a full channel already holds one).
fn watch(
    dir: &Path,
    name: std::ffi::OsString,
    tx: mpsc::Sender<&'static str>,
) -> std::io::Result<()> {
    let mut inotify = inotify::Inotify::init()?;
    inotify.watches().add(dir, WATCHED)?;
    std::thread::Builder::new()
        .name("policy-watch".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match inotify.read_events_blocking(&mut buf) {
                    Ok(events) => {
                        let whole = events.into_iter().any(|e| {
                            let ours = e
                                .name
                                .is_some_and(|n| n == name.as_os_str() || n == "..data");
                            ours && (e.mask.contains(inotify::EventMask::CLOSE_WRITE)
                                || e.mask.contains(inotify::EventMask::MOVED_TO))
                        });
                        // Not to be lost in a full channel: it is what lets a new text
                        // load at once.
                        if whole {
                            if tx.blocking_send(WRITTEN).is_err() {
                                return;
                            }
                        } else if let Err(mpsc::error::TrySendError::Closed(_)) =
                            tx.try_send("file change")
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // The one-second check goes on without the watch.
                    Err(e) => {
                        tracing::warn!(cause = %e, "the policy directory's watch ended; changes are picked up within a second by the periodic check");
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// Starts the triggers. `hup`: SIGHUP's stream, made when the daemon started (a SIGHUP
/// before any stream exists kills the process: its default action).
pub fn start(
    engine: Arc<Engine>,
    path: PathBuf,
    hup: Option<tokio::signal::unix::Signal>,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<&'static str>(16);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name().unwrap_or_default().to_os_string();
    watch(&dir, name, tx.clone())?;

    let hup_tx = tx.clone();
    tokio::spawn(async move {
        let hup = hup.map_or_else(
            || tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()),
            Ok,
        );
        if let Ok(mut hup) = hup {
            while hup.recv().await.is_some() {
                let _ = hup_tx.send("SIGHUP").await;
            }
        }
    });
    crate::sigstore_root::keep_fresh(engine.clone(), tx.clone());
    let poll_tx = tx;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if poll_tx.send("poll").await.is_err() {
                break;
            }
        }
    });

    tokio::spawn(async move {
        // What is in force, not what the file holds now: an edit that landed between the
        // start's read and this task would otherwise be taken as already loaded.
        let mut current = engine
            .loaded()
            .text_sha256
            .clone()
            .or_else(|| digest_of(&path));
        let mut keys_current = engine.loaded().keys_seen.clone();
        let mut missing_reported = false;
        // A load that failed is tried again on its own: what it lacked (a key file a
        // Secret brings a minute after the ConfigMap, a trust server's CA) may come
        // without any change to the policy file, and the old generation would
        // otherwise stay in force for good.
        let mut retry: Option<Retry> = None;
        // A new text not known to be whole (seen by the one-second check, or after a
        // creation with no close yet), and since when: loaded once it has settled.
        let mut unsettled: Option<(Vec<u8>, std::time::Instant)> = None;
        while let Some(first) = rx.recv().await {
            // Debounce: editors and deployment tools write in several steps, which land
            // within a few milliseconds of each other. Of the triggers folded together,
            // the strongest is kept: a SIGHUP forces the reload, a close after writing
            // says the file is whole.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let strength = |t: &str| match t {
                "SIGHUP" | crate::sigstore_root::TRIGGER => 2,
                WRITTEN => 1,
                _ => 0,
            };
            let mut trigger = first;
            while let Ok(t) = rx.try_recv() {
                if strength(t) > strength(trigger) {
                    trigger = t;
                }
            }
            let now = digest_of(&path);
            if now.is_none() {
                if !missing_reported {
                    missing_reported = true;
                    let what = match std::fs::metadata(&path) {
                        Ok(m) if m.is_dir() => "the policy path is now a directory, not a file",
                        Ok(_) => "the policy file is unreadable",
                        Err(_) => "the policy file is missing",
                    };
                    let generation = engine.loaded().generation;
                    invalid(
                        &engine,
                        &path,
                        &format!("{what}; keeping policy generation {generation}"),
                    )
                    .await;
                }
                continue;
            }
            let forced = trigger == "SIGHUP" || trigger == crate::sigstore_root::TRIGGER;
            // A new text is loaded at once when the file was closed after writing or
            // renamed into place, or when asked (SIGHUP). Otherwise it may be half
            // written (a write in several steps, the file kept open, a creation before
            // its close): a prefix that parses would load a laxer policy, or one missing
            // rules whose sweep then removes images. It is loaded once the same bytes
            // were seen a second apart and the file was last written 2 s ago.
            let new_text = now != current || missing_reported;
            if new_text && !forced && trigger != WRITTEN {
                let same_bytes = unsettled.as_ref().is_some_and(|(seen, since)| {
                    Some(seen) == now.as_ref() && since.elapsed() >= SETTLE
                });
                // A modification time in the future (a copy that kept it, a skewed
                // clock) leaves the bytes' stability to decide.
                let settled = same_bytes && last_written(&path).is_none_or(|t| t >= 2 * SETTLE);
                if !settled {
                    if unsettled.as_ref().map(|(seen, _)| seen) != now.as_ref() {
                        unsettled = now.clone().map(|n| (n, std::time::Instant::now()));
                    }
                    continue;
                }
            }
            unsettled = None;
            // Back after being missing (deleted and created again, renamed into place, a
            // symlink re-pointed): loaded again even when the bytes are the ones in force,
            // so that the "missing" state ends and the operator sees the file is read.
            let came_back = std::mem::take(&mut missing_reported);
            let keys_now = crate::engine::keys_fingerprint(&engine.loaded().policy);
            let keys_changed = keys_now != keys_current;
            let retry_due = retry
                .as_ref()
                .is_some_and(|r| std::time::Instant::now() >= r.at);
            if now == current && !forced && !came_back && !keys_changed && !retry_due {
                continue;
            }
            let text_changed = now != current;
            current = now;
            keys_current = keys_now;
            let why = if came_back {
                "the file is back"
            } else if forced || text_changed {
                trigger
            } else if keys_changed {
                "keys_dir changed"
            } else {
                "retry after a failed load"
            };
            // A retry that fails as before says nothing new: no second event.
            let quiet = (!forced && !text_changed && !keys_changed)
                .then(|| retry.as_ref().map(|r| r.problem.as_str()))
                .flatten();
            match reload(&engine, &path, why, quiet).await {
                Ok(()) => {
                    retry = None;
                    keys_current = engine.loaded().keys_seen.clone();
                }
                Err(problem) => {
                    let wait = retry.as_ref().map_or(RETRY_FIRST, |r| {
                        if r.problem == problem {
                            (r.wait * 2).min(RETRY_MAX)
                        } else {
                            RETRY_FIRST
                        }
                    });
                    retry = Some(Retry {
                        at: std::time::Instant::now() + wait,
                        wait,
                        problem,
                    });
                }
            }
        }
    });
    Ok(())
}

/// How long a new text not known to be whole must stay the same before it loads (the
/// file's last write must be twice as old).
const SETTLE: Duration = Duration::from_secs(1);

/// How long ago `path` (through symlinks) was last written; `None` when that is not
/// known or lies in the future.
fn last_written(path: &Path) -> Option<Duration> {
    std::fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()
}

/// A load that failed, to be tried again at `at`.
struct Retry {
    at: std::time::Instant,
    wait: Duration,
    /// What was wrong, as the `policy.invalid` event said.
    problem: String,
}

/// The first wait before a failed load is tried again, doubled each time it fails the
/// same way, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

async fn invalid(engine: &Engine, path: &Path, message: &str) {
    let loaded = engine.loaded();
    engine
        .counters
        .reloads_invalid
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::error!(file = %path.display(), problem = %message, "policy.invalid: keeping the last good policy");
    mark_reload(engine, true);
    *engine.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = format!(
        "refused at {}: {message}",
        trust_core::rfc3339(time::OffsetDateTime::now_utc())
    );
    let ev = engine.events.new_event(
        api::codes::EventKind::PolicyInvalid,
        loaded.generation,
        message.to_owned(),
    );
    let _ = engine.emit(ev, true).await;
}

/// Records the outcome and time of a reload attempt for the metrics' gauges.
fn mark_reload(engine: &Engine, failed: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &engine.counters;
    c.last_reload_failed.store(u64::from(failed), Relaxed);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    c.last_reload_at
        .store(u64::try_from(now).unwrap_or(0), Relaxed);
}

/// Parses, validates and installs the policy at `path`, or reports why not (and
/// returns it). A problem equal to `quiet` was reported already: it is not again.
pub async fn reload(
    engine: &Engine,
    path: &Path,
    trigger: &str,
    quiet: Option<&str>,
) -> Result<(), String> {
    let old = engine.loaded();
    let parsed = policy::Policy::read(path)
        .and_then(|text| policy::Policy::parse(path, &text).map(|p| (p, text)));
    let prepared = parsed.map_err(|e| e.to_string()).and_then(|(p, text)| {
        crate::engine::check_policy_file(path)?;
        let restart_only = old.policy.daemon.restart_only_changes(&p.daemon);
        Loaded::prepare_after(p, old.generation + 1, path, Some(&old))
            .map(|mut l| {
                l.set_text(&text);
                (l, restart_only)
            })
            .map_err(|problems| problems.join("; "))
    });
    match prepared {
        Ok((loaded, restart_only)) => {
            let generation = loaded.generation;
            let gids = loaded.policy.daemon.allowed_gids.clone();
            engine.install(loaded);
            if let Err(e) = crate::server::grant_group(&gids) {
                tracing::warn!(
                    "cannot give the socket to group {:?} (allowed_gids): {e}",
                    gids.first()
                );
            }
            drop(engine.warm_connections());
            engine
                .counters
                .reloads_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            mark_reload(engine, false);
            *engine.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = format!(
                "ok at {} (generation {generation}, {trigger})",
                trust_core::rfc3339(time::OffsetDateTime::now_utc())
            );
            let mut message = format!(
                "policy generation {generation} loaded from {}, {} ({trigger})",
                path.display(),
                engine.loaded().version
            );
            if !restart_only.is_empty() {
                message.push_str(&format!(
                    "; changed [daemon] settings that take effect only at restart (the running values stay until then): {}",
                    restart_only.join(", ")
                ));
            }
            if let Some(notice) = engine.loaded().policy.audit_notice() {
                message.push_str("; ");
                message.push_str(&notice);
            }
            let warnings = engine.loaded().policy.lint_summary();
            for warning in warnings
                .into_iter()
                .chain(engine.loaded().unusable_summary())
            {
                tracing::warn!("{warning}");
                message.push_str("; ");
                message.push_str(&warning);
            }
            tracing::info!(generation, trigger, "policy.reloaded");
            let ev =
                engine
                    .events
                    .new_event(api::codes::EventKind::PolicyReloaded, generation, message);
            let _ = engine.emit(ev, true).await;
            Ok(())
        }
        Err(problem) => {
            if quiet == Some(problem.as_str()) {
                tracing::debug!(problem, "the policy still does not load");
            } else {
                invalid(
                    engine,
                    path,
                    &format!("{problem}; keeping policy generation {}", old.generation),
                )
                .await;
            }
            Err(problem)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write as _;

    use super::*;

    /// Whether the watch sent anything within `ms`.
    async fn woke(rx: &mut mpsc::Receiver<&'static str>, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), rx.recv())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn lines_appended_to_a_file_beside_the_policy_do_not_wake_the_watch() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("pullguard.toml");
        std::fs::write(&policy, "[daemon]\n").unwrap();
        // An events file kept open beside the policy, as a verdict appends to it.
        let mut events = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        watch(dir.path(), "pullguard.toml".into(), tx).unwrap();
        for i in 0..100 {
            writeln!(events, "{{\"line\":{i}}}").unwrap();
        }
        // Our own read of the policy is no change either.
        std::fs::read(&policy).unwrap();
        assert!(
            !woke(&mut rx, 300).await,
            "the watch woke for a log line or a read"
        );
        // The policy written (and closed), renamed over, deleted, created: each wakes it.
        std::fs::write(&policy, "[daemon]\n# edited\n").unwrap();
        assert!(woke(&mut rx, 2000).await, "an edit in place was not seen");
        let tmp = dir.path().join(".pullguard.toml.new");
        std::fs::write(&tmp, "[daemon]\n").unwrap();
        while rx.try_recv().is_ok() {}
        std::fs::rename(&tmp, &policy).unwrap();
        assert!(
            woke(&mut rx, 2000).await,
            "a rename over the policy was not seen"
        );
        std::fs::remove_file(&policy).unwrap();
        assert!(woke(&mut rx, 2000).await, "a deletion was not seen");
        while rx.try_recv().is_ok() {}
        std::fs::File::create(&policy).unwrap();
        assert!(woke(&mut rx, 2000).await, "a creation was not seen");
    }

    #[tokio::test]
    async fn an_edit_made_while_the_daemon_starts_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.toml");
        let policy = |require: &str| {
            format!(
                "[daemon]\nsocket = \"{d}/pg.sock\"\nstate_dir = \"{d}/state\"\nkeys_dir = \"{d}/keys\"\nevents_file = \"{d}/events.jsonl\"\ncontainerd_socket = \"\"\n\n[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"{require}\"\n",
                d = dir.path().display()
            )
        };
        std::fs::write(&file, policy("any")).unwrap();
        // The start reads the policy in force...
        let loaded = crate::check_config(&file).unwrap();
        let state = key_store::StateStore::open(&dir.path().join("state")).unwrap();
        let events =
            crate::events::EventLog::open(&dir.path().join("events.jsonl"), u64::MAX, 0).unwrap();
        let engine = Arc::new(Engine::new(loaded, state, Arc::new(events)));
        // ...an operator's edit lands before the watch starts...
        std::fs::write(&file, policy("reject")).unwrap();
        start(engine.clone(), file.clone(), None).unwrap();
        // ...and is loaded by the watch's first look, not taken as what is in force.
        for _ in 0..60 {
            if engine.loaded().generation > 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = engine.loaded();
        assert_eq!(
            now.generation, 2,
            "the edit made during the start was never loaded"
        );
        assert_eq!(now.policy.rules[0].require, policy::Require::Reject);
    }

    #[test]
    fn a_trust_servers_ca_file_is_read_again_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/notary-real/ca-pinned/ca.crt"
        );
        std::fs::copy(fixture, &ca).unwrap();
        let file = dir.path().join("policy.toml");
        std::fs::write(
            &file,
            format!(
                "[daemon]\nsocket = \"{d}/pg.sock\"\nstate_dir = \"{d}/state\"\nkeys_dir = \"{d}/keys\"\nevents_file = \"{d}/events.jsonl\"\ncontainerd_socket = \"\"\n\n[trust_server.notary]\nurl = \"https://127.0.0.1:4443\"\nca_file = \"{ca}\"\n\n[[rule]]\nname = \"all\"\nmatch = \"**\"\ntrust_server = \"notary\"\n",
                d = dir.path().display(),
                ca = ca.display()
            ),
        )
        .unwrap();
        let first = crate::check_config(&file).unwrap();
        // The pin replaced at the same path (here by something that is no certificate):
        // the reload reads it, and refuses what it now says.
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let again = policy::Policy::load(&file).unwrap();
        let problems = Loaded::prepare_after(again, 2, &file, Some(&first))
            .err()
            .expect("the reload kept the client built from the old CA file");
        assert!(
            problems.iter().any(|p| p.contains("ca.crt")),
            "{problems:?}"
        );
    }
}
