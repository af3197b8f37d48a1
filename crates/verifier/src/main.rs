//! pullguard-verifier: what containerd 2.x runs from its image-verifier `bin_dir` for
//! every pull through the transfer service (docs/contracts.md §1):
//!
//! ```text
//! pullguard-verifier -name REF -digest sha256:HEX -stdin-media-type application/vnd.oci.descriptor.v1+json
//! ```
//!
//! with the image's OCI descriptor as one JSON line on stdin. Exit 0 allows the pull,
//! anything else blocks it; stdout (≤ 32 KiB, trimmed) is the reason containerd shows.
//! It asks pullguardd over its unix socket and prints one line. It fails closed: bad
//! arguments, a bad descriptor, or an unreachable or slow daemon block the pull, unless
//! an operator has set a time-limited emergency override, which is then recorded.
//!
//! It reads no configuration beyond the socket path and asks in one blocking round trip
//! ([`api::oneshot`]; gRPC only for an older pullguardd), so that starting it costs
//! little more than an exec on every pull.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use api::codes::{EventKind, ReasonCode};
use api::VerifyRequest;
use verifier::input::{parse_args, read_descriptor, Args, DESCRIPTOR_MEDIA_TYPE};

use api::DEFAULT_SOCKET;
/// containerd's default per_verifier_timeout is 10 s: answer well inside it.
const DAEMON_DEADLINE: Duration = Duration::from_secs(5);
const CONNECT_DEADLINE: Duration = Duration::from_secs(1);
/// Text from whatever answers on the socket is capped before it is printed (containerd
/// reads 32 KiB of the verifier's output).
const MAX_DAEMON_TEXT: usize = 1000;
/// An emergency override: a file holding an RFC 3339 time until which pulls are allowed
/// when pullguardd cannot be reached. It expires by itself.
const DEFAULT_EMERGENCY_FILE: &str = "/etc/pullguard/fail-open-until";
const DEFAULT_EMERGENCY_LOG: &str = "/var/log/pullguard/verifier-fail-open.jsonl";

/// Exit codes: any non-zero blocks the pull; the values tell operators why.
const EXIT_REJECTED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_DAEMON: u8 = 3;

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

const HINT_DOWN: &str =
    "start it with `systemctl start pullguardd` (pulls fail closed while it is down)";
const HINT_SLOW: &str = "see `journalctl -u pullguardd`; a slow trust server is the usual cause";
const HINT_REFUSED: &str = "see `journalctl -u pullguardd` and the daemon's allowed_uids";

/// What went wrong talking to the daemon, and what to do about it.
struct Problem {
    what: String,
    hint: &'static str,
    /// No connection to the daemon could be made: the only case the emergency override
    /// covers. A daemon that answered (even with an error) or stalled is running, and
    /// whatever it refused must stay refused.
    unreachable: bool,
}

fn problem(what: String, hint: &'static str) -> Problem {
    Problem {
        what,
        hint,
        unreachable: false,
    }
}

/// How far ahead an emergency override may reach: an override forgotten in place must
/// not leave nodes open for months.
const EMERGENCY_MAX_AHEAD: time::Duration = time::Duration::days(7);

fn request(args: &Args) -> VerifyRequest {
    VerifyRequest {
        image: args.name.clone(),
        digest: args.digest.clone(),
        media_type: args.media_type.clone(),
        dry_run: false,
        source: "containerd-bindir".to_owned(),
    }
}

/// What the one-shot framing got.
enum Oneshot {
    Verdict(Box<api::VerifyResponse>),
    /// An older pullguardd: ask over gRPC.
    NotSpoken,
    /// The daemon's listen queue is full: it is running, but slow (or flooded). gRPC is
    /// tried, and whatever it says, this is never the "daemon down" of the override.
    QueueFull,
}

/// Asks over the one-shot framing ([`api::oneshot`]): one blocking connect, write and
/// read, no runtime. When the daemon does not speak it (an older pullguardd) or its
/// listen queue is full, [`ask`] asks over gRPC, with its own deadlines.
fn ask_oneshot(socket: &Path, args: &Args) -> Result<Oneshot, Problem> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let down = |e: &dyn std::fmt::Display| Problem {
        what: format!("cannot reach pullguardd on {}: {e}", socket.display()),
        hint: HINT_DOWN,
        unreachable: true,
    };
    // Non-blocking, so that a daemon whose queue is full cannot hold the connect.
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| down(&e))?;
    let addr = SocketAddrUnix::new(socket).map_err(|e| down(&e))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::AGAIN) => return Ok(Oneshot::QueueFull),
        Err(e) => return Err(down(&std::io::Error::from(e))),
    }
    let stream = std::os::unix::net::UnixStream::from(fd);
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(DAEMON_DEADLINE)))
        .and_then(|()| stream.set_write_timeout(Some(DAEMON_DEADLINE)));
    if let Err(e) = setup {
        return Err(down(&e));
    }
    match api::oneshot::call(&stream, &request(args)) {
        Ok(api::oneshot::Reply::Verdict(v)) => Ok(Oneshot::Verdict(v)),
        Ok(api::oneshot::Reply::NotSpoken) => Ok(Oneshot::NotSpoken),
        Ok(api::oneshot::Reply::Status(_, message)) => Err(problem(
            format!(
                "pullguardd refused the request: {}",
                api::capped(&message, MAX_DAEMON_TEXT)
            ),
            HINT_REFUSED,
        )),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(problem(
                format!("pullguardd did not answer within {DAEMON_DEADLINE:?}"),
                HINT_SLOW,
            ))
        }
        // Connected, then the exchange broke: the daemon is running, so this is no
        // case for the emergency override.
        Err(e) => Err(problem(
            format!(
                "the exchange with pullguardd on {} broke: {e}",
                socket.display()
            ),
            HINT_SLOW,
        )),
    }
}

