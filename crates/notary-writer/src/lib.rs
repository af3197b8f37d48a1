//! The Notary writer: publishing changed roles to a notary-server (what `pullguard sign`,
//! `signer` and `key rotate` do). The current trust data is fetched and verified first
//! against the signer's own state (key-store's one verify-and-record), new role versions
//! are signed with our keys, the snapshot here when its key is ours (else by the server),
//! and everything goes up in one multipart POST the server applies whole; a concurrent
//! publish is told apart from a refusal. Uploads and key requests go through
//! notary-client, the only code that speaks notary-server's API.

#![deny(missing_docs)]

use codes::ReasonCode;
use std::path::PathBuf;

use base64::Engine as _;
use key_store::{KeyDir, SigningKey, StateStore};
use serde_json::{json, Value};
use time::OffsetDateTime;
use trust_core::keys::PublicKey;

/// Role files are given three years, as Notary does.
pub const ROLE_LIFETIME: time::Duration = time::Duration::days(3 * 365);
/// Root files and root certificates ten years, as Notary does.
pub const ROOT_LIFETIME: time::Duration = time::Duration::days(10 * 365);

/// What kind of failure: the CLI makes its exit code of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The trust data, a tag or the server said no.
    Refused,
    /// The request cannot be carried out as given: arguments, keys, files.
    Usage,
    /// A server did not answer.
    Unreachable,
}

/// A failure's stable code: a contract reason code, trust data's own reason, or one of
/// the publishers' codes below (matched exhaustively, never compared as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A contract reason code.
    Reason(ReasonCode),
    /// Why trust data did not verify.
    Trust(trust_core::Reason),
    /// `backup_unreadable`.
    BackupUnreadable,
    /// `backup_unwritable`.
    BackupUnwritable,
    /// `concurrent_publish`.
    ConcurrentPublish,
    /// `bad_trust_server`.
    BadTrustServer,
    /// `invalid_digest`.
    InvalidDigest,
    /// `invalid_key`.
    InvalidKey,
    /// `invalid_name`.
    InvalidName,
    /// `keys_unreadable`.
    KeysUnreadable,
    /// `keys_unwritable`.
    KeysUnwritable,
    /// `last_signer`.
    LastSigner,
    /// `missing_key`.
    MissingKey,
    /// `no_passphrase`.
    NoPassphrase,
    /// `not_published`.
    NotPublished,
    /// `outside_delegated_paths`.
    OutsideDelegatedPaths,
    /// `registry_unreachable`.
    RegistryUnreachable,
    /// `releases_left_unsigned`.
    ReleasesLeftUnsigned,
    /// `unknown_role`.
    UnknownRole,
    /// `unknown_signer`.
    UnknownSigner,
    /// `upload_refused`.
    UploadRefused,
    /// `wrong_passphrase`.
    WrongPassphrase,
}

impl Kind {
    /// The code as printed (`--json`'s `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reason(r) => r.as_str(),
            Kind::Trust(r) => r.as_str(),
            Kind::BackupUnreadable => "backup_unreadable",
            Kind::BackupUnwritable => "backup_unwritable",
            Kind::ConcurrentPublish => "concurrent_publish",
            Kind::BadTrustServer => "bad_trust_server",
            Kind::InvalidDigest => "invalid_digest",
            Kind::InvalidKey => "invalid_key",
            Kind::InvalidName => "invalid_name",
            Kind::KeysUnreadable => "keys_unreadable",
            Kind::KeysUnwritable => "keys_unwritable",
            Kind::LastSigner => "last_signer",
            Kind::MissingKey => "missing_key",
            Kind::NoPassphrase => "no_passphrase",
            Kind::NotPublished => "not_published",
            Kind::OutsideDelegatedPaths => "outside_delegated_paths",
            Kind::RegistryUnreachable => "registry_unreachable",
            Kind::ReleasesLeftUnsigned => "releases_left_unsigned",
            Kind::UnknownRole => "unknown_role",
            Kind::UnknownSigner => "unknown_signer",
            Kind::UploadRefused => "upload_refused",
            Kind::WrongPassphrase => "wrong_passphrase",
        }
    }
}

