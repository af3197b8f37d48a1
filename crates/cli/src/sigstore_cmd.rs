//! `pullguard sigstore verify-bundle`: a Sigstore bundle over a file (or a digest),
//! verified offline against a trusted root, speaking the command line of Sigstore's
//! client conformance suite (its docs/cli_protocol.md) so that the suite can run against
//! pullguard's verifier (scripts/sigstore-conformance).

use std::path::PathBuf;
use std::process::ExitCode;

use sigstore_core::artifact::{verify_bundle, Artifact, Signer};
use sigstore_core::trust_root::TrustedRoot;
use sigstore_core::PublicKey;

use crate::exit::{fail, Exit};

pub const EXAMPLES: &str = "Examples:
  pullguard sigstore verify-bundle --bundle a.txt.sigstore.json \\
      --certificate-identity https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main \\
      --certificate-oidc-issuer https://token.actions.githubusercontent.com \\
      --trusted-root trusted_root.json a.txt
  pullguard sigstore verify-bundle --bundle b.json --key cosign.pub --trusted-root trusted_root.json sha256:HEX

Exit codes: 0 verified, 1 refused, 2 bad usage or unreadable files.";

pub const UPDATE_EXAMPLES: &str = "Examples:
  pullguard sigstore update-root                                   # from Sigstore's CDN
  pullguard sigstore update-root --repository https://tuf.mirror.example.com
  pullguard sigstore update-root --repository /media/sigstore-tuf  # a copy of the CDN's layout, offline

Exit codes: 0 updated (or already current), 1 refused (the copy kept is unchanged), 2 bad usage or an unusable state directory, 3 the repository could not be reached.";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify a Sigstore bundle over a file or a sha256 digest, offline.
    #[command(after_help = EXAMPLES)]
    VerifyBundle(Args),
    /// Refresh Sigstore's public-good trusted root from its TUF repository (every TUF
    /// check); pullguardd uses the verified copy at its next reload.
    #[command(after_help = UPDATE_EXAMPLES)]
    UpdateRoot(UpdateArgs),
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Sigstore's TUF repository: its CDN, a mirror's URL, or a directory with the CDN's
    /// layout (N.root.json, timestamp.json, V.snapshot.json, V.targets.json, targets/).
    #[arg(long, default_value = sigstore_tuf::PUBLIC_GOOD_REPOSITORY)]
    repository: String,
    /// pullguardd's state directory (the copy and its TUF metadata live in
    /// STATE_DIR/sigstore-tuf); default: `state_dir` of the policy, else /var/lib/pullguard.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The policy whose `state_dir` to use.
    #[arg(long, value_name = "FILE", default_value = crate::policy_cmd::DEFAULT_POLICY)]
    policy: PathBuf,
    /// The TUF root.json to start from when nothing is kept yet (default: the one
    /// shipped with pullguard, version 15).
    #[arg(long, value_name = "FILE")]
    initial_root: Option<PathBuf>,
    /// Judge expiry at this time (RFC 3339) instead of the clock: for tests and for
    /// inspecting an old copy.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn update_root(a: &UpdateArgs) -> ExitCode {
    let usage = |m: String| fail(Exit::Usage, a.json, "usage", &m);
    let now = match &a.now {
        None => time::OffsetDateTime::now_utc(),
        Some(t) => {
            match time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
                Ok(t) => t,
                Err(e) => return usage(format!("--now {t:?} is not an RFC 3339 time: {e}")),
            }
        }
    };
    let initial = match &a.initial_root {
        None => None,
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => return usage(format!("--initial-root {}: {e}", p.display())),
        },
    };
    let state_dir = a.state_dir.clone().unwrap_or_else(|| {
        policy::Policy::load(&a.policy).map_or_else(
            |_| PathBuf::from("/var/lib/pullguard"),
            |p| p.daemon.state_dir,
        )
    });
    let done = crate::daemon_client::block_on(daemon::sigstore_root::refresh(
        &a.repository,
        &state_dir,
        initial.as_deref(),
        now,
    ));
    match done {
        Err(e) => usage(e),
        Ok(Err(e)) => {
            let code = if e.contains("(unavailable)") {
                Exit::Unreachable
            } else {
                Exit::Refused
            };
            fail(
                code,
                a.json,
                "refused",
                &format!("the Sigstore trusted root was not updated from {}: {e}; the copy in use is unchanged", a.repository),
            )
        }
        Ok(Ok(r)) => {
            let i = &r.info;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"updated": true, "changed": r.changed, "repository": i.repository,
                        "root_version": i.root_version, "root_expires": i.root_expires,
                        "timestamp_expires": i.timestamp_expires, "targets_version": i.targets_version,
                        "state_dir": daemon::sigstore_root::dir(&state_dir)})
                );
            } else {
                println!(
                    "Sigstore trusted root {} from {} (TUF root version {}, expires {}; timestamp expires {}) in {}; pullguardd uses it at its next reload (systemctl reload pullguardd)",
                    if r.changed { "updated" } else { "verified, unchanged," },
                    i.repository,
                    i.root_version,
                    i.root_expires,
                    i.timestamp_expires,
                    daemon::sigstore_root::dir(&state_dir).display()
                );
            }
            ExitCode::SUCCESS
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Sigstore's staging instance (needs its trusted root: give --trusted-root).
    #[arg(long)]
    staging: bool,
    /// The bundle.
    #[arg(long)]
    bundle: PathBuf,
    /// The expected SAN of the signing certificate (exact).
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "key")]
    certificate_identity: Option<String>,
    /// The expected OIDC issuer of the signing certificate (exact).
    #[arg(long, requires = "certificate_identity")]
    certificate_oidc_issuer: Option<String>,
    /// A PEM public key that must have signed.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Sigstore's trusted_root.json (nothing is fetched); without it, the public-good
    /// root shipped with pullguard.
    #[arg(long)]
    trusted_root: Option<PathBuf>,
    /// The artifact, or `sha256:HEX`.
    file_or_digest: String,
}

