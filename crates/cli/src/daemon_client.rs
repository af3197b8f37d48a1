//! `pullguard verify IMAGE` and `pullguard status`: questions to the running pullguardd.
//!
//! Exit codes: 0 allowed (verify) or answered (status), 1 rejected, 2 bad usage,
//! 3 the daemon cannot be reached.

use crate::exit::Exit;
use api::codes::ReasonCode;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use api::pullguard_client::PullguardClient;
use serde_json::json;

pub use api::DEFAULT_SOCKET;
const VERIFIER_DIR: &str = "/opt/containerd/image-verifier/bin";

pub const VERIFY_EXAMPLES: &str = "Examples:
  pullguard verify registry.example.com/team/app:v3
  pullguard verify registry.example.com/team/app:v3 --digest sha256:3f7b... --json
  pullguard verify alpine:3.20 --policy new-policy.toml          # offline, no daemon

Exit codes: 0 allowed, 1 rejected (or audit mode would reject), 2 bad usage or policy,
3 pullguardd cannot be reached.";

pub const STATUS_EXAMPLES: &str = "Examples:
  pullguard status
  pullguard status --json | jq .watcher
  pullguard status --json | jq .nri

Exit codes: 0 answered (problems are listed, not an error), 3 pullguardd cannot be reached.";

