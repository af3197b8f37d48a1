//! A Prometheus text endpoint, off unless `[daemon] metrics` is set; a bare port binds
//! loopback.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::Duration;

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
            c.fetches.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_trust_fetch_seconds_sum",
            "counter",
            "Time spent fetching trust data.",
            // Seconds with microseconds: whole seconds hid every fast fetch.
            format!("{:.6}", c.fetch_micros.load(Ordering::Relaxed) as f64 / 1e6),
        ),
        (
            "pullguard_cache_hits_total",
            "counter",
            "Verdicts answered from verified trust data in memory.",
            c.cache_hits.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_policy_reloads_ok_total",
            "counter",
            "Successful policy reloads.",
            c.reloads_ok.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_policy_reloads_invalid_total",
            "counter",
            "Policy edits refused (last good policy kept).",
            c.reloads_invalid.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_policy_last_reload_failed",
            "gauge",
            "1 while the last policy reload was refused (the last good policy is in force), 0 once one loads.",
            c.last_reload_failed.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_policy_last_reload_timestamp_seconds",
            "gauge",
            "When the last policy reload was attempted (Unix time; 0: none since start).",
            c.last_reload_at.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_events_dropped_total",
            "counter",
            "Events lost by slow sinks (never the events file).",
            engine.events.dropped.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_watcher_images_checked_total",
            "counter",
            "Images in containerd checked by the event watcher.",
            c.images_checked.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_watcher_images_removed_total",
            "counter",
            "Rejected images the event watcher removed from containerd.",
            c.images_removed.load(Ordering::Relaxed).to_string(),
        ),
        (
            "pullguard_policy_generation",
            "gauge",
            "Policy generation in force.",
            engine.loaded().generation.to_string(),
        ),
        (
            "pullguard_cached_repositories",
            "gauge",
            "Repositories with trust data in memory.",
            engine.cached_repositories().to_string(),
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

/// Serves the endpoint over HTTP/1.1 (hyper): `GET /metrics` (or `/`) has the figures,
/// other paths 404, other methods 405. A failed accept (out of descriptors) waits a
/// moment rather than spinning; a client gets 10 s per connection.
pub async fn serve(engine: Arc<Engine>, listener: tokio::net::TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = respond(&engine, &req);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(2))
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        });
    }
}

fn respond<B>(engine: &Engine, req: &hyper::Request<B>) -> hyper::Response<String> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET | &hyper::Method::HEAD, "/metrics" | "/") => {
            (hyper::StatusCode::OK, render(engine))
        }
        (&hyper::Method::GET | &hyper::Method::HEAD, _) => (
            hyper::StatusCode::NOT_FOUND,
            "the figures are at /metrics\n".to_owned(),
        ),
        _ => (
            hyper::StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics\n".to_owned(),
        ),
    };
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
