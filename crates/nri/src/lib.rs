//! A plugin for containerd's Node Resource Interface (NRI), written for pullguard: NRI
//! asks its connected plugins before it creates a container, and a plugin's error stops
//! the creation, whichever path brought the image.
//!
//! The wire, from the bottom: one unix connection to containerd's NRI socket, split by
//! [`mux`] into two byte streams, each carrying [`ttrpc`] messages whose bodies are the
//! protobuf messages of NRI's API ([`api`], generated from the vendored
//! `proto/vendor/nri/api.proto`). [`serve`] runs one connection: it registers, answers
//! `Configure` with a subscription to `CreateContainer` only, and asks the [`Handler`]
//! about each container.

#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

pub mod mux;
mod session;
pub mod ttrpc;

pub use session::{serve, Handler, Plugin, Runtime};

/// NRI's API messages (generated; never edited).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod api {
    include!(concat!(env!("OUT_DIR"), "/nri.pkg.api.v1alpha1.rs"));
}

/// containerd's NRI socket unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/nri/nri.sock";

/// The container annotation where containerd's CRI puts the image a container is
/// created from: the name the kubelet asked for, else the image record's name.
pub const IMAGE_NAME_ANNOTATION: &str = "io.kubernetes.cri.image-name";

/// Why an NRI connection ended or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be reached.
    #[error("cannot connect to containerd's NRI socket {}: {source}; is containerd running with NRI enabled ([plugins.\"io.containerd.nri.v1.nri\"] disable = false) and this the socket_path it uses?", .path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("the NRI connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// containerd closed the connection (it stopped, restarted, or dropped the plugin).
    #[error("containerd closed the NRI connection")]
    Closed,
    /// The peer sent what the protocol does not allow.
    #[error("NRI protocol error: {0}; the connection is dropped and made again")]
    Protocol(String),
    /// containerd answered the registration with an error.
    #[error("containerd refused to register the NRI plugin: {0}")]
    Registration(String),
    /// containerd did not answer the registration in time.
    #[error("containerd did not answer the NRI registration within {0:?}")]
    RegistrationTimeout(Duration),
}
