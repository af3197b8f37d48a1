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

#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify a Sigstore bundle over a file or a sha256 digest, offline.
    #[command(after_help = EXAMPLES)]
    VerifyBundle(Args),
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

pub fn run(Command::VerifyBundle(a): &Command) -> ExitCode {
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
