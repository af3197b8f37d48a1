//! `pullguard signer add|remove|list`: who may sign a repository's tags, the way
//! `docker trust signer` managed it. A signer NAME is a delegation `targets/NAME` with
//! their key, and their key is also one of `targets/releases`' keys — the role Docker
//! reads tags from — so each signer signs with their own key. Adding and removing need
//! the repository's targets key; listing needs no key.

use api::codes::ReasonCode;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use serde_json::{json, Value};
use trust_core::keys::PublicKey;

use crate::publish::TargetArgs;
use notary_writer::{failure, Class, Failure, Kind, Session};

pub const EXAMPLES: &str = "\
Examples:
  pullguard keys --keys-dir ~/alice generate --role targets/releases --json   # Alice: her key
  PULLGUARD_REPOSITORY_PASSPHRASE=… pullguard signer add alice --key alice.pub \\
      registry.example.com/team/app --server https://notary.example.com
  pullguard signer list registry.example.com/team/app --server https://notary.example.com
  pullguard signer remove alice registry.example.com/team/app --server https://notary.example.com";

const RELEASES: &str = "targets/releases";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Let NAME sign the repository's tags with the public key in --key.
    #[command(
        after_help = "Example:\n  pullguard signer add alice --key alice.pub registry.example.com/team/app --server https://notary.example.com\n\nExit codes: 0 added and published, 1 refused (name, key, repository), 2 bad usage or a missing key, 3 the trust server cannot be reached."
    )]
    Add {
        /// The signer's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The signer's public key or certificate (PEM), e.g. from `keys generate --json`.
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// The repository (GUN), e.g. registry.example.com/team/app.
        repository: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop NAME from signing: removes targets/NAME and NAME's keys from targets/releases.
    #[command(
        after_help = "Example:\n  pullguard signer remove alice registry.example.com/team/app --server https://notary.example.com\n\nExit codes: 0 removed and published, 1 refused (unknown or last signer), 2 bad usage or a missing key, 3 the trust server cannot be reached."
    )]
    Remove {
        /// The signer's name.
        name: String,
        /// The repository.
        repository: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The repository's signers and their key IDs.
    #[command(
        after_help = "Example:\n  pullguard signer list registry.example.com/team/app --server https://notary.example.com --json\n\nExit codes: 0 listed, 1 the trust data does not verify, 3 the trust server cannot be reached."
    )]
    List {
        /// The repository.
        repository: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: &Command) -> ExitCode {
    let json_out = match command {
        Command::Add { json, .. } | Command::Remove { json, .. } | Command::List { json, .. } => {
            *json
        }
    };
    crate::publish::report("signer", json_out, execute(command))
}

