//! `pullguard inspect GUN[:TAG]`: a repository's trust data as people know it from
//! `docker trust inspect --pretty`: signed tags with digest and signers, the signers
//! (delegations) and their keys, the administrative keys, and every role's version and
//! expiry. The chain is verified first (root trusted on first use unless pinned); data
//! that does not verify is not shown as if it were trusted.
//!
//! Exit codes: 0 shown, 1 the trust data does not verify (or the tag is not signed),
//! 2 bad usage or unreadable input, 3 the trust server cannot be reached.

use api::codes::ReasonCode;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit::{fail, Exit};

use serde_json::json;
use time::OffsetDateTime;
use trust_core::metadata::{parse_root, parse_targets};
use trust_core::{Limits, RepoFiles, RootAnchor, VerifyOptions};

pub const EXAMPLES: &str = "Examples:
  pullguard inspect registry.example.com/team/app --server https://notary.example.com:4443 --ca ca.pem
  pullguard inspect registry.example.com/team/app:v3 --metadata-dir ./trust --json
  pullguard inspect registry.test/pullguard/app --metadata-dir tests/fixtures/notary-real/metadata --now 2026-11-26T00:00:00Z

Exit codes: 0 shown (verified first), 1 the trust data does not verify or the tag is not signed, 2 bad usage or unreadable files, 3 the trust server cannot be reached.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Repository (GUN), optionally with :TAG to show one tag.
    repository: String,
    /// Fetch from this notary-server (https://HOST:PORT).
    #[arg(long, value_name = "URL", required_unless_present = "metadata_dir")]
    server: Option<String>,
    /// CA certificate for the notary-server's TLS.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Read the files as a notary-server serves them from DIR instead.
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    metadata_dir: Option<PathBuf>,
    /// Pinned root key ID (as root.json lists it); otherwise the root is trusted on first use.
    #[arg(long = "root-key-id", value_name = "HEX")]
    root_key_ids: Vec<String>,
    /// Verify as of this time (RFC 3339) instead of now: saved trust data whose timestamp
    /// has expired can still be read as it was.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Human-readable tables (the default; accepted for `docker trust inspect --pretty` habits).
    #[arg(long)]
    pretty: bool,
    /// Print one JSON object.
    #[arg(long, conflicts_with = "pretty")]
    json: bool,
}

/// Splits `GUN[:TAG]`; a colon in the last path segment starts the tag.
fn split(reference: &str) -> (&str, Option<&str>) {
    let last = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last..].find(':') {
        Some(i) => (&reference[..last + i], Some(&reference[last + i + 1..])),
        None => (reference, None),
    }
}