/// Why publishing failed; each message says what to do.
#[derive(Debug)]
pub struct Failure {
    /// What kind of failure.
    pub class: Class,
    /// A stable code (a contract reason code where one fits).
    pub kind: Kind,
    /// One sentence for people.
    pub message: String,
}

/// A [`Failure`].
pub fn failure(class: Class, kind: Kind, message: impl Into<String>) -> Failure {
    Failure {
        class,
        kind,
        message: message.into(),
    }
}

pub use trust_core::rfc3339;

/// Where to publish and with which keys.
#[derive(Debug, Clone)]
pub struct Target {
    /// The trust server (notary-server) URL.
    pub server: String,
    /// CA certificate (PEM) for the trust server: its only root when set.
    pub ca: Option<PathBuf>,
    /// Keys directory (signing keys are in its private/).
    pub keys_dir: PathBuf,
    /// The signer's own trusted-state directory: roots seen and versions, so that a
    /// server cannot roll the signer back either.
    pub state_dir: PathBuf,
    /// How a key's passphrase is had: `(environment variable, prompt)` → passphrase (the
    /// CLI reads the variable, else asks on the terminal).
    pub passphrase: Passphrase,
}

/// See [`Target::passphrase`].
pub type Passphrase = fn(&str, &str) -> Result<zeroize::Zeroizing<Vec<u8>>, String>;

mod session;

use session::{envelope, next_version, upload_all};
pub use session::{signed_body, Change, RoleKey, Session};

/// The trust server's client, the signer's state and keys.
pub(crate) fn connect(
    target: &Target,
) -> Result<(notary_client::Fetcher, StateStore, KeyDir), Failure> {
    let fetcher = notary_client::Fetcher::new(
        "publish",
        target.server.trim_end_matches('/'),
        target.ca.as_deref(),
        std::time::Duration::from_secs(30),
    )
    .map_err(|e| failure(Class::Usage, Kind::BadTrustServer, e.to_string()))?;
    let state = StateStore::open(&target.state_dir).map_err(|e| {
        failure(
            Class::Usage,
            Kind::Reason(ReasonCode::StateUnreadable),
            e.to_string(),
        )
    })?;
    let keys = KeyDir::open(&target.keys_dir.join("private"))
        .map_err(|e| failure(Class::Usage, Kind::KeysUnreadable, e.to_string()))?;
    Ok((fetcher, state, keys))
}

/// Root certificates are valid ten years, as Notary makes them.
pub const ROOT_CERT_DAYS: u32 = 3650;

/// A new root key: P-256 with a self-issued certificate named after the repository, as
/// Notary makes them. Returns the ID root.json lists it under, and its `keys` entry.
pub fn new_root_key(gun: &str) -> Result<(SigningKey, String, Value), Failure> {
    let key = SigningKey::generate(
        key_store::KeyAlgorithm::Ecdsa,
        Some("root".to_owned()),
        Some(gun.to_owned()),
    );
    let cert = key.self_signed_cert(gun, ROOT_CERT_DAYS).map_err(|e| {
        failure(
            Class::Usage,
            Kind::Reason(ReasonCode::InternalError),
            e.to_string(),
        )
    })?;
    let id = trust_core::keys::key_id("ecdsa-x509", cert.as_bytes());
    let entry = json!({"keytype": "ecdsa-x509", "keyval": {"private": null, "public": b64(cert.as_bytes())}});
    Ok((key, id, entry))
}

