//! `pullguard key rotate|backup|restore`: a repository's keys.
//!
//! Rotating writes a new root version listing the new key, signed by the current root
//! key — and for the root itself by the new root key too (cross-signed), so that every
//! node that trusted the old root walks to the new one by itself. Root keys are P-256
//! with a self-issued certificate named after the repository, as Notary makes them.
//! Backup copies the root key's encrypted file to a file the operator chooses; restore
//! puts it back.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use key_store::{KeyDir, SigningKey};
use serde_json::{json, Value};

use crate::publish::TargetArgs;
use notary_writer::{
    failure, new_role_key, new_root_key, server_key, Class, Failure, Kind, Session,
};

pub const EXAMPLES: &str = "\
Examples:
  PULLGUARD_ROOT_PASSPHRASE=… pullguard key rotate registry.example.com/team/app root \\
      --server https://notary.example.com --keys-dir ~/.pullguard/keys
  pullguard key rotate registry.example.com/team/app targets --server …
  pullguard key backup registry.example.com/team/app --to /media/offline/app-root.key --server …
  pullguard key restore /media/offline/app-root.key --keys-dir ~/.pullguard/keys";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Replace a role's key; a new root is cross-signed by the old root key.
    #[command(
        after_help = "Examples:\n  pullguard key rotate registry.example.com/team/app targets --server https://notary.example.com\n  PULLGUARD_ROOT_PASSPHRASE=... pullguard key rotate registry.example.com/team/app root --server https://notary.example.com\n\nExit codes: 0 rotated and published, 1 refused, 2 bad usage or a missing key, 3 the trust server cannot be reached."
    )]
    Rotate {
        /// The repository (GUN).
        repository: String,
        /// The role whose key is replaced.
        #[arg(value_enum)]
        role: Role,
        #[command(flatten)]
        target: TargetArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the repository's root key (still encrypted) to a file of your choice.
    #[command(
        after_help = "Example:\n  pullguard key backup registry.example.com/team/app --to /safe/app-keys.pem\n\nExit codes: 0 written, 2 bad usage, a missing key, or a file that exists already."
    )]
    Backup {
        /// The repository (GUN).
        repository: String,
        /// The file to write (must not exist; written 0600).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a backed-up root key back into the keys directory (checks its passphrase).
    #[command(
        after_help = "Example:\n  pullguard key restore /safe/app-keys.pem\n\nExit codes: 0 restored, 2 bad usage, a wrong passphrase or an unreadable file."
    )]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Keys directory (signing keys are in its private/).
        #[arg(long, value_name = "DIR", default_value = crate::keys::DEFAULT_KEYS_DIR)]
        keys_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Root,
    Targets,
    Snapshot,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
        }
    }
}

pub fn run(command: &Command) -> ExitCode {
    let json_out = match command {
        Command::Rotate { json, .. }
        | Command::Backup { json, .. }
        | Command::Restore { json, .. } => *json,
    };
    crate::publish::report("key", json_out, execute(command))
}