/// The containerd 2.x hook on this node: is pullguard-verifier installed, alone and
/// executable in the verifier directory? (Any other file there blocks every pull; a
/// missing or empty directory lets every pull through.)
fn hook_state(dir: &Path) -> (bool, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(e) => e.filter_map(Result::ok).collect(),
        Err(_) => {
            return (
                false,
                format!("{} does not exist: containerd 2.x runs no verifier (fine on 1.x, where the watcher covers pulls)", dir.display()),
            )
        }
    };
    let ours = dir.join("pullguard-verifier");
    let others: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "pullguard-verifier")
        .collect();
    let executable =
        std::fs::metadata(&ours).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    match (executable, others.is_empty()) {
        (true, true) => (true, format!("{} installed", ours.display())),
        (true, false) => (
            false,
            format!("{} installed, but the directory also holds {}: containerd runs those too, and a non-executable one blocks every pull", ours.display(), others.join(", ")),
        ),
        (false, _) => (
            false,
            format!("{} is missing or not executable: containerd 2.x pulls are not verified", ours.display()),
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Image reference, as you would pull it.
    image: String,
    /// The manifest or index digest to check the tag against (sha256:HEX).
    #[arg(long, value_parser = sha256_digest)]
    digest: Option<String>,
    /// pullguardd's socket (else PULLGUARD_SOCKET, else the `[daemon] socket` of
    /// /etc/pullguard/pullguard.toml, else /run/pullguard/pullguard.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Evaluate offline with this policy file instead of asking the daemon (fetches
    /// trust data itself; the node's trusted state is not used or changed).
    #[arg(long, value_name = "FILE", conflicts_with = "socket")]
    policy: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// pullguardd's socket (else PULLGUARD_SOCKET, else the `[daemon] socket` of
    /// /etc/pullguard/pullguard.toml, else /run/pullguard/pullguard.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// containerd 2.x's image-verifier directory, checked on this node.
    #[arg(long, value_name = "DIR", default_value = VERIFIER_DIR)]
    verifier_dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Where pullguardd listens, and how that was found: `--socket`, then the environment
/// variable the verifier also reads, then the daemon's own configuration, then the
/// default. Every command that talks to the daemon looks it up this way.
pub fn find_socket(flag: Option<&Path>) -> (PathBuf, String) {
    find_socket_in(flag, Path::new(crate::policy_cmd::DEFAULT_POLICY))
}

fn find_socket_in(flag: Option<&Path>, config: &Path) -> (PathBuf, String) {
    if let Some(p) = flag {
        return (p.to_path_buf(), "--socket".to_owned());
    }
    if let Some(p) = std::env::var_os("PULLGUARD_SOCKET").filter(|v| !v.is_empty()) {
        return (PathBuf::from(p), "PULLGUARD_SOCKET".to_owned());
    }
    if let Ok(policy) = policy::Policy::load(config) {
        return (
            policy.daemon.socket,
            format!("[daemon] socket in {}", config.display()),
        );
    }
    (PathBuf::from(DEFAULT_SOCKET), "the default".to_owned())
}

async fn connect(
    flag: Option<&Path>,
) -> Result<PullguardClient<tonic::transport::Channel>, String> {
    let (socket, from) = find_socket(flag);
    let socket = socket.as_path();
    api::connect(socket, Duration::from_secs(2))
        .await
        .map_err(|e| {
            if denied(&e) {
                return format!(
                    "may not open pullguardd's socket {} (from {from}): permission denied to uid {} — pullguardd answers root, its own user and the uids and gids in [daemon] allowed_uids / allowed_gids; run this as root (sudo), or add your gid to allowed_gids (the socket then belongs to that group) and reload",
                    socket.display(),
                    rustix::process::getuid().as_raw()
                );
            }
            format!(
                "cannot reach pullguardd on {} (from {from}: {}); is it running (`systemctl status pullguardd`)?",
                socket.display(),
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            )
        })
}

/// Whether connecting failed because the socket (or its directory) is not ours to open.
fn denied(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A connection to pullguardd found as [`find_socket`] finds it, with the error as text.
pub async fn connect_quietly() -> Result<PullguardClient<tonic::transport::Channel>, String> {
    connect(None).await
}

pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| format!("cannot start: {e}"))
}

fn unreachable(json_out: bool, message: &str) -> ExitCode {
    crate::exit::fail(
        Exit::Unreachable,
        json_out,
        ReasonCode::DaemonUnreachable.as_str(),
        message,
    )
}

pub fn verify(args: &VerifyArgs) -> ExitCode {
    let request = api::VerifyRequest {
        image: args.image.clone(),
        digest: args.digest.clone().unwrap_or_default(),
        media_type: String::new(),
        dry_run: true,
        source: "cli".to_owned(),
    };
    if let Some(file) = &args.policy {
        let answer = block_on(async {
            let offline = daemon::offline::Offline::load(file)?;
            for note in offline.notes() {
                eprintln!("pullguard: note: {note}");
            }
            Ok::<_, String>(offline.verify(&request.image, args.digest.as_deref()).await)
        })
        .and_then(|r| r);
        return match answer {
            Ok(v) => print_verdict(&v, args.json, "offline, policy file"),
            Err(e) => {
                if args.json {
                    println!("{}", json!({"error": "bad_policy", "message": e}));
                }
                eprintln!("pullguard: {e}");
                ExitCode::from(Exit::Usage)
            }
        };
    }
    let answer = block_on(async {
        let mut c = connect(args.socket.as_deref()).await?;
        c.verify(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.message().to_owned())
    })
    .and_then(|r| r);
    match answer {
        Ok(v) => print_verdict(&v, args.json, "dry run: nothing was enforced"),
        Err(e) => unreachable(args.json, &e),
    }
}

/// "expires T (issued about D ago)", taking notary-server's 14-day timestamp lifetime.
fn timestamp_line(expires: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(expires, &Rfc3339).ok()?;
    let issued = t - time::Duration::days(14);
    let age = time::OffsetDateTime::now_utc() - issued;
    Some(format!(
        "expires {} (issued about {} ago, if the server uses notary-server's 14-day lifetime)",
        trust_core::fmt_time(&t),
        trust_core::human_duration(age)
    ))
}

/// Prints a verdict; exit 0 allowed, 1 rejected.
pub fn print_verdict(v: &api::VerifyResponse, json_out: bool, how: &str) -> ExitCode {
    if json_out {
        println!(
            "{}",
            json!({"allowed": v.allowed, "image": v.image, "gun": v.gun, "rule": v.rule, "mode": v.mode,
                   "reason": v.reason, "message": v.message, "digest": v.digest, "role": v.role,
                   "signers": v.signers, "policy_generation": v.policy_generation, "event_id": v.event_id,
                   "dry_run": true, "remedy": v.remedy,
                   "trust_server": v.trust_server, "timestamp_expires": v.timestamp_expires,
                   "proof": v.proof,
                   "proofs": v.proofs.iter().map(|p| json!({"proof": p.proof, "passed": p.passed,
                       "reason": p.reason, "message": p.message, "source": p.source,
                       "expires": p.expires})).collect::<Vec<_>>()})
        );
    } else {
        let verdict = match (v.allowed, v.reason.is_empty()) {
            (true, true) => "allowed".to_owned(),
            (true, false) => format!("allowed by audit mode; would be rejected [{}]", v.reason),
            (false, _) => format!("rejected [{}]", v.reason),
        };
        println!("image       {}", v.image);
        // A reference that does not parse has no repository and meets no rule.
        if !v.gun.is_empty() {
            println!("repository  {}", v.gun);
        }
        if !v.rule.is_empty() {
            println!(
                "rule        {} ({}, policy generation {})",
                v.rule, v.mode, v.policy_generation
            );
        }
        if !v.trust_server.is_empty() {
            println!("trust server {}", v.trust_server);
        }
        if !v.digest.is_empty() {
            let proof = if v.proof.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.proof)
            };
            println!("signed      {} in {}{proof}", v.digest, v.role);
            println!("signers     {}", v.signers.join(", "));
        }
        if let Some(line) = timestamp_line(&v.timestamp_expires) {
            println!("timestamp   {line}");
        }
        // Each kind of proof asked, when there is more to say than the lines above.
        if v.proofs.len() > 1 || v.proofs.iter().any(|p| !p.passed) {
            for p in &v.proofs {
                if p.passed {
                    println!("proof       {}: passed, {}", p.proof, p.message);
                } else {
                    println!(
                        "proof       {}: failed [{}] {}",
                        p.proof, p.reason, p.message
                    );
                }
            }
        }
        if !v.message.is_empty() {
            println!("why         {}", v.message);
        }
        if !v.remedy.is_empty() {
            println!("to fix      {}", v.remedy);
        }
        if v.event_id.is_empty() {
            println!("verdict     {verdict} ({how})");
        } else {
            println!("verdict     {verdict} ({how}; event {})", v.event_id);
        }
    }
    if v.allowed && v.reason.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(Exit::Refused)
    }
}

