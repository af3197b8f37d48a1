//! `pullguard trust verify` (docs/contracts.md §2).
//!
//! Exit codes: 0 trusted, 1 rejected, 2 bad usage or unreadable input.

use crate::exit::Exit;
use api::codes::ReasonCode;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use trust_core::{Limits, Pins, RepoFiles, RootAnchor, TagPolicy, VerifiedRepo, VerifyOptions};

use policy::duration;

pub const EXAMPLES: &str = "\
Examples:
  pullguard trust verify --metadata-dir ./meta --gun registry.example.com/team/app --tag v1.2
  pullguard trust verify --metadata-dir ./meta --gun registry.example.com/team/app \\
      --digest sha256:3f7b... --root-cert root.crt --json
  pullguard trust verify --metadata-dir ./meta --gun example.com/app --tag v1 --now 2026-01-01T00:00:00Z

Exit codes: 0 trusted, 1 rejected, 2 bad usage or unreadable input.";

/// Arguments of `pullguard trust verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory with root.json, timestamp.json, snapshot.json, targets.json,
    /// delegations under their role names (targets/releases.json) and older roots as N.root.json.
    #[arg(long, value_name = "DIR")]
    metadata_dir: PathBuf,
    /// Repository name (GUN), e.g. docker.io/library/alpine.
    #[arg(long)]
    gun: String,
    /// Tag to resolve.
    #[arg(long, required_unless_present = "digest", conflicts_with = "digest")]
    tag: Option<String>,
    /// Manifest or index digest that some signed tag must carry (sha256:HEX).
    #[arg(long, value_name = "sha256:HEX")]
    digest: Option<String>,
    /// A root.json trusted earlier; newer roots must chain to it through N.root.json.
    #[arg(long, value_name = "FILE")]
    trusted_root: Option<PathBuf>,
    /// Pinned root certificate (PEM or DER); repeatable.
    #[arg(long, value_name = "FILE")]
    root_cert: Vec<PathBuf>,
    /// Pinned CA certificate (PEM or DER): a root certificate it issued counts as pinned;
    /// repeatable.
    #[arg(long, value_name = "FILE")]
    root_ca: Vec<PathBuf>,
    /// Pinned root key ID as root.json lists it; repeatable.
    #[arg(long, value_name = "HEX")]
    root_key_id: Vec<String>,
    /// Trusted state kept between runs (the daemon's): its root anchors this run, its
    /// versions reject rollbacks, and it is updated on success.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Keys directory with index.toml (pinned roots per repository); without a pin or
    /// an explicit TOFU allowance there, the repository is rejected.
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// Accept a tag signed by any delegation (like `notary lookup`), not only
    /// targets/releases and targets (like `docker pull`).
    #[arg(long)]
    any_role: bool,
    /// Verify as of this time (RFC 3339) instead of the clock.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Reject a timestamp issued longer ago than this (e.g. 1h, 7d).
    #[arg(long, value_name = "DURATION")]
    max_age: Option<String>,
    /// How long the trust server makes timestamps valid; used with --max-age to tell when
    /// a timestamp was issued (notary-server: 14d).
    #[arg(long, value_name = "DURATION", default_value = "14d")]
    timestamp_lifetime: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Bad usage or unreadable input: exit 2.
pub(crate) struct UsageError(pub(crate) String);

pub fn run(args: &Args) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(UsageError(message)) => {
            if args.json {
                println!(
                    "{}",
                    json!({"trusted": false, "gun": args.gun, "error": "usage", "message": message})
                );
            }
            eprintln!("pullguard: {message}");
            ExitCode::from(Exit::Usage)
        }
    }
}