async fn execute(command: &Command) -> Result<(Value, String), Failure> {
    match command {
        Command::Rotate {
            repository,
            role,
            target,
            ..
        } => rotate(repository, *role, target).await,
        Command::Backup {
            repository,
            to,
            target,
            ..
        } => backup(repository, to, target).await,
        Command::Restore { file, keys_dir, .. } => restore(file, keys_dir),
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

/// The current root key, which signs every new root.
fn root_key(session: &Session) -> Result<(String, SigningKey), Failure> {
    session
        .key_for(&session.root_role_keys("root"), "root")
        .map_err(|mut f| {
            if f.kind == Kind::MissingKey {
                f.message = format!(
                    "{}; this needs the repository's current root key (`pullguard key restore` a backup, or `pullguard keys import` it)",
                    f.message
                );
            }
            f
        })
}

async fn rotate(
    repository: &str,
    role: Role,
    target: &TargetArgs,
) -> Result<(Value, String), Failure> {
    let session = Session::open(&target.into(), repository).await?;
    let old_ids: Vec<String> = session
        .root_role_keys(role.name())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let signer = root_key(&session)?;
    let keys = KeyDir::open(&target.keys_dir.join("private"))
        .map_err(|e| failure(Class::Usage, Kind::KeysUnreadable, e.to_string()))?;
    let store = |key: &SigningKey, env: &str, what: &str| -> Result<PathBuf, Failure> {
        let pass =
            crate::keys::passphrase_for(env, &format!("Passphrase for the new {what} key: "))
                .map_err(|e| failure(Class::Usage, Kind::NoPassphrase, e))?;
        // Stored before anything is published: a lost new key would lock the
        // repository out.
        keys.store(key, &pass)
            .map_err(|e| failure(Class::Usage, Kind::KeysUnwritable, e.to_string()))
    };

    // The new key: made here, or by the server for a snapshot it manages.
    let snapshot_is_ours = session.holds_any(&session.root_role_keys("snapshot"));
    let (new_id, entry, new_key, stored) = match role {
        Role::Root => {
            let (key, id, entry) = new_root_key(repository)?;
            let path = store(&key, "PULLGUARD_ROOT_PASSPHRASE", "root")?;
            (id, entry, Some(key), Some(path))
        }
        Role::Snapshot if !snapshot_is_ours => {
            let (id, entry) = server_key(&session.fetcher, repository, "snapshot", true).await?;
            (id, entry, None, None)
        }
        Role::Targets | Role::Snapshot => {
            let (key, id, entry) = new_role_key(repository, role.name());
            let path = store(&key, "PULLGUARD_REPOSITORY_PASSPHRASE", role.name())?;
            (id, entry, Some(key), Some(path))
        }
    };

    let mut root = notary_writer::signed_body(session.files.get("root").unwrap_or_default())?;
    root["keys"][&new_id] = entry;
    root["roles"][role.name()]["keyids"] = json!([new_id]);
    // Keys no role lists any more go.
    let used: Vec<String> = root["roles"]
        .as_object()
        .map(|roles| {
            roles
                .values()
                .flat_map(|r| r["keyids"].as_array().cloned().unwrap_or_default())
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(k) = root["keys"].as_object_mut() {
        k.retain(|id, _| used.contains(id));
    }

    let mut root_signers = vec![signer];
    let mut changed = Vec::new();
    let mut snapshot_key = None;
    match (role, new_key) {
        (Role::Root, Some(key)) => root_signers.push((new_id.clone(), key)),
        // The targets role, as it is, signed by its new key.
        (Role::Targets, Some(key)) => changed.push((
            "targets".to_owned(),
            session.body_of("targets")?,
            vec![(new_id.clone(), key)],
        )),
        (Role::Snapshot, Some(key)) => snapshot_key = Some((new_id.clone(), key)),
        // A snapshot key the server holds: it signs the next snapshot itself.
        _ => {}
    }
    changed.insert(0, ("root".to_owned(), root, root_signers));
    session.publish_with(changed, snapshot_key).await?;
    let after = session.read_back().await?;
    let version = after.state.versions.get("root").copied().unwrap_or(0);
    let where_kept = stored.as_ref().map_or_else(
        || "held by the trust server".to_owned(),
        |p| format!("new private key in {} — back it up", p.display()),
    );
    Ok((
        json!({"ok": true, "repository": repository, "role": role.name(), "old_key_ids": old_ids, "new_key_id": new_id, "root_version": version, "new_key_file": stored}),
        format!(
            "{repository}: {} key {} replaced by {} (root version {version}); {where_kept}",
            role.name(),
            old_ids
                .iter()
                .map(|i| short(i))
                .collect::<Vec<_>>()
                .join(", "),
            short(&new_id),
        ),
    ))
}

async fn backup(
    repository: &str,
    to: &std::path::Path,
    target: &TargetArgs,
) -> Result<(Value, String), Failure> {
    let session = Session::open(&target.into(), repository).await?;
    let (id, file) = session
        .stored_file_of(&session.root_role_keys("root"))
        .ok_or_else(|| {
            failure(
                Class::Usage,
                Kind::MissingKey,
                format!(
                    "no root key of {repository} in {}",
                    target.keys_dir.join("private").display()
                ),
            )
        })?;
    let bytes = std::fs::read(&file).map_err(|e| {
        failure(
            Class::Usage,
            Kind::KeysUnreadable,
            format!("{}: {e}", file.display()),
        )
    })?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| {
            failure(
                Class::Usage,
                Kind::BackupUnwritable,
                format!("{}: {e} (the backup file must not exist yet)", to.display()),
            )
        })?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| {
            failure(
                Class::Usage,
                Kind::BackupUnwritable,
                format!("{}: {e}", to.display()),
            )
        })?;
    Ok((
        json!({"ok": true, "repository": repository, "key_id": id, "file": to}),
        format!(
            "root key {} of {repository} copied to {} (encrypted with its passphrase; keep both, apart)",
            short(&id),
            to.display()
        ),
    ))
}

fn restore(file: &std::path::Path, keys_dir: &std::path::Path) -> Result<(Value, String), Failure> {
    let bytes = std::fs::read(file).map_err(|e| {
        failure(
            Class::Usage,
            Kind::BackupUnreadable,
            format!("{}: {e}", file.display()),
        )
    })?;
    if bytes.len() > 64 * 1024 {
        return Err(failure(
            Class::Usage,
            Kind::BackupUnreadable,
            format!("{}: larger than a key file", file.display()),
        ));
    }
    let pass = crate::keys::passphrase_for(
        "PULLGUARD_ROOT_PASSPHRASE",
        "Passphrase of the backed-up key: ",
    )
    .map_err(|e| failure(Class::Usage, Kind::NoPassphrase, e))?;
    let key = SigningKey::from_pem(&bytes, &pass, &file.display().to_string()).map_err(|e| {
        failure(
            Class::Usage,
            Kind::WrongPassphrase,
            format!("{e} (the passphrase comes from PULLGUARD_ROOT_PASSPHRASE or the terminal)"),
        )
    })?;
    let keys = KeyDir::open(&keys_dir.join("private"))
        .map_err(|e| failure(Class::Usage, Kind::KeysUnreadable, e.to_string()))?;
    let path = keys
        .store(&key, &pass)
        .map_err(|e| failure(Class::Usage, Kind::KeysUnwritable, e.to_string()))?;
    Ok((
        json!({"ok": true, "key_id": key.key_id(), "role": key.role, "gun": key.gun, "path": path}),
        format!(
            "restored {} key {} to {}",
            key.role.as_deref().unwrap_or("a"),
            short(&key.key_id()),
            path.display()
        ),
    ))
}