/// A new key for a role other than root, with its ID and `keys` entry.
pub fn new_role_key(gun: &str, role: &str) -> (SigningKey, String, Value) {
    let key = SigningKey::generate(
        key_store::KeyAlgorithm::Ecdsa,
        Some(role.to_owned()),
        Some(gun.to_owned()),
    );
    let id = key.key_id();
    let entry = json!({"keytype": key.keytype(), "keyval": {"private": null, "public": b64(&key.public())}});
    (key, id, entry)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The public key the server holds for `role` (`timestamp`, or `snapshot` when the
/// server manages it), creating it if the repository is new; `rotate` asks for a new
/// one. Returns its ID and `keys` entry.
pub async fn server_key(
    fetcher: &notary_client::Fetcher,
    gun: &str,
    role: &str,
    rotate: bool,
) -> Result<(String, Value), Failure> {
    let (keytype, public) = fetcher.server_key(gun, role, rotate).await.map_err(|e| {
        failure(
            Class::Unreachable,
            Kind::Reason(ReasonCode::TrustServerUnreachable),
            format!("cannot get the {role} key: {e}"),
        )
    })?;
    if PublicKey::new(&keytype, &public)
        .unusable_reason()
        .is_some()
    {
        return Err(failure(
            Class::Unreachable,
            Kind::Reason(ReasonCode::TrustServerUnreachable),
            format!("{} sent an unusable {keytype:?} {role} key", fetcher.url()),
        ));
    }
    let id = trust_core::keys::key_id(&keytype, &public);
    Ok((
        id,
        json!({"keytype": keytype, "keyval": {"private": null, "public": b64(&public)}}),
    ))
}

/// Creates `gun` on the server, as `docker trust sign` did for a new repository: root
/// and targets keys made here (stored encrypted before anything is sent), timestamp and
/// snapshot keys held by the server, root.json and targets.json (listing `targets`)
/// uploaded together; the server then signs snapshot and timestamp.
pub async fn initialise(target: &Target, gun: &str, targets: Value) -> Result<(), Failure> {
    let (fetcher, _, keys) = connect(target)?;
    let (timestamp_id, timestamp) = server_key(&fetcher, gun, "timestamp", false).await?;
    let (snapshot_id, snapshot) = server_key(&fetcher, gun, "snapshot", false).await?;
    let root_pass = (target.passphrase)(
        "PULLGUARD_ROOT_PASSPHRASE",
        &format!("Passphrase for the new root key of {gun}: "),
    )
    .map_err(|e| failure(Class::Usage, Kind::NoPassphrase, e))?;
    let repo_pass = (target.passphrase)(
        "PULLGUARD_REPOSITORY_PASSPHRASE",
        &format!("Passphrase for the new targets key of {gun}: "),
    )
    .map_err(|e| failure(Class::Usage, Kind::NoPassphrase, e))?;
    let (root_key, root_id, root_entry) = new_root_key(gun)?;
    let (targets_key, targets_id, targets_entry) = new_role_key(gun, "targets");
    for (key, pass) in [(&root_key, &root_pass), (&targets_key, &repo_pass)] {
        keys.store(key, pass)
            .map_err(|e| failure(Class::Usage, Kind::KeysUnwritable, e.to_string()))?;
    }
    let now = OffsetDateTime::now_utc();
    let one = |id: &str| json!({"keyids": [id], "threshold": 1});
    let mut root = json!({
        "_type": "Root",
        "consistent_snapshot": false,
        "keys": {},
        "roles": {
            "root": one(&root_id),
            "targets": one(&targets_id),
            "snapshot": one(&snapshot_id),
            "timestamp": one(&timestamp_id),
        },
        "version": 0,
    });
    for (id, entry) in [
        (&root_id, root_entry),
        (&targets_id, targets_entry),
        (&snapshot_id, snapshot),
        (&timestamp_id, timestamp),
    ] {
        root["keys"][id] = entry;
    }
    next_version(&mut root, now, "root");
    let mut top = json!({
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "targets": targets,
        "version": 0,
    });
    next_version(&mut top, now, "targets");
    let upload = vec![
        (
            "root".to_owned(),
            envelope(&root, &[(root_id.as_str(), &root_key)])?,
        ),
        (
            "targets".to_owned(),
            envelope(&top, &[(targets_id.as_str(), &targets_key)])?,
        ),
    ];
    upload_all(&fetcher, gun, &upload).await
}