async fn ask(socket: PathBuf, args: &Args) -> Result<api::VerifyResponse, Problem> {
    let client = api::connect(&socket, CONNECT_DEADLINE);
    let mut client = tokio::time::timeout(CONNECT_DEADLINE, client)
        .await
        .map_err(|_| {
            problem(
                format!(
                    "pullguardd did not accept a connection on {} within {CONNECT_DEADLINE:?}",
                    socket.display()
                ),
                HINT_SLOW,
            )
        })?
        .map_err(|e| Problem {
            what: format!(
                "cannot reach pullguardd on {}: {}",
                socket.display(),
                api::error_chain(&e)
            ),
            hint: HINT_DOWN,
            unreachable: true,
        })?;
    match tokio::time::timeout(DAEMON_DEADLINE, client.verify(request(args))).await {
        Err(_) => Err(problem(
            format!("pullguardd did not answer within {DAEMON_DEADLINE:?}"),
            HINT_SLOW,
        )),
        Ok(Err(status)) => Err(problem(
            format!(
                "pullguardd refused the request: {}",
                api::capped(status.message(), MAX_DAEMON_TEXT)
            ),
            HINT_REFUSED,
        )),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

/// The emergency override: `Ok(None)` when no file is set or it has expired, `Err` with
/// the reason when a file is there but may not be honoured.
fn emergency_until() -> Result<Option<time::OffsetDateTime>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let path = env_path("PULLGUARD_EMERGENCY_FILE", DEFAULT_EMERGENCY_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // Checked on the open file, so that what is checked is what is read.
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 || !meta.is_file() {
        return Err(format!(
            "{} is ignored: it must be a file owned by root and writable by root alone (owner uid {}, mode {:o})",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    let mut text = String::new();
    file.take(256)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let until =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("{} is ignored: not an RFC 3339 time ({e})", path.display()))?;
    let now = time::OffsetDateTime::now_utc();
    if until > now + EMERGENCY_MAX_AHEAD {
        return Err(format!(
            "{} is ignored: {until} is more than 7 days ahead; set a time within a week",
            path.display()
        ));
    }
    Ok((until > now).then_some(until))
}

/// Records a fail-open decision (or a refused override) where the daemon's events would
/// have gone.
fn record_fail_open(args: &Args, event: EventKind, problem: &str) -> Result<(), String> {
    use std::io::Write as _;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let line = serde_json::json!({
        "time": now, "event": event.as_str(), "image": args.name, "digest": args.digest,
        "reason": ReasonCode::DaemonUnreachable.as_str(), "message": problem, "source": "pullguard-verifier",
    });
    let path = env_path("PULLGUARD_EMERGENCY_LOG", DEFAULT_EMERGENCY_LOG);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{line}")
        .and_then(|()| f.sync_data())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // Help is for people; containerd never asks for it. It still exits non-zero: were it
    // ever in containerd's argv, the pull must be blocked, not allowed.
    if argv
        .iter()
        .any(|a| matches!(a.as_str(), "-h" | "-help" | "--help"))
    {
        println!("pullguard-verifier: containerd 2.x's image verifier (bindir). containerd runs it as\n  pullguard-verifier -name REF -digest sha256:HEX -stdin-media-type {DESCRIPTOR_MEDIA_TYPE}\nwith the image's descriptor on stdin, and asks pullguardd (PULLGUARD_SOCKET, default {DEFAULT_SOCKET}).\nExit codes: 0 allowed; 1 rejected; 2 bad arguments or descriptor (and this help); 3 pullguardd unreachable or slow. Only 0 lets a pull through.");
        return ExitCode::from(EXIT_USAGE);
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            println!("pullguard: blocked: {e}; expected -name REF -digest DIGEST -stdin-media-type {DESCRIPTOR_MEDIA_TYPE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = read_descriptor(&args, std::io::stdin().lock()) {
        println!("pullguard: blocked {}: {e}", args.name);
        return ExitCode::from(EXIT_USAGE);
    }
    let socket = env_path("PULLGUARD_SOCKET", DEFAULT_SOCKET);
    let answer = match ask_oneshot(&socket, &args) {
        Ok(Oneshot::Verdict(v)) => Ok(*v),
        Err(p) => Err(p),
        // An older pullguardd, or a full queue: gRPC, with a runtime for it.
        Ok(fallback) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(ask(socket, &args)).map_err(|mut p| {
                // gRPC's connect fails at once on the same full queue, as if nothing
                // listened: a running daemon that is slow must not open the override.
                if matches!(fallback, Oneshot::QueueFull) && p.unreachable {
                    p.unreachable = false;
                    p.what = format!("{} (its connection queue is full)", p.what);
                    p.hint = HINT_SLOW;
                }
                p
            }),
            Err(e) => {
                println!("pullguard: blocked {}: cannot start: {e}", args.name);
                return ExitCode::from(EXIT_DAEMON);
            }
        },
    };
    match answer {
        Ok(v) if v.allowed && v.reason.is_empty() => {
            println!(
                "pullguard: allowed {} ({}, signed in {}, rule {}, policy gen {})",
                v.image,
                if v.digest.is_empty() {
                    "no signature required".to_owned()
                } else {
                    v.digest.clone()
                },
                if v.role.is_empty() {
                    "-"
                } else {
                    v.role.as_str()
                },
                v.rule,
                v.policy_generation
            );
            ExitCode::SUCCESS
        }
        Ok(v) if v.allowed => {
            println!(
                "pullguard: audit only, would reject {}: {} [{}] (rule {}, policy gen {})",
                v.image, v.message, v.reason, v.rule, v.policy_generation
            );
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let image = if v.image.is_empty() {
                &args.name
            } else {
                &v.image
            };
            let fix = if v.remedy.is_empty() {
                String::new()
            } else {
                format!("; to fix: {}", v.remedy)
            };
            println!(
                "pullguard: rejected {image}: {} [{}]{fix} (rule {}, policy gen {}, event {})",
                v.message,
                v.reason,
                if v.rule.is_empty() {
                    "-"
                } else {
                    v.rule.as_str()
                },
                v.policy_generation,
                v.event_id
            );
            ExitCode::from(EXIT_REJECTED)
        }
        Err(p) if !p.unreachable => {
            println!("pullguard: blocked {}: {}; {}", args.name, p.what, p.hint);
            ExitCode::from(EXIT_DAEMON)
        }
        Err(p) => match emergency_until() {
            Ok(Some(until)) => match record_fail_open(&args, EventKind::PullFailOpen, &p.what) {
                Ok(()) => {
                    println!(
                        "pullguard: FAIL-OPEN allowed {} unverified: {}; emergency override until {until} (recorded)",
                        args.name, p.what
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("pullguard: blocked {}: {}; the emergency override is set but cannot be recorded ({e})", args.name, p.what);
                    ExitCode::from(EXIT_DAEMON)
                }
            },
            Ok(None) => {
                println!("pullguard: blocked {}: {}; {}", args.name, p.what, p.hint);
                ExitCode::from(EXIT_DAEMON)
            }
            Err(why) => {
                let recorded = match record_fail_open(&args, EventKind::FailOpenRefused, &why) {
                    Ok(()) => "recorded".to_owned(),
                    Err(e) => format!("cannot be recorded: {e}"),
                };
                println!(
                    "pullguard: blocked {}: {}; emergency override refused: {why} ({recorded}); {}",
                    args.name, p.what, p.hint
                );
                ExitCode::from(EXIT_DAEMON)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn parses_containerds_argv_and_go_flag_forms() {
        let a = parse_args(&argv(&[
            "-name",
            "alpine:3",
            "-digest",
            "sha256:ab",
            "-stdin-media-type",
            DESCRIPTOR_MEDIA_TYPE,
        ]))
        .unwrap();
        assert_eq!(
            (a.name.as_str(), a.digest.as_str()),
            ("alpine:3", "sha256:ab")
        );
        let a = parse_args(&argv(&["--name=x", "-digest=sha256:cd"])).unwrap();
        assert_eq!((a.name.as_str(), a.digest.as_str()), ("x", "sha256:cd"));
        for bad in [
            &["-name"][..],
            &["-name", "x"],
            &["-name", "x", "-digest", ""],
            &["-digest", "x"],
            &["-evil", "1", "-name", "x"],
            &["x"],
        ] {
            assert!(parse_args(&argv(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn descriptor_must_match_the_digest() {
        let a = parse_args(&argv(&["-name", "x", "-digest", "sha256:ab"])).unwrap();
        assert!(read_descriptor(
            &a,
            &br#"{"mediaType":"m","digest":"sha256:ab","size":1}"#[..]
        )
        .is_ok());
        assert!(read_descriptor(&a, &br#"{"digest":"sha256:cd"}"#[..]).is_err());
        assert!(read_descriptor(&a, &b"\n"[..]).is_err(), "no descriptor");
        assert!(read_descriptor(&a, &b"not json"[..]).is_err());
        assert!(read_descriptor(&a, &vec![b' '; 70_000][..]).is_err());
    }
}