fn run_inner(args: &Args) -> Result<ExitCode, UsageError> {
    let now = match &args.now {
        Some(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| UsageError(format!("--now {s:?} is not an RFC 3339 time ({e})")))?,
        None => OffsetDateTime::now_utc(),
    };
    let max_age = args
        .max_age
        .as_deref()
        .map(duration::parse)
        .transpose()
        .map_err(UsageError)?;
    let lifetime = duration::parse(&args.timestamp_lifetime).map_err(UsageError)?;
    let digest = args.digest.as_deref().map(parse_digest).transpose()?;
    for id in &args.root_key_id {
        if trust_core::hex64(id).is_none() {
            return Err(UsageError(format!(
                "--root-key-id {id:?} is not a 64-digit hex key ID; a pin takes the full ID (`pullguard inspect` prints it where it suggests pinning), since a short prefix like notary's 12 digits could be matched by a key made for it"
            )));
        }
    }
    let limits = Limits::default();
    let files = read_metadata_dir(&args.metadata_dir, &limits)?;

    let trusted_root = args
        .trusted_root
        .as_deref()
        .map(|p| read_capped(p, limits.root))
        .transpose()?;
    let mut pins = Pins {
        certs: Vec::new(),
        cas: Vec::new(),
        key_ids: args
            .root_key_id
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
    };
    for path in &args.root_cert {
        let bytes = read_capped(path, limits.root)?;
        let cert = trust_core::keys::parse_pinned_cert(&bytes)
            .map_err(|e| UsageError(format!("--root-cert {}: {e}", path.display())))?;
        pins.certs.push(cert.der);
    }
    for path in &args.root_ca {
        let bytes = read_capped(path, limits.root)?;
        let ca = trust_core::keys::parse_pinned_cert(&bytes)
            .map_err(|e| UsageError(format!("--root-ca {}: {e}", path.display())))?;
        pins.cas.push(ca);
    }
    let mut pinned = !pins.certs.is_empty() || !pins.key_ids.is_empty() || !pins.cas.is_empty();
    if !pinned && trusted_root.is_none() {
        if let Some(dir) = &args.keys_dir {
            match anchor_for(dir, &args.gun)? {
                Ok(Some(anchor_pins)) => {
                    pins = anchor_pins;
                    pinned = true;
                }
                // The anchor allows trust on first use explicitly.
                Ok(None) => {}
                Err(e) => {
                    report_rejected(
                        args,
                        &digest,
                        &e.to_string(),
                        e.reason_code()
                            .unwrap_or(ReasonCode::RootNotPinned)
                            .as_str(),
                    );
                    return Ok(ExitCode::from(Exit::Refused));
                }
            }
        }
    }
    let anchor = match (&trusted_root, pinned) {
        (Some(_), true) => {
            return Err(UsageError(
                "give either --trusted-root or --root-cert/--root-key-id/--root-ca, not both"
                    .to_owned(),
            ))
        }
        (Some(bytes), false) => RootAnchor::TrustedRoot(bytes),
        (None, true) => RootAnchor::Pinned(&pins),
        // No anchor given: trust on first use, and the output says so.
        (None, false) => RootAnchor::FirstUse,
    };

    let store = args
        .state_dir
        .as_deref()
        .map(|d| key_store::StateStore::open(d).map_err(|e| UsageError(e.to_string())))
        .transpose()?;
    let prior = match &store {
        Some(store) => match store.prior(&args.gun, now) {
            Ok(prior) => Some(prior),
            Err(e @ key_store::Error::ClockWentBackwards { .. }) => {
                report_rejected(
                    args,
                    &digest,
                    &e.to_string(),
                    ReasonCode::ClockWentBackwards.as_str(),
                );
                return Ok(ExitCode::from(Exit::Refused));
            }
            Err(e) => return Err(UsageError(e.to_string())),
        },
        None => None,
    };

    let mut opts = VerifyOptions::new(&args.gun, now, anchor);
    opts.max_timestamp_age = max_age;
    opts.timestamp_lifetime = lifetime;
    opts.limits = limits;
    let policy = if args.any_role {
        TagPolicy::AnyRole
    } else {
        TagPolicy::Docker
    };

    // Decided before verifying, so that no path can report a verdict without a query.
    let query = match (&args.tag, &digest) {
        (Some(tag), _) => Query::Tag(tag),
        (None, Some(hex)) => Query::Digest(hex),
        (None, None) => {
            return Err(UsageError(
                "give --tag TAG or --digest sha256:HEX".to_owned(),
            ))
        }
    };
    // With --state-dir: verified against the stored state, and recorded (TOFU kept).
    let verified = match (&store, &prior) {
        (Some(store), Some(prior)) => match store.verify_and_record(prior, &files, opts) {
            Ok(v) => Ok(v.repo),
            Err(key_store::Error::Untrusted(e)) => Err(e),
            Err(e) => {
                return Err(UsageError(format!(
                    "verified, but could not save the trusted state: {e}"
                )))
            }
        },
        _ => trust_core::verify(&files, &opts),
    };
    let outcome = verified.and_then(|repo| {
        let m = match query {
            Query::Tag(tag) => repo.resolve_tag(tag, policy)?,
            Query::Digest(hex) => repo.find_digest(hex, policy)?,
        };
        Ok((repo, m))
    });
    Ok(match outcome {
        Ok((repo, m)) => {
            report_trusted(args, &repo, &m);
            ExitCode::SUCCESS
        }
        Err(e) => {
            report_rejected(args, &digest, &e.to_string(), e.reason().as_str());
            ExitCode::from(Exit::Refused)
        }
    })
}

