//! pullguard's gRPC API, generated from `proto/pullguard/v1/pullguard.proto` by
//! `build.rs` and never edited by hand, and the contract's codes ([`codes`]). Shared by
//! pullguardd, pullguard-verifier and the CLI.

#![deny(missing_docs)]

/// The contract's codes, from their own crate (which libraries without gRPC use too).
pub use codes;
/// Text bounds of the contract, from the codes crate (the registry client uses them
/// without gRPC).
pub use codes::text::{capped, error_chain};

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("pullguard.v1");
}
pub use generated::*;

pub mod oneshot;

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
