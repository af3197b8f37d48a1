//! `pullguard key rotate REPO root`: replaces a repository's root key. The new root
//! (a P-256 key with a self-signed certificate named after the repository, as Notary
//! makes them) is signed by the old root key and by the new one, so that every node
//! that trusted the old root walks to the new one by itself.
//!
//! Not yet: rotating the targets and snapshot keys, and `key backup` / `restore`.

use std::process::ExitCode;

use key_store::{KeyAlgorithm, KeyDir, SigningKey};
use serde_json::json;

use crate::publish::{failure, Failure, Session, Target};

pub const EXAMPLES: &str = "\
Examples:
  PULLGUARD_ROOT_PASSPHRASE=… pullguard key rotate registry.example.com/team/app root \\
      --server https://notary.example.com --keys-dir ~/.pullguard/keys";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Replace the repository's root key; the new root is cross-signed by the old one.
    Rotate {
        /// The repository (GUN).
        repository: String,
        /// The role whose key is replaced.
        #[arg(value_enum)]
        role: Role,
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Role {
    Root,
}

/// Root certificates are valid ten years, as Notary makes them.
const ROOT_CERT_DAYS: u32 = 3650;

pub fn run(command: &Command) -> ExitCode {
    let Command::Rotate { json: json_out, .. } = command;
    match crate::daemon_client::block_on(execute(command))
        .unwrap_or_else(|e| Err(failure(2, "internal_error", e)))
    {
        Ok((v, text)) => {
            if *json_out {
                println!("{v}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if *json_out {
                println!(
                    "{}",
                    json!({"ok": false, "error": f.kind, "message": f.message})
                );
            } else {
                eprintln!("pullguard: key rotate: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn execute(command: &Command) -> Result<(serde_json::Value, String), Failure> {
    let Command::Rotate {
        repository,
        role: Role::Root,
        target,
        ..
    } = command;
    let session = Session::open(target, repository).await?;
    let old_keys = session.root_role_keys("root");
    // The old root signs the new one; without it, nodes could not follow.
    let old = session.key_for(&old_keys, "root").map_err(|mut f| {
        if f.kind == "missing_key" {
            f.message = format!("{}; rotating the root needs the current root key (import it with `pullguard keys import`)", f.message);
        }
        f
    })?;

    let pass = crate::keys::passphrase_for(
        "PULLGUARD_ROOT_PASSPHRASE",
        "Passphrase for the new root key: ",
    )
    .map_err(|e| failure(2, "no_passphrase", e))?;
    let new = SigningKey::generate(
        KeyAlgorithm::Ecdsa,
        Some("root".to_owned()),
        Some(repository.clone()),
    );
    let cert = new
        .self_signed_cert(repository, ROOT_CERT_DAYS)
        .map_err(|e| failure(2, "internal_error", e.to_string()))?;
    let new_id = trust_core::keys::key_id("ecdsa-x509", cert.as_bytes());
    // Stored before anything is published: a lost new root key would lock the
    // repository out of its next rotation.
    let keys = KeyDir::open(&target.keys_dir.join("private"))
        .map_err(|e| failure(2, "keys_unreadable", e.to_string()))?;
    let stored = keys
        .store(&new, &pass)
        .map_err(|e| failure(2, "keys_unwritable", e.to_string()))?;

    let mut body = crate::publish::signed_body(session.files.get("root").unwrap_or_default())?;
    use base64::Engine as _;
    body["keys"][&new_id] = json!({
        "keytype": "ecdsa-x509",
        "keyval": {"private": null, "public": base64::engine::general_purpose::STANDARD.encode(cert.as_bytes())},
    });
    body["roles"]["root"]["keyids"] = json!([new_id]);
    // Keys no role lists any more go.
    let used: Vec<String> = body["roles"]
        .as_object()
        .map(|roles| {
            roles
                .values()
                .flat_map(|r| r["keyids"].as_array().cloned().unwrap_or_default())
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(k) = body["keys"].as_object_mut() {
        k.retain(|id, _| used.contains(id));
    }
    let old_id = old.0.clone();
    session
        .publish(vec![(
            "root".to_owned(),
            body,
            vec![old, (new_id.clone(), new)],
        )])
        .await?;
    let after = session.read_back().await?;
    let version = after.state.versions.get("root").copied().unwrap_or(0);
    Ok((
        json!({"ok": true, "repository": repository, "role": "root", "old_key_id": old_id, "new_key_id": new_id, "root_version": version, "new_key_file": stored}),
        format!(
            "{repository}: root key {} replaced by {} (root version {version}, signed by both); new private key in {} — back it up",
            &old_id[..12.min(old_id.len())],
            &new_id[..12],
            stored.display()
        ),
    ))
}