/// A role as `notary list` names its signer.
fn signer(role: &str) -> String {
    if role == "targets" {
        "(Repo Admin)".to_owned()
    } else {
        role.strip_prefix("targets/").unwrap_or(role).to_owned()
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

pub fn run(args: &Args) -> ExitCode {
    let (gun, tag) = split(&args.repository);
    let limits = Limits::default();
    let files = match trust_data(args, gun, &limits) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if let Some(id) = args
        .root_key_ids
        .iter()
        .find(|id| trust_core::hex64(id).is_none())
    {
        return fail(Exit::Usage,
            args.json,
            "bad_usage",
            &format!("--root-key-id {id:?} is not a 64-digit hex key ID; a pin takes the full ID (this command prints it where it suggests pinning), since a short prefix could be matched by a key made for it"),
        );
    }
    let pins = trust_core::Pins {
        key_ids: args
            .root_key_ids
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        ..trust_core::Pins::default()
    };
    let anchor = if args.root_key_ids.is_empty() {
        RootAnchor::FirstUse
    } else {
        RootAnchor::Pinned(&pins)
    };
    let now = match clock(args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let opts = VerifyOptions::new(gun, now, anchor);
    let repo = match trust_core::verify(&files, &opts) {
        Ok(r) => r,
        Err(e) => {
            // trust-core's message may already start with the repository.
            let message = e.to_string();
            let message = if message.starts_with(gun) {
                message
            } else {
                format!("{gun}: {message}")
            };
            return fail(Exit::Refused, args.json, e.reason().as_str(), &message);
        }
    };

    // Verified above; parsing again only to read keys and delegations.
    let root = files.get("root").and_then(|b| parse_root("root", b).ok());
    let mut delegations: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for role in repo
        .roles
        .keys()
        .filter(|r| *r == "targets" || r.starts_with("targets/"))
    {
        if let Some(t) = files.get(role).and_then(|b| parse_targets(role, b).ok()) {
            for d in &t.body.delegations {
                delegations.insert(d.name.clone(), d.keys.keyids.clone());
            }
        }
    }
    // tag -> (digest, size, signers), signers in walk order.
    let mut tags: BTreeMap<&str, (String, u64, Vec<String>)> = BTreeMap::new();
    for (role, name, meta) in repo.signed_targets() {
        let digest = meta
            .hashes
            .get("sha256")
            .map(hex::encode)
            .unwrap_or_default();
        let e = tags
            .entry(name)
            .or_insert_with(|| (digest, meta.length, Vec::new()));
        e.2.push(signer(role));
    }
    if let Some(t) = tag {
        tags.retain(|name, _| *name == t);
        if tags.is_empty() {
            return fail(
                Exit::Refused,
                args.json,
                ReasonCode::UnknownTag.as_str(),
                &format!("{gun}: no role signs tag {t:?}"),
            );
        }
    }
    let admin = |role: &str| -> Vec<String> {
        root.as_ref()
            .and_then(|r| r.body.roles.get(role))
            .map(|k| k.keyids.clone())
            .unwrap_or_default()
    };
    let fmt_time = |t: OffsetDateTime| trust_core::fmt_time(&t);
    if args.json {
        let signed: Vec<_> = tags
            .iter()
            .map(|(name, (d, len, s))| json!({"tag": name, "digest": format!("sha256:{d}"), "size": len, "signers": s}))
            .collect();
        let signers: Vec<_> = delegations
            .iter()
            .map(|(role, keys)| json!({"role": role, "name": signer(role), "keys": keys}))
            .collect();
        let roles: BTreeMap<_, _> = repo
            .roles
            .iter()
            .map(|(r, i)| (r.clone(), json!({"version": i.version, "expires": fmt_time(i.expires), "signed_by": i.signers})))
            .collect();
        println!(
            "{}",
            json!({"gun": gun, "root_trust": repo.root_trust.as_str(), "signed_tags": signed, "signers": signers,
                   "administrative_keys": {"root": admin("root"), "repository": admin("targets")},
                   "roles": roles})
        );
        return ExitCode::SUCCESS;
    }
    print_text(gun, &tags, &delegations, &admin, &repo);
    ExitCode::SUCCESS
}

/// The repository's trust data: from a directory, or fetched from the trust server.
fn trust_data(args: &Args, gun: &str, limits: &Limits) -> Result<RepoFiles, ExitCode> {
    if let Some(dir) = &args.metadata_dir {
        match crate::trust_verify::read_metadata_dir(dir, limits) {
            Ok(f) => Ok(f),
            Err(e) => Err(fail(Exit::Usage, args.json, "unreadable", &e.0)),
        }
    } else {
        let url = args.server.clone().unwrap_or_default();
        let fetched = crate::daemon_client::block_on(async {
            let fetcher = notary_client::Fetcher::new(
                "inspect",
                url.trim_end_matches('/'),
                args.ca.as_deref(),
                std::time::Duration::from_secs(10),
            )
            .map_err(|e| (Exit::Usage, "bad_ca", e.to_string()))?;
            fetcher.fetch(gun, None).await.map_err(|e| {
                if matches!(e, notary_client::FetchError::NotFound { .. }) {
                    (
                        Exit::Refused,
                        ReasonCode::NoTrustData.as_str(),
                        e.to_string(),
                    )
                } else {
                    (
                        Exit::Unreachable,
                        ReasonCode::TrustServerUnreachable.as_str(),
                        e.to_string(),
                    )
                }
            })
        });
        match fetched {
            Ok(Ok(f)) => Ok(f),
            Ok(Err((code, error, m))) => Err(fail(code, args.json, error, &m)),
            Err(m) => Err(fail(
                Exit::Usage,
                args.json,
                ReasonCode::InternalError.as_str(),
                &m,
            )),
        }
    }
}

/// The time verified at: now, or `--now`.
fn clock(args: &Args) -> Result<OffsetDateTime, ExitCode> {
    match &args.now {
        None => Ok(OffsetDateTime::now_utc()),
        Some(t) => match OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
            Ok(t) => Ok(t),
            Err(e) => Err(fail(
                Exit::Usage,
                args.json,
                "bad_usage",
                &format!("--now {t:?} is not an RFC 3339 time: {e}"),
            )),
        },
    }
}

/// The human-readable summary, laid out as `notary list` and `docker trust inspect
/// --pretty` print theirs.
fn print_text(
    gun: &str,
    tags: &BTreeMap<&str, (String, u64, Vec<String>)>,
    delegations: &BTreeMap<String, Vec<String>>,
    admin: &dyn Fn(&str) -> Vec<String>,
    repo: &trust_core::VerifiedRepo,
) {
    println!("Signatures for {gun}\n");
    println!("{:<24} {:<66} SIGNERS", "SIGNED TAG", "DIGEST");
    for (name, (d, _, s)) in tags {
        println!("{name:<24} {d:<66} {}", s.join(", "));
    }
    println!("\nList of signers and their keys for {gun}\n");
    if delegations.is_empty() {
        println!("No signers (delegations): only the repository key signs.");
    } else {
        println!("{:<24} KEYS", "SIGNER");
        for (role, keys) in delegations {
            let ks: Vec<&str> = keys.iter().map(|k| short(k)).collect();
            println!("{:<24} {}", signer(role), ks.join(", "));
        }
    }
    println!("\nAdministrative keys for {gun}\n");
    let ids = |v: Vec<String>| {
        v.iter()
            .map(|k| short(k).to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  Repository Key:\t{}", ids(admin("targets")));
    println!("  Root Key:\t{}", ids(admin("root")));
    println!("\nRoles\n");
    println!("{:<24} {:>8}  EXPIRES", "ROLE", "VERSION");
    for (r, i) in &repo.roles {
        println!(
            "{r:<24} {:>8}  {}",
            i.version,
            trust_core::fmt_time(&i.expires)
        );
    }
    for (role, why) in repo.skipped_roles() {
        println!("{role:<24} skipped: {why}");
    }
    let root_ids = admin("root");
    println!(
        "\nRoot trust: {}",
        match repo.root_trust.as_str() {
            // The full ID: pins take nothing shorter.
            "tofu" => format!(
                "trusted on first use; to pin it: pullguard keys pin {gun} --key-id {}",
                root_ids.first().map_or("ID", String::as_str)
            ),
            other => other.to_owned(),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_tags_only_in_the_last_segment() {
        assert_eq!(
            split("127.0.0.1:5000/demo/app:v1"),
            ("127.0.0.1:5000/demo/app", Some("v1"))
        );
        assert_eq!(
            split("127.0.0.1:5000/demo/app"),
            ("127.0.0.1:5000/demo/app", None)
        );
        assert_eq!(split("app"), ("app", None));
    }
}
