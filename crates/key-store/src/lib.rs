//! Pinned trust anchors, trusted state and signing keys on disk.
//!
//! What a node remembers decides what it trusts: which root keys it pins for which
//! repositories ([`anchors`]), the root and highest versions it has verified
//! ([`state`]), and the private keys operators sign with ([`signing`]). This crate keeps
//! them so that a crash, a full disk or a tampered file can never turn into "no state",
//! which would silently re-open trust on first use:
//! - every write goes to a temporary file in the same directory, is fsynced, renamed
//!   over the old file, and the directory is fsynced;
//! - a state file that does not parse or fails its checksum is an error the operator
//!   must clear, never an absent file;
//! - directories are created 0700 and files 0600, and files or directories that others
//!   can write, or that another user owns, are refused with the command that fixes them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;

pub mod anchors;
mod fsutil;
pub mod signing;
pub mod state;

pub use anchors::{Anchor, AnchorWarning, TrustAnchors, INDEX};
pub use fsutil::{check_secure, private_dir, read_secure, write_atomic};
pub use signing::{KeyAlgorithm, KeyDir, KeyEntry, SigningKey};
pub use state::{ClockDue, Prior, RepoRecord, StateStore, TofuRecord, Verified};

/// What to do about an I/O error an operator meets first: keys and trusted state are
/// root's (0700) on purpose.
fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (keys and trusted state are readable by root only: run this as root, or as pullguardd's user)"
        }
        _ => "",
    }
}

/// Everything that can go wrong here; each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The trust data did not verify (a verdict, not a fault of the store).
    #[error(transparent)]
    Untrusted(#[from] trust_core::Error),
    /// A file or directory could not be read or written.
    #[error("cannot {op} {}: {}{}", path.display(), source.kind(), io_hint(source))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause (its kind is in the message; the chain is not repeated).
        source: std::io::Error,
    },
    /// Group or others may write a file or directory that decides trust.
    #[error("{} is writable by group or others (mode {mode:o}); anyone who can write it can change what this node trusts. Run `chmod go-w {}`, and find out who made it so", path.display(), path.display())]
    InsecurePermissions {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A kubelet volume's root (its `..data` layout) that the mode bits let others
    /// write and no sticky bit protects: a ConfigMap's (0777). `chmod` cannot help there.
    #[error("{} is the root of a kubelet volume others can write (mode {mode:o}, no sticky bit: a ConfigMap's); a trust directory cannot be one. Mount it from a Secret, or as a subdirectory inside the volume (`items` with a `path` such as `truststore/ca/acme/root.crt`)", path.display())]
    WritableVolumeRoot {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Another user owns a file or directory that decides trust.
    #[error("{} is owned by uid {owner}, not by this user (uid {euid}) or root; run `chown {euid} {}` if that is intended", path.display(), path.display())]
    ForeignOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        euid: u32,
    },
    /// A trusted-state file is damaged.
    #[error("trusted state {} is corrupt ({detail}). It is not treated as absent, since that would re-open trust on first use; inspect it, then run `pullguard keys forget-state {gun}` to start over", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// Repository name.
        gun: String,
        /// What is wrong.
        detail: String,
    },
    /// The clock is earlier than a time at which trust data was already verified.
    #[error("the clock says {}, earlier than {}, when trust data was last verified here; expiry checks cannot be trusted. Fix the clock, or if the earlier time was wrong, run `pullguard keys forget-state --clock`", trust_core::fmt_time(.now), trust_core::fmt_time(.last))]
    ClockWentBackwards {
        /// The clock now.
        now: time::OffsetDateTime,
        /// The latest verification time recorded.
        last: time::OffsetDateTime,
    },
    /// The anchors index does not parse or names bad values.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// Line (1-based).
        line: usize,
        /// Column (1-based).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// No anchor covers the repository and trust on first use is not allowed.
    #[error("no pinned root for {gun}, and trust on first use is not allowed for it; pin its root (`pullguard keys pin {gun} --cert ROOT.crt`, `--key-id`, `--ca`) or allow it explicitly (`pullguard keys pin {gun} --tofu`)")]
    NotPinned {
        /// Repository name.
        gun: String,
    },
    /// A key file could not be decrypted.
    #[error("cannot decrypt {what}: wrong passphrase, or the file is damaged")]
    BadPassphrase {
        /// Which key.
        what: String,
    },
    /// A key file is of a kind we do not read or write.
    #[error("{what}: {detail}")]
    UnsupportedKey {
        /// Which key.
        what: String,
        /// What is unsupported.
        detail: String,
    },
    /// A pin asked for cannot be made as given (nothing was read or written).
    #[error("{0}")]
    BadPin(String),
    /// No stored key has that ID.
    #[error("no private key {id} in {}", dir.display())]
    NoSuchKey {
        /// Key ID.
        id: String,
        /// Where we looked.
        dir: PathBuf,
    },
}

impl Error {
    /// A stable code for errors that amount to a rejection of trust data, for reports
    /// beside trust-core's reason codes; `None` for operational errors.
    pub fn reason_code(&self) -> Option<codes::ReasonCode> {
        use codes::ReasonCode;
        match self {
            Error::ClockWentBackwards { .. } => Some(ReasonCode::ClockWentBackwards),
            Error::NotPinned { .. } => Some(ReasonCode::RootNotPinned),
            Error::CorruptState { .. } => Some(ReasonCode::StateCorrupt),
            _ => None,
        }
    }
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