pub fn status(args: &StatusArgs) -> ExitCode {
    let answer = block_on(async {
        let mut c = connect(args.socket.as_deref()).await?;
        c.status(api::StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.message().to_owned())
    })
    .and_then(|r| r);
    let s = match answer {
        Ok(s) => s,
        Err(e) => return unreachable(args.json, &e),
    };
    let (hook_ok, hook) = hook_state(&args.verifier_dir);
    if args.json {
        println!(
            "{}",
            json!({"policy_generation": s.policy_generation, "policy_file": s.policy_file,
                   "policy_version": s.policy_version, "last_reload": s.last_reload,
                   "cached_repositories": s.cached_repositories, "verdicts": s.verdicts,
                   "events_dropped": s.events_dropped, "last_errors": s.last_errors,
                   "watcher": s.watcher, "images_checked": s.images_checked, "images_removed": s.images_removed,
                   "fetches": s.fetches, "cache_hits": s.cache_hits, "fetch_millis": s.fetch_millis, "nri": s.nri,
                   "events_file": s.events_file, "sigstore_root": s.sigstore_root,
                   "kubernetes_events": s.kubernetes_events, "otlp": s.otlp,
                   "verifier_hook": {"ok": hook_ok, "state": hook}})
        );
    } else {
        println!(
            "policy       {} (generation {})",
            s.policy_file, s.policy_generation
        );
        println!("version      {}", s.policy_version);
        println!("last reload  {}", s.last_reload);
        println!("verdicts     {}", s.verdicts);
        println!("cached repos {}", s.cached_repositories);
        println!(
            "fetches      {} ({} ms in all); {} answered from memory",
            s.fetches,
            s.fetch_millis,
            api::plural(s.cache_hits, "verdict")
        );
        println!("verifier     {hook}");
        println!("watcher      {}", s.watcher);
        println!("nri          {}", s.nri);
        println!("k8s events   {}", s.kubernetes_events);
        println!("otlp         {}", s.otlp);
        println!(
            "images       {} checked, {} removed by the watcher",
            s.images_checked, s.images_removed
        );
        println!("events       {}", s.events_file);
        println!("sigstore     {}", s.sigstore_root);
        println!(
            "events lost  {} (by slow sinks; the events file has them all)",
            s.events_dropped
        );
        for e in &s.last_errors {
            println!("error        {e}");
        }
    }
    ExitCode::SUCCESS
}

/// `--digest`: `sha256:` and 64 hex digits; anything else is a usage error (exit 2), not
/// a verdict about the image.
fn sha256_digest(s: &str) -> Result<String, String> {
    let ok = s
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{:?} is not a digest: give sha256: and 64 hex digits (the image's manifest or index digest)",
            s.chars().take(80).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_found_in_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pullguard.toml");
        std::fs::write(
            &config,
            "[daemon]\nsocket = \"/srv/pg.sock\"\n[[rule]]\nmatch = \"**\"\nrequire = \"reject\"\n",
        )
        .unwrap();
        let flag = Path::new("/flag.sock");
        assert_eq!(find_socket_in(Some(flag), &config).0, flag);
        // PULLGUARD_SOCKET is process-wide: asserted in crates/cli/tests/daemon_commands.rs.
        if std::env::var_os("PULLGUARD_SOCKET").is_none() {
            let (p, from) = find_socket_in(None, &config);
            assert_eq!(p, Path::new("/srv/pg.sock"));
            assert!(from.contains("[daemon] socket"), "{from}");
            let (p, from) = find_socket_in(None, &dir.path().join("absent.toml"));
            assert_eq!(
                (p.to_str(), from.as_str()),
                (Some(DEFAULT_SOCKET), "the default")
            );
        }
    }
}
