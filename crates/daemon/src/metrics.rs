//! A Prometheus text endpoint, off unless `[daemon] metrics` is set; a bare port binds
//! loopback. Minimal HTTP: every request gets the current figures.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::engine::Engine;

/// `9464` → `127.0.0.1:9464`; anything with a host is used as given.
pub fn listen_address(setting: &str) -> String {
    if setting.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{setting}")
    } else {
        setting.to_owned()
    }
}

/// The figures, in Prometheus text format.
pub fn render(engine: &Engine) -> String {
    let c = &engine.counters;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP pullguard_verdicts_total Verdicts given, by reason code (\"allowed\" when allowed).");
    let _ = writeln!(out, "# TYPE pullguard_verdicts_total counter");
    for (reason, n) in c.by_reason.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "pullguard_verdicts_total{{reason=\"{reason}\"}} {n}");
    }
    let simple = [
        (
            "pullguard_trust_fetches_total",
            "counter",
            "Fetches of trust data from trust servers.",
            c.fetches.load(Ordering::Relaxed),
        ),
        (
            "pullguard_trust_fetch_seconds_sum",
            "counter",
            "Time spent fetching trust data.",
            c.fetch_micros.load(Ordering::Relaxed) / 1_000_000,
        ),
        (
            "pullguard_cache_hits_total",
            "counter",
            "Verdicts answered from verified trust data in memory.",
            c.cache_hits.load(Ordering::Relaxed),
        ),
        (
            "pullguard_policy_reloads_ok_total",
            "counter",
            "Successful policy reloads.",
            c.reloads_ok.load(Ordering::Relaxed),
        ),
        (
            "pullguard_policy_reloads_invalid_total",
            "counter",
            "Policy edits refused (last good policy kept).",
            c.reloads_invalid.load(Ordering::Relaxed),
        ),
        (
            "pullguard_events_dropped_total",
            "counter",
            "Events lost by slow sinks (never the events file).",
            engine.events.dropped.load(Ordering::Relaxed),
        ),
        (
            "pullguard_watcher_images_checked_total",
            "counter",
            "Images in containerd checked by the event watcher.",
            c.images_checked.load(Ordering::Relaxed),
        ),
        (
            "pullguard_watcher_images_removed_total",
            "counter",
            "Rejected images the event watcher removed from containerd.",
            c.images_removed.load(Ordering::Relaxed),
        ),
        (
            "pullguard_policy_generation",
            "gauge",
            "Policy generation in force.",
            engine.loaded().generation,
        ),
        (
            "pullguard_cached_repositories",
            "gauge",
            "Repositories with trust data in memory.",
            engine.cached_repositories() as u64,
        ),
    ];
    for (name, kind, help, value) in simple {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

/// Serves the endpoint.
pub async fn serve(engine: Arc<Engine>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf))
                .await;
            let body = render(&engine);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
        });
    }
}