async fn execute(command: &Command) -> Result<(Value, String), Failure> {
    match command {
        Command::Add {
            name,
            key,
            repository,
            target,
            ..
        } => {
            check_name(name)?;
            let (key_id, key_json) = read_public_key(key)?;
            let session = Session::open(&target.into(), repository).await?;
            let mut body = session.body_of("targets")?;
            body["delegations"]["keys"][&key_id] = key_json;
            for role in [format!("targets/{name}"), RELEASES.to_owned()] {
                add_key_to_role(&mut body, &role, &key_id);
            }
            let admin = session.key_for(&session.root_role_keys("targets"), "targets")?;
            session
                .publish(vec![("targets".to_owned(), body, vec![admin])])
                .await?;
            Ok((
                json!({"ok": true, "signer": name, "key_id": key_id, "repository": repository, "roles": [format!("targets/{name}"), RELEASES]}),
                format!("{name} may now sign {repository}: key {key_id} added to targets/{name} and {RELEASES}"),
            ))
        }
        Command::Remove {
            name,
            repository,
            target,
            ..
        } => {
            check_name(name)?;
            let session = Session::open(&target.into(), repository).await?;
            let mut body = session.body_of("targets")?;
            let role = format!("targets/{name}");
            let roles = body["delegations"]["roles"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let Some(theirs) = roles.iter().find(|r| r["name"] == role.as_str()) else {
                return Err(failure(
                    Class::Refused,
                    Kind::UnknownSigner,
                    format!("{repository} has no signer {name} (see `pullguard signer list`)"),
                ));
            };
            let their_keys: Vec<String> = theirs["keyids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut kept = Vec::new();
            for mut r in roles {
                if r["name"] == role.as_str() {
                    continue;
                }
                if r["name"] == RELEASES {
                    let left: Vec<Value> = r["keyids"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|k| !their_keys.iter().any(|t| k.as_str() == Some(t)))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    if left.is_empty() {
                        return Err(failure(Class::Refused,
                            Kind::LastSigner,
                            format!("{name} is the last signer of {RELEASES} in {repository}: removing them would leave the role nobody can sign; add another signer first"),
                        ));
                    }
                    r["keyids"] = json!(left);
                }
                kept.push(r);
            }
            body["delegations"]["roles"] = json!(kept);
            // Keys no role lists any more go too.
            let used: Vec<String> = kept
                .iter()
                .flat_map(|r| r["keyids"].as_array().cloned().unwrap_or_default())
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            if let Some(keys) = body["delegations"]["keys"].as_object_mut() {
                keys.retain(|id, _| used.contains(id));
            }
            let admin = session.key_for(&session.root_role_keys("targets"), "targets")?;
            let mut changes = vec![("targets".to_owned(), body, vec![admin])];
            if let Some(resign) = releases_left_unsigned(&session, &their_keys)? {
                changes.push(resign);
            }
            session.publish(changes).await?;
            Ok((
                json!({"ok": true, "removed": name, "repository": repository, "key_ids": their_keys}),
                format!("{name} removed from {repository} (targets/{name}, and their keys from {RELEASES})"),
            ))
        }
        Command::List {
            repository, target, ..
        } => {
            let session = Session::open(&target.into(), repository).await?;
            let mut signers = Vec::new();
            let mut text = format!("signers of {repository}:\n");
            for d in &session.top.body.delegations {
                let Some(name) = d.name.strip_prefix("targets/") else {
                    continue;
                };
                signers.push(json!({"name": name, "role": d.name, "key_ids": d.keys.keyids, "threshold": d.keys.threshold}));
                let ids: Vec<&str> = d
                    .keys
                    .keyids
                    .iter()
                    .map(|k| &k[..12.min(k.len())])
                    .collect();
                text.push_str(&format!("  {name:<20} {}\n", ids.join(", ")));
            }
            if signers.is_empty() {
                text.push_str("  (none: only the repository's targets key signs)\n");
            }
            Ok((
                json!({"repository": repository, "signers": signers}),
                text.trim_end().to_owned(),
            ))
        }
    }
}

/// When the removed keys' signatures are what makes targets/releases valid now, the
/// role is re-signed with a remaining signer's key we hold: nodes refuse a whole
/// repository whose targets/releases no longer verifies (Notary would fall back to
/// `targets` instead, which an attacker can exploit). Without such a key, refused
/// before anything is published.
fn releases_left_unsigned(
    session: &Session,
    removed: &[String],
) -> Result<Option<notary_writer::Change>, Failure> {
    let Some(bytes) = session.files.get(RELEASES) else {
        return Ok(None);
    };
    let current = trust_core::metadata::parse_targets(RELEASES, bytes).map_err(|e| {
        failure(
            Class::Refused,
            Kind::Reason(ReasonCode::MalformedMetadata),
            e.to_string(),
        )
    })?;
    let authorised = session.delegation_keys(RELEASES, None)?;
    let remaining: Vec<_> = authorised
        .into_iter()
        .filter(|(id, _)| !removed.contains(id))
        .collect();
    let threshold = session
        .top
        .body
        .delegations
        .iter()
        .find(|d| d.name == RELEASES)
        .map_or(1, |d| d.keys.threshold);
    let still_signed = current
        .signatures
        .iter()
        .filter(|sig| remaining.iter().any(|(id, _)| *id == sig.keyid))
        .count() as u64;
    if still_signed >= threshold {
        return Ok(None);
    }
    if !session.holds_any(&remaining) {
        return Err(failure(Class::Refused,
            Kind::ReleasesLeftUnsigned,
            format!("{RELEASES} of {} is signed by the keys being removed, and no remaining signer's key is in this keys directory to sign it again; nodes would then refuse the whole repository. Run this where a remaining signer's key is (`pullguard keys import`), or have a remaining signer sign a tag first", session.gun),
        ));
    }
    let key = session.key_for(&remaining, RELEASES)?;
    Ok(Some((
        RELEASES.to_owned(),
        session.body_of(RELEASES)?,
        vec![key],
    )))
}

fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "releases"
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(failure(Class::Usage,
            Kind::InvalidName,
            format!("{name:?} is not a signer name: use letters, digits, '-', '_', '.' (and not \"releases\")"),
        ))
    }
}

/// Adds `key_id` to the delegation `role` (created with all paths and threshold 1).
fn add_key_to_role(body: &mut Value, role: &str, key_id: &str) {
    if !body["delegations"]["roles"].is_array() {
        body["delegations"]["roles"] = json!([]);
    }
    let Some(roles) = body["delegations"]["roles"].as_array_mut() else {
        return;
    };
    match roles.iter_mut().find(|r| r["name"] == role) {
        Some(r) => {
            let ids = r["keyids"].as_array().cloned().unwrap_or_default();
            if !ids.iter().any(|k| k == key_id) {
                let mut ids = ids;
                ids.push(json!(key_id));
                r["keyids"] = json!(ids);
            }
        }
        None => {
            roles.push(json!({"name": role, "keyids": [key_id], "paths": [""], "threshold": 1}))
        }
    }
}

/// A signer's public key file as Notary lists delegation keys: a certificate as
/// `ecdsa-x509` (its PEM text), a bare P-256 key as `ecdsa` (its SPKI DER).
fn read_public_key(path: &std::path::Path) -> Result<(String, Value), Failure> {
    let unreadable = |m: String| {
        failure(
            Class::Usage,
            Kind::InvalidKey,
            format!("{}: {m}", path.display()),
        )
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() > 64 * 1024 {
        return Err(unreadable("larger than 64 KiB: not a key file".to_owned()));
    }
    let text = String::from_utf8_lossy(&bytes);
    let (keytype, public) = if text.contains("-----BEGIN CERTIFICATE-----") {
        ("ecdsa-x509", bytes.clone())
    } else if text.contains("-----BEGIN PUBLIC KEY-----") {
        let body: String = text
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .filter(|l| !l.contains(':'))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| unreadable(format!("bad base64: {e}")))?;
        ("ecdsa", der)
    } else {
        return Err(unreadable(
            "no PEM public key or certificate in it".to_owned(),
        ));
    };
    let key = PublicKey::new(keytype, &public);
    if let Some(why) = key.unusable_reason() {
        return Err(unreadable(format!(
            "{why} (signer keys are ECDSA P-256, as `docker trust key generate` and `pullguard keys generate` make)"
        )));
    }
    let value = json!({"keytype": keytype, "keyval": {"private": null, "public": base64::engine::general_purpose::STANDARD.encode(&public)}});
    Ok((key.id().to_owned(), value))
}