pub fn run(command: &Command) -> ExitCode {
    match command {
        Command::VerifyBundle(a) => verify_bundle_cmd(a),
        Command::UpdateRoot(a) => update_root(a),
    }
}

fn verify_bundle_cmd(a: &Args) -> ExitCode {
    let usage = |m: String| fail(Exit::Usage, false, "usage", &m);
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    // Without --trusted-root: the public-good root shipped with pullguard (nothing is
    // fetched); staging has no shipped root.
    let root = match &a.trusted_root {
        Some(f) => read(f).and_then(|b| TrustedRoot::parse(&b).map_err(|e| format!("{}: {e}", f.display()))),
        None if a.staging => {
            return usage("give --trusted-root for Sigstore's staging instance: only the public-good root is shipped".to_owned())
        }
        None => TrustedRoot::parse(sigstore_core::trust_root::public_good_bytes())
            .map_err(|e| format!("the shipped public-good trusted root: {e}")),
    };
    let root = match root {
        Ok(r) => r,
        // A root that cannot be used refuses the bundle (the suite's broken roots must fail).
        Err(e) => return fail(Exit::Refused, false, "trusted_root", &e),
    };
    let bundle = match read(&a.bundle) {
        Ok(b) => b,
        Err(e) => return usage(e),
    };
    // The protocol: a digest is `sha256:` + 64 hex and not a file; anything else is a path.
    let digest = a
        .file_or_digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && !std::path::Path::new(&a.file_or_digest).exists())
        .and_then(|h| hex::decode(h).ok())
        .and_then(|d| <[u8; 32]>::try_from(d).ok());
    let bytes;
    let artifact = match digest {
        Some(d) => Artifact::Sha256(d),
        None => match read(&PathBuf::from(&a.file_or_digest)) {
            Ok(b) => {
                bytes = b;
                Artifact::Bytes(&bytes)
            }
            Err(e) => return usage(e),
        },
    };
    let key;
    let accepted;
    let signer = match (&a.key, &a.certificate_identity, &a.certificate_oidc_issuer) {
        (Some(k), None, None) => match read(k).and_then(|b| PublicKey::from_pem(&b)) {
            Ok(k) => {
                key = k;
                Signer::Key(&key)
            }
            Err(e) => return usage(e),
        },
        (None, Some(san), Some(issuer)) => {
            accepted = [sigstore_core::certs::Identity::exact(san, issuer)];
            Signer::Identities(&accepted)
        }
        _ => {
            return usage(
                "give --key, or --certificate-identity with --certificate-oidc-issuer".to_owned(),
            )
        }
    };
    match verify_bundle(
        &bundle,
        artifact,
        signer,
        &root,
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(v) => {
            println!(
                "verified (bundle v0.{}, signed at {})",
                v.version,
                v.times
                    .iter()
                    .map(trust_core::fmt_time)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(Exit::Refused, false, e.reason.as_str(), &e.message),
    }
}
