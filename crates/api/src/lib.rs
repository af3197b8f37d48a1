//! pullguard's gRPC API, generated from `proto/pullguard/v1/pullguard.proto` by
//! `build.rs` and never edited by hand, and the contract's codes ([`codes`]). Shared by
//! pullguardd, pullguard-verifier and the CLI.

pub mod codes;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("pullguard.v1");
}
pub use generated::*;

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
