//! pullguard's gRPC API, generated from `proto/pullguard/v1/pullguard.proto` by
//! `build.rs` and never edited by hand, and the contract's codes ([`codes`]). Shared by
//! pullguardd, pullguard-verifier and the CLI.

/// The contract's codes, from their own crate (which libraries without gRPC use too).
pub use codes;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("pullguard.v1");
}
pub use generated::*;

use std::path::Path;
use std::time::Duration;

/// Where pullguardd listens unless `[daemon] socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/pullguard/pullguard.sock";

/// A client of pullguardd on its unix socket. `connect_timeout` bounds the connect
/// itself; callers that must answer in time (the verifier) bound the whole call too.
pub async fn connect(
    socket: &Path,
    connect_timeout: Duration,
) -> Result<pullguard_client::PullguardClient<tonic::transport::Channel>, tonic::transport::Error> {
    let path = socket.to_path_buf();
    // The URI is required by the API but never used: the connector ignores it.
    let channel = tonic::transport::Endpoint::from_static("http://pullguardd")
        .connect_timeout(connect_timeout)
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await?;
    Ok(pullguard_client::PullguardClient::new(channel))
}

/// `1 image`, `2 images`: counts as operators read them.
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `text` cut to `max` characters (marked with `…`), control characters (newlines,
/// escapes, NULs) replaced by `?`: text that came from a registry, a trust server, a CRI
/// client or a signature, made fit for an answer, an event or a log line. A log line or
/// an NRI answer must not be forged or blown up by what an attacker wrote.
pub fn capped(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// An error with its causes, `outer: inner: innermost`, each said once (hyper's, tonic's
/// and std's errors often repeat their source's text in their own), for one-line
/// messages. Shared by the daemon, the verifier and the CLI.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod capped_tests {
    #[test]
    fn server_text_is_capped_and_cleaned() {
        assert_eq!(super::capped("ab\ncd\u{1b}[31m", 20), "ab?cd?[31m");
        assert_eq!(super::capped(&"é".repeat(20), 5), "ééééé…");
        assert_eq!(super::capped("short", 5), "short");
    }
}