/// What the trust data is asked about.
enum Query<'a> {
    Tag(&'a str),
    Digest(&'a str),
}

fn parse_digest(s: &str) -> Result<String, UsageError> {
    let hex = trust_core::Sha256::from_prefixed(s).ok_or_else(|| {
        UsageError(format!(
            "--digest {s:?} is not sha256: followed by 64 hex digits"
        ))
    })?;
    Ok(hex.hex().to_owned())
}

fn report_trusted(args: &Args, repo: &VerifiedRepo, m: &trust_core::TargetMatch) {
    let expires: BTreeMap<&str, String> = repo
        .roles
        .iter()
        .map(|(r, i)| (r.as_str(), trust_core::rfc3339(i.expires)))
        .collect();
    let skipped: Vec<Value> = repo
        .skipped_roles()
        .map(|(role, why)| json!({"role": role, "message": why.to_string()}))
        .collect();
    if args.json {
        let out = json!({
            "trusted": true,
            "gun": repo.gun,
            "tag": m.name,
            "digest": format!("sha256:{}", m.sha256),
            "size": m.length,
            "role": m.role,
            "signers": m.signers,
            "root_trust": repo.root_trust.as_str(),
            "expires": expires,
            "skipped_roles": skipped,
        });
        println!("{out}");
        return;
    }
    println!(
        "trusted: {}:{} -> sha256:{} ({} bytes)",
        repo.gun, m.name, m.sha256, m.length
    );
    println!("  signed in {} by key {}", m.role, m.signers.join(", "));
    match repo.root_trust {
        trust_core::RootTrust::FirstUse if args.keys_dir.is_some() => {
            println!("  root trust: trust on first use, allowed for this repository by the keys directory")
        }
        trust_core::RootTrust::FirstUse => println!(
            "  root trust: trust on first use; no --trusted-root, --root-cert, --root-key-id, --root-ca, --keys-dir pin or --state-dir record anchored it, so whoever served this root is trusted"
        ),
        other => println!("  root trust: {}", other.as_str()),
    }
    if let Some(ts) = repo.roles.get("timestamp") {
        println!(
            "  timestamp v{} expires {}",
            ts.version,
            trust_core::fmt_time(&ts.expires)
        );
    }
    for (role, why) in repo.skipped_roles() {
        println!("  skipped {role}: {why}");
    }
}

fn report_rejected(args: &Args, digest: &Option<String>, message: &str, reason: &str) {
    if args.json {
        let mut out = json!({
            "trusted": false,
            "gun": args.gun,
            "reason": reason,
            "message": message,
        });
        if let Some(tag) = &args.tag {
            out["tag"] = json!(tag);
        }
        if let Some(d) = digest {
            out["digest"] = json!(format!("sha256:{d}"));
        }
        println!("{out}");
        return;
    }
    println!("rejected: {message} [{reason}]");
}

/// The pins the keys directory holds for `gun`: `Ok(Some)` pins, `Ok(None)` explicit
/// TOFU, `Err` no anchor (rejection). Unreadable anchor files are reported and skipped.
fn anchor_for(dir: &Path, gun: &str) -> Result<Result<Option<Pins>, key_store::Error>, UsageError> {
    let (mut anchors, warnings) =
        key_store::TrustAnchors::load(dir).map_err(|e| UsageError(e.to_string()))?;
    for w in &warnings {
        eprintln!("pullguard: warning: {w}");
    }
    // Read as pullguardd reads them: renamed to the node's spelling, and one it cannot
    // spell so refused (pullguardd refuses such a policy generation).
    let (renamed, refused) = anchors.normalise(policy::anchor_repository);
    for r in renamed {
        eprintln!("pullguard: warning: {r}");
    }
    if let Some(r) = refused.first() {
        return Err(UsageError(format!(
            "{}: {r}",
            dir.join(key_store::INDEX).display()
        )));
    }
    Ok(match anchors.for_gun(gun) {
        Some(a) if a.pins_anything() => Ok(Some(a.pins.clone())),
        Some(a) if a.tofu => Ok(None),
        _ => Err(key_store::Error::NotPinned {
            gun: gun.to_owned(),
        }),
    })
}

fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, UsageError> {
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    // One byte over the limit is enough for trust-core to report the file as oversized.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    Ok(bytes)
}

/// Reads the files a notary-server serves for one repository.
pub(crate) fn read_metadata_dir(dir: &Path, limits: &Limits) -> Result<RepoFiles, UsageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        UsageError(format!(
            "cannot read metadata directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files = RepoFiles::new();
    for entry in entries {
        let entry = entry.map_err(|e| UsageError(format!("cannot read {}: {e}", dir.display())))?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let limit = match name {
            "timestamp" => limits.timestamp,
            "root" => limits.root,
            n if n
                .strip_suffix(".root")
                .is_some_and(|v| v.parse::<u64>().is_ok()) =>
            {
                limits.root
            }
            "snapshot" | "targets" => limits.file,
            _ => continue,
        };
        if path.is_file() {
            files.insert(name, read_capped(&path, limit)?);
        }
    }
    read_delegations(&dir.join("targets"), "targets", limits, &mut files, 0)?;
    Ok(files)
}

fn read_delegations(
    dir: &Path,
    prefix: &str,
    limits: &Limits,
    files: &mut RepoFiles,
    depth: usize,
) -> Result<(), UsageError> {
    if depth > limits.delegation_depth || !dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| UsageError(format!("cannot read {}: {e}", dir.display())))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() {
            read_delegations(&path, &format!("{prefix}/{name}"), limits, files, depth + 1)?;
        } else if let Some(role) = name.strip_suffix(".json") {
            files.insert(format!("{prefix}/{role}"), read_capped(&path, limits.file)?);
        }
    }
    Ok(())
}
