//! pullguard's gRPC API, generated from `proto/pullguard/v1/pullguard.proto` by
//! `build.rs` and never edited by hand, and the contract's codes ([`codes`]). Shared by
//! pullguardd, pullguard-verifier and the CLI.

pub mod codes;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("pullguard.v1");
}
pub use generated::*;
