//! Non-durable event sinks: stdout (journald) and syslog (RFC 5424). They read the
//! broadcast channel, so a slow or dead receiver never holds up a verdict; lines lost to
//! lag are counted and reported as an `events.dropped` event.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use policy::SyslogTarget;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::broadcast::error::RecvError;

use crate::engine::Engine;

/// RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG`, facility daemon; warning
/// for rejections and invalid policies, info otherwise.
pub fn rfc5424(line: &str, host: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let kind = v["event"].as_str().unwrap_or("event");
    let severity = api::codes::EventKind::parse(kind).map_or(6, api::codes::EventKind::severity);
    // RFC 5424 allows at most six digits of fractional seconds.
    let time = v["time"].as_str().map_or_else(|| "-".to_owned(), micros);
    format!(
        "<{}>1 {time} {host} pullguardd {} {kind} - {line}",
        3 * 8 + severity,
        std::process::id()
    )
}

/// `2026-11-25T20:52:17.171833332Z` → `2026-11-25T20:52:17.171833Z`.
fn micros(t: &str) -> String {
    match t.split_once('.') {
        Some((secs, frac)) => {
            let digits: String = frac
                .chars()
                .take_while(char::is_ascii_digit)
                .take(6)
                .collect();
            let zone: String = frac.chars().skip_while(char::is_ascii_digit).collect();
            format!("{secs}.{digits}{zone}")
        }
        None => t.to_owned(),
    }
}

enum Conn {
    Unix(tokio::net::UnixDatagram),
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpStream),
}

async fn connect(target: &SyslogTarget) -> std::io::Result<Conn> {
    Ok(match target {
        SyslogTarget::Unix(path) => {
            let s = tokio::net::UnixDatagram::unbound()?;
            s.connect(path)?;
            Conn::Unix(s)
        }
        SyslogTarget::Udp(addr) => {
            let s = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
            s.connect(addr).await?;
            Conn::Udp(s)
        }
        SyslogTarget::Tcp(addr) => Conn::Tcp(tokio::net::TcpStream::connect(addr).await?),
    })
}

async fn send(conn: &mut Conn, msg: &str) -> std::io::Result<()> {
    match conn {
        Conn::Unix(s) => s.send(msg.as_bytes()).await.map(|_| ()),
        Conn::Udp(s) => s.send(msg.as_bytes()).await.map(|_| ()),
        // RFC 6587 octet counting.
        Conn::Tcp(s) => s.write_all(format!("{} {msg}", msg.len()).as_bytes()).await,
    }
}

pub(crate) async fn report_drops(engine: &Engine, n: u64, sink: &str) {
    engine.events.dropped.fetch_add(n, Ordering::Relaxed);
    report_drops_text(
        engine,
        &format!("{n} events were not delivered to {sink}, which fell behind; the events file has them all"),
    )
    .await;
}

/// An `events.dropped` event saying `why`.
pub(crate) async fn report_drops_text(engine: &Engine, why: &str) {
    let ev = engine.events.new_event(
        api::codes::EventKind::EventsDropped,
        engine.loaded().generation,
        why,
    );
    let _ = engine.emit(ev, false).await;
}

/// Writes every event line to stdout.
pub fn stdout(engine: Arc<Engine>) {
    let mut rx = engine.events.subscribe();
    tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        loop {
            match rx.recv().await {
                Ok(line) => {
                    let _ = out.write_all(format!("{line}\n").as_bytes()).await;
                }
                Err(RecvError::Lagged(n)) => report_drops(&engine, n, "stdout").await,
                Err(RecvError::Closed) => break,
            }
        }
    });
}

/// Sends every event line to syslog, reconnecting with backoff.
pub fn syslog(engine: Arc<Engine>, target: SyslogTarget) {
    let mut rx = engine.events.subscribe();
    let host = crate::events::hostname();
    tokio::spawn(async move {
        let mut conn: Option<Conn> = None;
        let mut backoff = Duration::from_millis(100);
        // Lines given up on since the receiver was last reached: counted at once, said
        // (in one event, which then reaches syslog too) once a line gets through again.
        let mut undelivered = 0u64;
        loop {
            let line = match rx.recv().await {
                Ok(line) => line,
                Err(RecvError::Lagged(n)) => {
                    report_drops(&engine, n, "syslog").await;
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let msg = rfc5424(&line, &host);
            let mut delivered = false;
            for _ in 0..2 {
                if conn.is_none() {
                    match connect(&target).await {
                        Ok(c) => {
                            conn = Some(c);
                            backoff = Duration::from_millis(100);
                        }
                        Err(e) => {
                            tracing::warn!(cause = %e, "syslog receiver unreachable");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    }
                }
                if let Some(c) = conn.as_mut() {
                    // A TCP receiver that stops reading must not hold this sink for good.
                    if let Ok(Ok(())) = tokio::time::timeout(SEND_DEADLINE, send(c, &msg)).await {
                        delivered = true;
                        break;
                    }
                    conn = None;
                }
            }
            if !delivered {
                undelivered += 1;
                engine.events.dropped.fetch_add(1, Ordering::Relaxed);
            } else if undelivered > 0 {
                let n = std::mem::take(&mut undelivered);
                report_drops_text(
                    &engine,
                    &format!("{n} events were not delivered to syslog while it could not be reached; the events file has them all"),
                )
                .await;
            }
        }
    });
}

/// How long one line may take to reach the syslog receiver.
const SEND_DEADLINE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    #[test]
    fn syslog_header_time_has_at_most_six_fraction_digits() {
        assert_eq!(
            super::micros("2026-11-25T20:52:17.171833332Z"),
            "2026-11-25T20:52:17.171833Z"
        );
        assert_eq!(
            super::micros("2026-11-25T20:52:17Z"),
            "2026-11-25T20:52:17Z"
        );
        let line = r#"{"time":"2026-11-25T20:52:17.171833332Z","event":"pull.rejected"}"#;
        assert!(super::rfc5424(line, "h")
            .starts_with("<28>1 2026-11-25T20:52:17.171833Z h pullguardd "));
    }
}
