//! The primitives pullguard's signature formats share, each with one strict parser:
//! the ranked failure set that picks what to report when several signatures fail
//! ([`Failures`]), base64 in each variant a format writes ([`b64`]), JSON maps whose keys must be unique
//! ([`json`]), and the descriptors
//! of an OCI image manifest ([`oci`]). The format crates (`sigstore-core`,
//! `notation-core`) keep only their formats; like them, this crate does no I/O.

#![deny(missing_docs)]

pub mod b64;
pub mod canonical;
mod error;
mod failure;
pub mod json;
pub mod keys;
pub mod oci;
pub mod tsa;
pub mod x509;

pub use error::Error;
pub use failure::{Failure, Failures, Ranked};
