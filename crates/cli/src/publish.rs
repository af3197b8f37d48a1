//! Running a publishing command (`sign`, `signer`, `key rotate`) on the Notary writer
//! (crates/notary-writer): its options, and its outcome as output and an exit code.

use std::path::PathBuf;

use api::codes::ReasonCode;
use notary_writer::{failure, Class, Failure, Kind};
use serde_json::{json, Value};

use crate::exit::Exit;

impl From<Class> for Exit {
    fn from(c: Class) -> Exit {
        match c {
            Class::Refused => Exit::Refused,
            Class::Usage => Exit::Usage,
            Class::Unreachable => Exit::Unreachable,
        }
    }
}

/// Runs a publishing command to its end: on success its JSON (with `--json`) or its
/// sentence on stdout; on failure a JSON object on stdout or a line on stderr; the exit
/// code either way.
pub fn report(
    command: &str,
    json_out: bool,
    work: impl std::future::Future<Output = Result<(Value, String), Failure>>,
) -> std::process::ExitCode {
    let outcome = crate::daemon_client::block_on(work).unwrap_or_else(|e| {
        Err(failure(
            Class::Usage,
            Kind::Reason(ReasonCode::InternalError),
            e,
        ))
    });
    match outcome {
        Ok((v, text)) => {
            if json_out {
                println!("{v}");
            } else {
                println!("{text}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(f) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "error": f.kind.as_str(), "message": f.message})
                );
            } else {
                eprintln!("pullguard: {command}: {}", f.message);
            }
            Exit::from(f.class).into()
        }
    }
}

/// Where to publish and with which keys: the options `sign` and `signer` share.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// The trust server (notary-server) URL.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// CA certificate (PEM) for the trust server.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Keys directory (signing keys are in its private/).
    #[arg(long, value_name = "DIR", default_value = crate::keys::DEFAULT_KEYS_DIR)]
    pub keys_dir: PathBuf,
    /// The signer's own trusted-state directory: roots seen and versions, so that a
    /// server cannot roll the signer back either.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/pullguard/signer-state"
    )]
    pub state_dir: PathBuf,
}

impl From<&TargetArgs> for notary_writer::Target {
    fn from(a: &TargetArgs) -> notary_writer::Target {
        notary_writer::Target {
            server: a.server.clone(),
            ca: a.ca.clone(),
            keys_dir: a.keys_dir.clone(),
            state_dir: a.state_dir.clone(),
            passphrase: crate::keys::passphrase_for,
        }
    }
}
