//! Policy hot reload.
//!
//! Three triggers send the same message on one channel: a `notify` watch on the policy
//! file's directory (editors' atomic renames and Kubernetes ConfigMap symlink swaps
//! replace inodes, so the directory is watched, not the file), SIGHUP, and a one-second
//! check of the file's content as a safety net for a watch that was lost. A reload
//! parses and validates on the side, then swaps; a bad edit keeps the last good policy
//! and is reported as `policy.invalid` with file, line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
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

/// Starts the triggers; returns the watcher, which must be kept alive.
pub fn start(engine: Arc<Engine>, path: PathBuf) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<&'static str>(16);
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let watch_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Opens and reads are not changes: our own read of the file would otherwise
        // set off another read, for ever (inotify reports opens and closes).
        if res.is_ok_and(|e| !e.kind.is_access()) {
            let _ = watch_tx.try_send("file change");
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;

    let hup_tx = tx.clone();
    tokio::spawn(async move {
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
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
        let mut current = digest_of(&path);
        let mut missing_reported = false;
        while let Some(first) = rx.recv().await {
            // Debounce: editors and deployment tools write in several steps, which land
            // within a few milliseconds of each other; a half-written file would only
            // be refused (and reported) before the whole one loads. A SIGHUP among the
            // triggers folded together still forces the reload.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut trigger = first;
            while let Ok(t) = rx.try_recv() {
                if t == "SIGHUP" || t == crate::sigstore_root::TRIGGER {
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
            // Back after being missing (deleted and created again, renamed into place, a
            // symlink re-pointed): loaded again even when the bytes are the ones in force,
            // so that the "missing" state ends and the operator sees the file is read.
            let came_back = std::mem::take(&mut missing_reported);
            let forced = trigger == "SIGHUP" || trigger == crate::sigstore_root::TRIGGER;
            if now == current && !forced && !came_back {
                continue;
            }
            current = now;
            reload(
                &engine,
                &path,
                if came_back {
                    "the file is back"
                } else {
                    trigger
                },
            )
            .await;
        }
    });
    Ok(watcher)
}

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

/// Parses, validates and installs the policy at `path`, or reports why not.
pub async fn reload(engine: &Engine, path: &Path, trigger: &str) {
    let old = engine.loaded();
    let parsed = policy::Policy::read(path).and_then(|text| {
        let version = crate::engine::policy_version(path, &text);
        policy::Policy::parse(path, &text).map(|p| (p, version))
    });
    let prepared = parsed.map_err(|e| e.to_string()).and_then(|(p, version)| {
        let restart_only = old.policy.daemon.restart_only_changes(&p.daemon);
        Loaded::prepare_after(p, old.generation + 1, path, Some(&old))
            .map(|mut l| {
                l.version = version;
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
            engine.warm_trust_servers();
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
            tracing::info!(generation, trigger, "policy.reloaded");
            let ev =
                engine
                    .events
                    .new_event(api::codes::EventKind::PolicyReloaded, generation, message);
            let _ = engine.emit(ev, true).await;
        }
        Err(problem) => {
            invalid(
                engine,
                path,
                &format!("{problem}; keeping policy generation {}", old.generation),
            )
            .await
        }
    }
}
