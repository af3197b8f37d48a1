//! pullguard's gRPC API, generated from `proto/pullguard/v1/pullguard.proto` by
//! `build.rs`; never edited by hand. Shared by pullguardd, pullguard-verifier and the CLI.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("pullguard.v1");
