//! What can go wrong asking a registry, and how much each kind says.

/// What went wrong, saying where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hosts.toml that cannot be used.
    #[error("registry host configuration {path}: {detail}")]
    HostsFile {
        /// The file.
        path: String,
        /// What was wrong, for the operator.
        detail: String,
    },
    /// A docker config.json that cannot be used.
    #[error("registry credentials file {path}: {detail}")]
    AuthFile {
        /// The file.
        path: String,
        /// What was wrong, for the operator.
        detail: String,
    },
    /// A CA file named by hosts.toml that cannot be used.
    #[error("CA file {path} named in hosts.toml: {detail}")]
    BadCa {
        /// The file.
        path: String,
        /// What was wrong, for the operator.
        detail: String,
    },
    /// No answer (connection, timeout, a server error).
    #[error("registry {url} could not be asked: {detail}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What was wrong, for the operator.
        detail: String,
    },
    /// The registry refused (authentication, permission, or an unexpected status).
    #[error("registry {url} answered {status}{detail}")]
    Refused {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What it means and what to do (starts with `: ` when present).
        detail: String,
    },
    /// An answer over its size limit.
    #[error("registry {url} sent more than {limit} bytes")]
    Oversized {
        /// The URL asked.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// An answer that is not what was asked for.
    #[error("registry {url} sent {detail}")]
    Invalid {
        /// The URL asked.
        url: String,
        /// What was wrong, for the operator.
        detail: String,
    },
    /// One verdict's reading went over its [`Budget`].
    #[error("reading the signatures from {url} took {what}; the lookup was stopped")]
    Budget {
        /// The URL asked.
        url: String,
        /// Which part of the budget ran out.
        what: String,
    },
    /// A login challenge naming a token service the credentials must not go to.
    #[error("registry {url} asks for credentials at {realm}, {why}; nothing was sent there")]
    UnsafeRealm {
        /// The URL asked.
        url: String,
        /// The token service the challenge named.
        realm: String,
        /// Why credentials must not go there.
        why: String,
    },
}

/// What kind of failure an [`Error`] is, for the verdict: only an outage is transient
/// (`on_unreachable` applies, the watcher keeps a present image); everything else is an
/// answer and is refused as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No answer: connection, timeout, 5xx, 429. Try again later.
    Unavailable,
    /// The registry (or its token service) refused pullguardd's credentials, or asked
    /// for credentials pullguardd may not send where it asked.
    Credentials,
    /// An answer that is wrong: oversized, unparseable, hashing to another digest, a
    /// blob its manifest lists missing. Possibly hostile; never an outage.
    Content,
    /// The node's own configuration (hosts.toml, its CA files, the credentials file).
    Config,
    /// More requests, bytes or time than one verdict may spend.
    Budget,
}

impl Error {
    /// The registry could not be asked, as opposed to having answered.
    pub fn is_unreachable(&self) -> bool {
        self.class() == ErrorClass::Unavailable
    }

    /// Which kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Unreachable { .. } => ErrorClass::Unavailable,
            Error::Refused {
                status: 401 | 403, ..
            }
            | Error::UnsafeRealm { .. } => ErrorClass::Credentials,
            Error::Refused { .. } | Error::Oversized { .. } | Error::Invalid { .. } => {
                ErrorClass::Content
            }
            Error::HostsFile { .. } | Error::AuthFile { .. } | Error::BadCa { .. } => {
                ErrorClass::Config
            }
            Error::Budget { .. } => ErrorClass::Budget,
        }
    }
}
