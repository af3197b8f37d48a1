//! `pullguard keys`: trust anchors, trusted state and signing keys.
//!
//! Passphrases come from the environment for automation (`PULLGUARD_KEY_PASSPHRASE`
//! for keys we store, `PULLGUARD_IMPORT_PASSPHRASE` for files we import) or from a
//! prompt on the terminal. They are never echoed, logged or printed.

use crate::exit::Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use key_store::anchors::{pin, unpin, PinSpec};
use key_store::{KeyAlgorithm, KeyDir, SigningKey, StateStore, TrustAnchors};
use serde_json::json;
use zeroize::Zeroizing;

/// A passphrase, wiped from memory when dropped.
type Secret = Zeroizing<Vec<u8>>;

pub const DEFAULT_KEYS_DIR: &str = "/etc/pullguard/keys";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pullguard/state";

pub const EXAMPLES: &str = "\
Examples:
  pullguard keys pin 'registry.example.com/team/*' --ca team-ca.crt
  pullguard keys pin docker.io/library/alpine --key-id 4ff57dc9…
  pullguard keys list --json
  pullguard keys show-state registry.example.com/team/app
  PULLGUARD_KEY_PASSPHRASE=… pullguard keys generate --type ecdsa --role targets/releases
  PULLGUARD_IMPORT_PASSPHRASE=… PULLGUARD_KEY_PASSPHRASE=… pullguard keys import ~/.docker/trust/private/*.key";

#[derive(clap::Args, Debug)]
pub struct Dirs {
    /// Keys directory: index.toml with the pins, and private/ with signing keys.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_KEYS_DIR, global = true)]
    keys_dir: PathBuf,
    /// Trusted-state directory (the daemon's).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR, global = true)]
    state_dir: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Generate a signing key and store it encrypted.
    #[command(
        after_help = "Example:\n  PULLGUARD_KEY_PASSPHRASE=... pullguard keys generate --type ecdsa --role targets/releases\n\nExit codes: 0 generated and stored, 2 bad usage or the keys directory cannot be written."
    )]
    Generate {
        /// Algorithm.
        #[arg(long = "type", value_enum, default_value = "ecdsa")]
        algorithm: Algorithm,
        /// Role the key is for (targets, targets/releases, …).
        #[arg(long)]
        role: String,
        /// Repository the key is for.
        #[arg(long)]
        gun: Option<String>,
    },
    /// Import private keys written by Notary or Docker (~/.docker/trust/private/*.key).
    #[command(
        after_help = "Example:\n  PULLGUARD_IMPORT_PASSPHRASE=... PULLGUARD_KEY_PASSPHRASE=... pullguard keys import ~/.docker/trust/private/*.key\n\nExit codes: 0 every file imported, 1 some not (each listed, with why), 2 bad usage."
    )]
    Import {
        /// Key files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Role, when the file has no `role:` header.
        #[arg(long)]
        role: Option<String>,
        /// Repository, when the file has no `gun:` header.
        #[arg(long)]
        gun: Option<String>,
    },
    /// List stored signing keys and pinned anchors.
    #[command(
        after_help = "Example:\n  pullguard keys list --json\n\nExit codes: 0 listed, 2 the keys directory does not exist or cannot be read."
    )]
    List,
    /// Pin a repository's root: a certificate, a key ID, a CA, or allow trust on first use.
    #[command(
        after_help = "Examples:\n  pullguard keys pin 'registry.example.com/team/*' --ca team-ca.crt\n  pullguard keys pin registry.example.com/team/app --key-id <64 hex digits, as pullguard inspect prints them>\n\nExit codes: 0 pinned, 2 bad usage (pattern, file, short key ID) or the index cannot be written."
    )]
    Pin {
        /// Repository name, or a prefix ending in `*`.
        repository: String,
        /// Root certificate file.
        #[arg(long, value_name = "FILE")]
        cert: Vec<PathBuf>,
        /// Root key ID as root.json lists it.
        #[arg(long, value_name = "HEX")]
        key_id: Vec<String>,
        /// CA certificate that issues the root certificates.
        #[arg(long, value_name = "FILE")]
        ca: Vec<PathBuf>,
        /// Allow trust on first use for these repositories.
        #[arg(long)]
        tofu: bool,
    },
    /// Remove every pin of a repository pattern.
    #[command(
        after_help = "Example:\n  pullguard keys unpin 'registry.example.com/team/*'\n\nExit codes: 0 removed, 1 nothing was pinned for it, 2 the index cannot be read or written."
    )]
    Unpin {
        /// The pattern, as pinned.
        repository: String,
    },
    /// Show what is remembered about a repository.
    #[command(
        after_help = "Example:\n  pullguard keys show-state registry.example.com/team/app --json\n\nExit codes: 0 shown, 1 no state kept for the repository (`\"state\": null` with --json), 2 the state cannot be read."
    )]
    ShowState {
        /// Repository name.
        gun: String,
    },
    /// Forget a repository's trusted state (its next verification starts over), or the
    /// recorded clock.
    #[command(
        after_help = "Examples:\n  pullguard keys forget-state registry.example.com/team/app\n  pullguard keys forget-state --clock\n\nExit codes: 0 forgotten, 2 bad usage or the state cannot be written."
    )]
    ForgetState {
        /// Repository name.
        #[arg(required_unless_present = "clock")]
        gun: Option<String>,
        /// Forget the latest verification time instead (after fixing a wrong clock).
        #[arg(long)]
        clock: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Algorithm {
    Ed25519,
    Ecdsa,
}

/// The passphrase of a stored key for signing: from `env`, else from
/// `PULLGUARD_KEY_PASSPHRASE` (what `keys import` and `keys generate` stored it with),
/// else from the terminal.
pub(crate) fn passphrase_for(env: &str, prompt: &str) -> Result<Secret, String> {
    match std::env::var("PULLGUARD_KEY_PASSPHRASE") {
        Ok(v) if std::env::var_os(env).is_none() => Ok(Zeroizing::new(v.into_bytes())),
        _ => passphrase(env, prompt, false),
    }
}

fn passphrase(env: &str, prompt: &str, confirm: bool) -> Result<Secret, String> {
    if let Ok(v) = std::env::var(env) {
        return Ok(Zeroizing::new(v.into_bytes()));
    }
    let first = rpassword::prompt_password(prompt)
        .map_err(|e| format!("no passphrase: set {env} or run on a terminal ({e})"))?;
    if confirm {
        let again =
            rpassword::prompt_password("Repeat it: ").map_err(|e| format!("no passphrase: {e}"))?;
        if again != first {
            return Err("the passphrases differ".to_owned());
        }
    }
    if first.is_empty() {
        return Err("an empty passphrase would leave the key unprotected".to_owned());
    }
    Ok(Zeroizing::new(first.into_bytes()))
}

fn fail(json_out: bool, message: impl std::fmt::Display) -> ExitCode {
    if json_out {
        println!("{}", json!({"ok": false, "message": message.to_string()}));
    }
    eprintln!("pullguard: {message}");
    ExitCode::from(Exit::Usage)
}

pub fn run(dirs: &Dirs, command: &Command) -> ExitCode {
    match execute(dirs, command) {
        Ok(code) => code,
        Err(message) => fail(dirs.json, message),
    }
}

fn key_dir(dirs: &Dirs) -> Result<KeyDir, String> {
    KeyDir::open(&dirs.keys_dir.join("private")).map_err(|e| e.to_string())
}

fn key_json(k: &SigningKey, path: &Path) -> serde_json::Value {
    json!({"key_id": k.key_id(), "keytype": k.keytype(), "role": k.role, "gun": k.gun, "path": path})
}

fn execute(dirs: &Dirs, command: &Command) -> Result<ExitCode, String> {
    match command {
        Command::Generate {
            algorithm,
            role,
            gun,
        } => generate(dirs, *algorithm, role, gun.as_ref()),
        Command::Import { files, role, gun } => import(dirs, files, role.as_ref(), gun.as_ref()),
        Command::List => list(dirs),
        Command::Pin {
            repository,
            cert,
            key_id,
            ca,
            tofu,
        } => pin_items(dirs, repository, cert, key_id, ca, *tofu),
        Command::Unpin { repository } => unpin_repository(dirs, repository),
        Command::ShowState { gun } => show_state(dirs, gun),
        Command::ForgetState { gun, clock } => forget_state(dirs, gun.as_deref(), *clock),
    }
}

/// `keys generate`: a new signing key, stored encrypted.
fn generate(
    dirs: &Dirs,
    algorithm: Algorithm,
    role: &str,
    gun: Option<&String>,
) -> Result<ExitCode, String> {
    let alg = match algorithm {
        Algorithm::Ed25519 => KeyAlgorithm::Ed25519,
        Algorithm::Ecdsa => KeyAlgorithm::Ecdsa,
    };
    let pass = passphrase(
        "PULLGUARD_KEY_PASSPHRASE",
        "Passphrase for the new key: ",
        true,
    )?;
    let key = SigningKey::generate(alg, Some(role.to_owned()), gun.cloned());
    let path = key_dir(dirs)?
        .store(&key, &pass)
        .map_err(|e| e.to_string())?;
    if dirs.json {
        let mut v = key_json(&key, &path);
        v["public_pem"] = json!(key.public_pem());
        println!("{v}");
    } else {
        println!(
            "generated {} key {} for role {role}",
            key.keytype(),
            key.key_id()
        );
        println!("stored encrypted in {}", path.display());
        print!("{}", key.public_pem());
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys import`: every file tried, each imported or listed with why not.
fn import(
    dirs: &Dirs,
    files: &[PathBuf],
    role: Option<&String>,
    gun: Option<&String>,
) -> Result<ExitCode, String> {
    let import_pass = passphrase(
        "PULLGUARD_IMPORT_PASSPHRASE",
        "Passphrase of the key files: ",
        false,
    )?;
    let store_pass = passphrase(
        "PULLGUARD_KEY_PASSPHRASE",
        "Passphrase to store them with: ",
        true,
    )?;
    let dir = key_dir(dirs)?;
    let from_terminal = std::env::var_os("PULLGUARD_IMPORT_PASSPHRASE").is_none();
    let mut out = Vec::new();
    let mut failed = Vec::new();
    // Every file is tried: one wrong passphrase does not leave the operator
    // guessing which of the others were imported.
    for file in files {
        let label = file.display().to_string();
        let imported = std::fs::read(file)
            .map_err(|e| format!("cannot read {label}: {e}"))
            .and_then(|bytes| {
                match SigningKey::from_pem(&bytes, &import_pass, &label) {
                    // On a terminal, a file with its own passphrase gets asked for it.
                    Err(key_store::Error::BadPassphrase { .. }) if from_terminal => {
                        let own = passphrase(
                            "PULLGUARD_IMPORT_PASSPHRASE",
                            &format!("Passphrase of {label}: "),
                            false,
                        )?;
                        SigningKey::from_pem(&bytes, &own, &label)
                    }
                    other => other,
                }
                .map_err(|e| e.to_string())
            })
            .and_then(|mut key| {
                if key.role.is_none() {
                    key.role = role.cloned().or_else(|| legacy_role(file));
                }
                if key.gun.is_none() {
                    key.gun = gun.cloned();
                }
                let path = dir.store(&key, &store_pass).map_err(|e| e.to_string())?;
                Ok((key, path))
            });
        match imported {
            Ok((key, path)) => {
                if !dirs.json {
                    println!(
                        "imported {} key {} (role {}) from {label}",
                        key.keytype(),
                        key.key_id(),
                        key.role.as_deref().unwrap_or("unknown"),
                    );
                }
                out.push(key_json(&key, &path));
            }
            Err(e) => {
                if !dirs.json {
                    println!("NOT imported {label}: {e}");
                }
                failed.push(json!({"file": label, "error": e}));
            }
        }
    }
    if dirs.json {
        println!("{}", json!({"imported": out, "failed": failed}));
    } else if !failed.is_empty() {
        println!(
            "imported {} of {} files; {} not imported (see above)",
            out.len(),
            files.len(),
            failed.len()
        );
    }
    if !failed.is_empty() {
        return Ok(ExitCode::from(Exit::Refused));
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys list`: the signing keys and the pinned repositories.
fn list(dirs: &Dirs) -> Result<ExitCode, String> {
    // A mistyped --keys-dir would otherwise list "0 pins" and succeed.
    match std::fs::metadata(&dirs.keys_dir) {
        Ok(m) if m.is_dir() => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "cannot read keys directory {}: permission denied (it is root's: run this as root)",
                dirs.keys_dir.display()
            ))
        }
        _ => {
            return Err(format!(
                "keys directory {} does not exist (set it with --keys-dir; pullguardd reads [daemon] keys_dir)",
                dirs.keys_dir.display()
            ))
        }
    }
    let keys = if dirs.keys_dir.join("private").exists() {
        key_dir(dirs)?.list().map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let (anchors, warnings) = TrustAnchors::load(&dirs.keys_dir).map_err(|e| e.to_string())?;
    for w in &warnings {
        eprintln!("pullguard: warning: {w}");
    }
    if dirs.json {
        let keys: Vec<_> = keys
            .iter()
            .map(|k| json!({"key_id": k.id, "role": k.role, "gun": k.gun, "path": k.path}))
            .collect();
        let anchors: Vec<_> = anchors
            .all()
            .iter()
            .map(|a| {
                json!({"repository": a.repository, "root_certs": a.pins.certs.len(),
                       "root_key_ids": a.pins.key_ids, "root_cas": a.pins.cas.len(), "tofu": a.tofu})
            })
            .collect();
        println!(
            "{}",
            json!({"keys": keys, "anchors": anchors, "warnings": warnings.iter().map(ToString::to_string).collect::<Vec<_>>()})
        );
    } else {
        println!("signing keys ({}):", keys.len());
        for k in &keys {
            println!(
                "  {}  role {}  {}",
                k.id,
                k.role.as_deref().unwrap_or("-"),
                k.gun.as_deref().unwrap_or("")
            );
        }
        println!("pinned repositories ({}):", anchors.all().len());
        for a in anchors.all() {
            println!(
                "  {}  certs {}  key IDs {}  CAs {}{}",
                a.repository,
                a.pins.certs.len(),
                a.pins.key_ids.len(),
                a.pins.cas.len(),
                if a.tofu { "  TOFU allowed" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pins are read when pullguardd loads a policy generation, not watched: a pin added
/// or removed while it runs waits for a reload, and a silent wait would keep a revoked
/// pin in force.
const RELOAD_HINT: &str = "pullguardd applies pins when it loads the policy: reload it now (systemctl reload pullguardd, or SIGHUP)";

/// `keys pin`: root certificates, key IDs, CAs or TOFU for a repository pattern.
fn pin_items(
    dirs: &Dirs,
    repository: &str,
    cert: &[PathBuf],
    key_id: &[String],
    ca: &[PathBuf],
    tofu: bool,
) -> Result<ExitCode, String> {
    let mut specs: Vec<PinSpec> = cert.iter().cloned().map(PinSpec::Cert).collect();
    specs.extend(key_id.iter().cloned().map(PinSpec::KeyId));
    specs.extend(ca.iter().cloned().map(PinSpec::Ca));
    if tofu {
        specs.push(PinSpec::Tofu);
    }
    if specs.is_empty() {
        return Err("say what to pin: --cert, --key-id, --ca or --tofu".to_owned());
    }
    // Stored as the node names repositories: `docker.io/alpine` would pin nothing.
    let normal = policy::anchor_repository(repository)?;
    if normal != repository {
        eprintln!("pullguard: pinning {normal:?} (the node's name for {repository:?})");
    }
    let repository = normal.as_str();
    for spec in &specs {
        pin(&dirs.keys_dir, repository, spec).map_err(|e| e.to_string())?;
    }
    if dirs.json {
        println!(
            "{}",
            json!({"ok": true, "repository": repository, "pinned": specs.len()})
        );
    } else {
        println!(
            "pinned {} item(s) for {repository} in {}",
            specs.len(),
            dirs.keys_dir.display()
        );
        println!("{RELOAD_HINT}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys unpin`.
fn unpin_repository(dirs: &Dirs, repository: &str) -> Result<ExitCode, String> {
    // As written (an entry from before pins were stored in the node's spelling), and in
    // the node's spelling (what `keys pin` stores).
    let mut removed = unpin(&dirs.keys_dir, repository).map_err(|e| e.to_string())?;
    if let Ok(normal) = policy::anchor_repository(repository) {
        if normal != repository {
            removed |= unpin(&dirs.keys_dir, &normal).map_err(|e| e.to_string())?;
        }
    }
    if dirs.json {
        println!("{}", json!({"ok": removed, "repository": repository}));
    } else if removed {
        println!("removed the pins of {repository}");
        println!("{RELOAD_HINT}");
    } else {
        println!("{repository} had no pins");
    }
    if !removed {
        return Ok(ExitCode::from(Exit::Refused));
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys show-state`: the versions and TOFU record kept for a repository.
fn show_state(dirs: &Dirs, gun: &str) -> Result<ExitCode, String> {
    let store = StateStore::open(&dirs.state_dir).map_err(|e| e.to_string())?;
    let record = store.load(gun).map_err(|e| e.to_string())?;
    let last = store.last_verified().map_err(|e| e.to_string())?;
    match record {
        None => {
            if dirs.json {
                println!("{}", json!({"gun": gun, "state": null}));
            } else {
                println!("no trusted state for {gun}");
            }
            return Ok(ExitCode::from(Exit::Refused));
        }
        Some(r) if dirs.json => println!(
            "{}",
            json!({"gun": gun, "versions": r.trusted.versions, "last_verified": r.last_verified,
                   "tofu": r.tofu, "node_last_verified": last.map(|t| trust_core::fmt_time(&t)),
                   "file": store.path_for(gun)})
        ),
        Some(r) => {
            println!("{gun} (state in {})", store.path_for(gun).display());
            println!("  last verified {}", r.last_verified);
            for (role, v) in &r.trusted.versions {
                println!("  {role:<24} version {v}");
            }
            match &r.tofu {
                Some(t) => println!(
                    "  root trusted on first use at {} (root version {}, keys {})",
                    t.first_use,
                    t.root_version,
                    t.root_key_ids.join(", ")
                ),
                None => println!("  root trusted through pins or a trusted root"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys forget-state`: a repository's record, or the recorded clock.
fn forget_state(dirs: &Dirs, gun: Option<&str>, clock: bool) -> Result<ExitCode, String> {
    let store = StateStore::open(&dirs.state_dir).map_err(|e| e.to_string())?;
    let (what, done) = if clock {
        (
            "the recorded clock",
            store.forget_clock().map_err(|e| e.to_string())?,
        )
    } else {
        let gun = gun.unwrap_or_default();
        (gun, store.forget(gun).map_err(|e| e.to_string())?)
    };
    if dirs.json {
        println!("{}", json!({"ok": true, "forgot": done}));
    } else if done {
        println!("forgot {what}; the next verification starts over");
    } else {
        println!("nothing was stored for {what}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Notary 0.1 put the role in the file name: `<id>_<role>.key`.
fn legacy_role(file: &Path) -> Option<String> {
    let stem = file.file_stem()?.to_str()?;
    let (_, role) = stem.split_once('_')?;
    Some(role.to_owned())
}
