//! pullguard-verifier run exactly as containerd 2.x runs a bindir verifier
//! (pkg/imageverifier/bindir/bindir.go): argv `-name REF -digest DIGEST
//! -stdin-media-type application/vnd.oci.descriptor.v1+json`, the descriptor as one JSON
//! line on stdin, stdout read to EOF (at most 32 KiB, trimmed), exit code 0 allows, the
//! process group killed after per_verifier_timeout (10 s). Against a real pullguardd and
//! a real notary-server signed with the real notary CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{bin, Daemon, Notary, World};

const APP: &str = "registry.test/pullguard/app";
const TIMEOUT: Duration = Duration::from_secs(10);
const OUTPUT_LIMIT: usize = 32 * 1024;

struct Run {
    code: Option<i32>,
    reason: String,
    took: Duration,
}

/// What containerd does, step by step.
fn containerd_runs(
    socket: &Path,
    name: &str,
    digest: &str,
    stdin: &[u8],
    env: &[(&str, &Path)],
) -> Run {
    let started = Instant::now();
    let mut cmd = Command::new(bin("pullguard-verifier"));
    cmd.args([
        "-name",
        name,
        "-digest",
        digest,
        "-stdin-media-type",
        "application/vnd.oci.descriptor.v1+json",
    ])
    .env("PULLGUARD_SOCKET", socket)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut out).take(OUTPUT_LIMIT as u64).read_to_end(&mut buf);
        buf
    });
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = reader.join().unwrap();
    Run {
        code,
        reason: String::from_utf8_lossy(&stdout).trim().to_owned(),
        took: started.elapsed(),
    }
}

/// The descriptor as containerd encodes it (Go's json.Encoder adds a newline).
fn descriptor(digest: &str) -> Vec<u8> {
    format!("{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{digest}\",\"size\":401}}\n").into_bytes()
}

/// An emergency override file and the verifier's fail-open log, in a temp dir.
struct Override {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Override {
    fn new() -> Override {
        let dir = tempfile::tempdir().unwrap();
        Override {
            file: dir.path().join("fail-open-until"),
            log: dir.path().join("fail-open.jsonl"),
            _dir: dir,
        }
    }

    fn env(&self) -> [(&'static str, &Path); 2] {
        [
            ("PULLGUARD_EMERGENCY_FILE", self.file.as_path()),
            ("PULLGUARD_EMERGENCY_LOG", self.log.as_path()),
        ]
    }
}

fn in_an_hour() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn signed_world(notary: &Notary) -> (World, Daemon) {
    let world = World::new();
    world.write_config(&format!(
        "{}{}[[rule]]\nname = \"prod\"\nmatch = \"registry.test/pullguard/**\"\n\n[[rule]]\nname = \"rest\"\nmatch = \"**\"\nrequire = \"reject\"\n",
        world.daemon_section(""),
        World::server_section(notary)
    ));
    let daemon = Daemon::start(&world);
    (world, daemon)
}

#[test]
fn allows_signed_and_rejects_with_a_reason_containerd_shows() {
    let notary = Notary::start();
    let (world, _daemon) = signed_world(&notary);
    let d2 = notary.get("DIGEST_V2");

    let ok = containerd_runs(
        &world.socket,
        &format!("{APP}:v2"),
        d2,
        &descriptor(d2),
        &[],
    );
    assert_eq!(ok.code, Some(0), "{}", ok.reason);
    assert!(
        ok.reason.starts_with(&format!(
            "pullguard: allowed {APP}:v2 ({d2}, signed in targets/releases, rule prod"
        )),
        "{}",
        ok.reason
    );

    // The tag exists nowhere in the trust data.
    let d = format!("sha256:{}", "1".repeat(64));
    let no = containerd_runs(
        &world.socket,
        &format!("{APP}:v3"),
        &d,
        &descriptor(&d),
        &[],
    );
    assert_eq!(no.code, Some(1));
    assert!(
        no.reason.starts_with(&format!(
            "pullguard: rejected {APP}:v3: tag \"v3\" is not signed in targets/releases or targets"
        )),
        "{}",
        no.reason
    );
    // The reason, what to do, the rule: what containerd shows whoever pulled.
    assert!(
        no.reason
            .contains("[unknown_tag]; to fix: sign this tag in targets/releases or targets"),
        "{}",
        no.reason
    );
    assert!(
        no.reason.contains("(rule prod, policy gen 1"),
        "{}",
        no.reason
    );
    assert!(
        no.reason.len() < OUTPUT_LIMIT && !no.reason.contains('\n'),
        "one line"
    );

    // Signed tag, another digest: a swapped manifest.
    let swapped = containerd_runs(
        &world.socket,
        &format!("{APP}:v2"),
        notary.get("DIGEST_V1"),
        &descriptor(notary.get("DIGEST_V1")),
        &[],
    );
    assert_eq!(swapped.code, Some(1), "{}", swapped.reason);
    assert!(
        swapped.reason.contains("[digest_mismatch]"),
        "{}",
        swapped.reason
    );

    // Another registry: the policy rejects it.
    let other = containerd_runs(
        &world.socket,
        "docker.io/library/alpine:3.20",
        &d,
        &descriptor(&d),
        &[],
    );
    assert_eq!(other.code, Some(1));
    assert!(
        other
            .reason
            .contains("[rejected_by_policy]; to fix: the policy forbids this image"),
        "{}",
        other.reason
    );
    assert!(other.reason.contains("(rule rest"), "{}", other.reason);
    assert_eq!(world.events_of("pull.rejected").len(), 3);
}

#[test]
fn daemon_down_fails_closed_and_says_what_to_do() {
    let world = World::new(); // no daemon
    let d = format!("sha256:{}", "2".repeat(64));
    let r = containerd_runs(&world.socket, "alpine:3.20", &d, &descriptor(&d), &[]);
    assert_eq!(r.code, Some(3), "{}", r.reason);
    assert!(
        r.reason.contains("cannot reach pullguardd")
            && r.reason.contains("systemctl start pullguardd"),
        "{}",
        r.reason
    );
    assert!(r.took < Duration::from_secs(3), "{:?}", r.took);
    // Each cause once: hyper's error already carries the OS error's text.
    assert_eq!(r.reason.matches("os error").count(), 1, "{}", r.reason);
}

#[test]
fn slow_daemon_hits_the_verifiers_own_deadline_before_containerds() {
    // A socket that accepts and never answers: the verifier must give up by itself.
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("slow.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let d = format!("sha256:{}", "3".repeat(64));
    let r = containerd_runs(&socket, "alpine:3.20", &d, &descriptor(&d), &[]);
    assert_eq!(
        r.code,
        Some(3),
        "exited by itself, not killed: {}",
        r.reason
    );
    assert!(r.took < Duration::from_secs(8), "{:?}", r.took);
    assert!(r.reason.contains("did not answer within"), "{}", r.reason);
}

#[test]
fn garbage_and_oversized_stdin_and_bad_argv_are_blocked() {
    let world = World::new();
    let d = format!("sha256:{}", "4".repeat(64));
    let garbage = containerd_runs(&world.socket, "alpine", &d, b"\x00\xffnot json", &[]);
    assert_eq!(garbage.code, Some(2));
    assert!(garbage.reason.contains("not JSON"), "{}", garbage.reason);

    let huge = containerd_runs(&world.socket, "alpine", &d, &vec![b'{'; 1024 * 1024], &[]);
    assert_eq!(huge.code, Some(2));
    assert!(
        huge.reason.contains("larger than 65536 bytes"),
        "{}",
        huge.reason
    );

    let other = format!("sha256:{}", "5".repeat(64));
    let mismatch = containerd_runs(&world.socket, "alpine", &d, &descriptor(&other), &[]);
    assert_eq!(mismatch.code, Some(2));
    assert!(
        mismatch.reason.contains("differs from -digest"),
        "{}",
        mismatch.reason
    );

    let out = Command::new(bin("pullguard-verifier"))
        .args(["-image", "alpine"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown flag -image"));
}

#[test]
fn emergency_override_allows_when_down_and_is_recorded() {
    let world = World::new();
    let o = Override::new();
    let (file, log) = (o.file.clone(), o.log.clone());
    let env = o.env();
    let d = format!("sha256:{}", "6".repeat(64));

    // Expired override: still closed.
    std::fs::write(&file, "2020-01-01T00:00:00Z").unwrap();
    assert_eq!(
        containerd_runs(&world.socket, "alpine", &d, &descriptor(&d), &env).code,
        Some(3)
    );
    // Valid override: open, loudly, and on record.
    std::fs::write(&file, in_an_hour()).unwrap();
    let r = containerd_runs(&world.socket, "alpine", &d, &descriptor(&d), &env);
    assert_eq!(r.code, Some(0), "{}", r.reason);
    assert!(
        r.reason
            .starts_with("pullguard: FAIL-OPEN allowed alpine unverified"),
        "{}",
        r.reason
    );
    let recorded: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (recorded["event"].as_str(), recorded["digest"].as_str()),
        (Some("pull.fail_open"), Some(d.as_str()))
    );
}

/// With the override set, requests the running daemon refuses (a name over 4096 bytes,
/// a sha512 digest, an image a reject-everything rule matches) stay blocked: before the
/// fix any gRPC error counted as "daemon down" and fell open.
#[test]
fn emergency_override_does_not_open_for_requests_a_running_daemon_refuses() {
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"nothing\"\nmatch = \"**\"\nrequire = \"reject\"\n",
        world.daemon_section("")
    ));
    let _daemon = Daemon::start(&world);
    let o = Override::new();
    let (file, log) = (o.file.clone(), o.log.clone());
    std::fs::write(&file, in_an_hour()).unwrap();
    let env = o.env();
    let d = format!("sha256:{}", "7".repeat(64));
    let long = format!("attacker.example/{}:v1", "a".repeat(5000));
    let r = containerd_runs(&world.socket, &long, &d, &descriptor(&d), &env);
    assert_eq!(r.code, Some(1), "{}", r.reason);
    assert!(r.reason.contains("[invalid_reference]"), "{}", r.reason);
    let sha512 = format!("sha512:{}", "8".repeat(128));
    let r = containerd_runs(
        &world.socket,
        "attacker.example/app:v1",
        &sha512,
        &descriptor(&sha512),
        &env,
    );
    assert_eq!(r.code, Some(1), "{}", r.reason);
    assert!(r.reason.contains("[invalid_reference]"), "{}", r.reason);
    let r = containerd_runs(
        &world.socket,
        "attacker.example/app:v1",
        &d,
        &descriptor(&d),
        &env,
    );
    assert_eq!(r.code, Some(1), "{}", r.reason);
    assert!(r.reason.contains("[rejected_by_policy]"), "{}", r.reason);
    assert!(!log.exists(), "nothing fell open");
}

/// A running daemon whose connection queue is full (a flood of connections, or accepts
/// that stall) is slow, not down: before the fix the one-shot connect's EAGAIN sent the
/// verifier to gRPC, whose connect failed at once on the same queue, was taken for
/// "nothing listens", and the emergency override let the pull through.
#[test]
fn emergency_override_does_not_open_when_the_daemons_queue_is_full() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let world = World::new();
    std::fs::create_dir_all(world.socket.parent().unwrap()).unwrap();
    let unix = || {
        rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap()
    };
    let addr = SocketAddrUnix::new(world.socket.as_path()).unwrap();
    // Listening, never accepting, with the shortest queue; then filled.
    let listener = unix();
    rustix::net::bind(&listener, &addr).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    let mut queued = Vec::new();
    loop {
        let c = unix();
        match rustix::net::connect(&c, &addr) {
            Ok(()) => queued.push(c),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("connect: {e}"),
        }
        assert!(queued.len() < 64, "the queue never filled");
    }
    let o = Override::new();
    std::fs::write(&o.file, in_an_hour()).unwrap();
    let d = format!("sha256:{}", "5".repeat(64));
    let r = containerd_runs(&world.socket, "alpine", &d, &descriptor(&d), &o.env());
    assert_eq!(r.code, Some(3), "{}", r.reason);
    assert!(r.reason.contains("queue is full"), "{}", r.reason);
    assert!(!o.log.exists(), "nothing fell open");
    drop(queued);
}

/// The override file is honoured only when root owns it, nobody else may write it, and
/// its time is at most 7 days ahead; otherwise it is ignored, said, and recorded.
#[test]
fn emergency_override_is_refused_unless_root_owned_private_and_within_a_week() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = World::new(); // no daemon: the only case an override may open
    let o = Override::new();
    let (file, log) = (o.file.clone(), o.log.clone());
    let env = o.env();
    let d = format!("sha256:{}", "9".repeat(64));
    let run = || containerd_runs(&world.socket, "alpine", &d, &descriptor(&d), &env);

    std::fs::write(&file, "2999-01-01T00:00:00Z").unwrap();
    let r = run();
    assert_eq!(r.code, Some(3), "{}", r.reason);
    assert!(r.reason.contains("more than 7 days ahead"), "{}", r.reason);

    std::fs::write(&file, in_an_hour()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let r = run();
    assert_eq!(r.code, Some(3), "{}", r.reason);
    assert!(r.reason.contains("writable by root alone"), "{}", r.reason);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    if std::process::Command::new("chown")
        .args(["65534", file.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success())
    {
        let r = run();
        assert_eq!(r.code, Some(3), "{}", r.reason);
        assert!(r.reason.contains("owner uid 65534"), "{}", r.reason);
        let _ = std::process::Command::new("chown")
            .args(["0", file.to_str().unwrap()])
            .status();
    }
    let refusals: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(refusals.len() >= 2, "{refusals:?}");
    assert!(refusals.iter().all(|e| e["event"] == "fail_open.refused"));

    // Root's, private, an hour ahead: open.
    let r = run();
    assert_eq!(r.code, Some(0), "{}", r.reason);
    assert!(r.reason.contains("FAIL-OPEN"), "{}", r.reason);
}

/// Without -digest (or with an empty one) only the tag could be judged, while containerd
/// pulls a digest: blocked, as is a missing descriptor.
#[test]
fn a_missing_digest_or_descriptor_is_blocked() {
    let world = World::new();
    let r = containerd_runs(&world.socket, "alpine", "", &descriptor("sha256:aa"), &[]);
    assert_eq!(r.code, Some(2), "{}", r.reason);
    assert!(r.reason.contains("missing -digest"), "{}", r.reason);
    let d = format!("sha256:{}", "1".repeat(64));
    let r = containerd_runs(&world.socket, "alpine", &d, b"", &[]);
    assert_eq!(r.code, Some(2), "{}", r.reason);
    assert!(r.reason.contains("no descriptor"), "{}", r.reason);
    let out = Command::new(bin("pullguard-verifier"))
        .args(["-name", "alpine"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `pullguard-verifier --help` answered "blocked: flag -help needs a value": it prints
/// what it is and its exit codes, and still exits non-zero (help never allows a pull).
#[test]
fn help_says_what_the_verifier_is_and_exits_non_zero() {
    for flag in ["--help", "-help", "-h"] {
        let out = Command::new(bin("pullguard-verifier"))
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("-name REF -digest sha256:HEX"), "{text}");
        assert!(text.contains("Only 0 lets a pull through"), "{text}");
    }
}

/// An older pullguardd that speaks gRPC only (a rolling upgrade installs the new verifier
/// while the old daemon still answers): the verifier sees its HTTP/2 bytes instead of
/// the one-shot reply and asks over gRPC. The old daemon is a hand-written gRPC server
/// here, beside every other test of this file, which runs the real pullguardd.
#[test]
fn an_older_daemon_that_speaks_only_grpc_is_asked_over_grpc() {
    use daemon::api::pullguard_server::{Pullguard, PullguardServer};
    use daemon::api::{
        Event, StatusRequest, StatusResponse, VerifyRequest, VerifyResponse, WatchEventsRequest,
    };
    use tonic::{Request, Response, Status};

    struct Old;
    #[tonic::async_trait]
    impl Pullguard for Old {
        async fn verify(
            &self,
            req: Request<VerifyRequest>,
        ) -> Result<Response<VerifyResponse>, Status> {
            let r = req.into_inner();
            Ok(Response::new(VerifyResponse {
                allowed: false,
                image: r.image,
                reason: "rejected_by_policy".into(),
                message: "the old daemon says no".into(),
                rule: "old".into(),
                ..VerifyResponse::default()
            }))
        }
        async fn status(
            &self,
            _: Request<StatusRequest>,
        ) -> Result<Response<StatusResponse>, Status> {
            Err(Status::unimplemented("status"))
        }
        type WatchEventsStream =
            std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Event, Status>> + Send>>;
        async fn watch_events(
            &self,
            _: Request<WatchEventsRequest>,
        ) -> Result<Response<Self::WatchEventsStream>, Status> {
            Err(Status::unimplemented("watch"))
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("old.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(async { tokio::net::UnixListener::bind(&socket) })
        .unwrap();
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(PullguardServer::new(Old))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let d = format!("sha256:{}", "5".repeat(64));
    let r = containerd_runs(&socket, "alpine:3.20", &d, &descriptor(&d), &[]);
    assert_eq!(r.code, Some(1), "{}", r.reason);
    assert!(
        r.reason.contains("the old daemon says no") && r.reason.contains("(rule old"),
        "{}",
        r.reason
    );
}

/// Whatever answers on the socket may refuse with any text: the verifier blocks the pull
/// (exit 3) and prints a bounded line, not the 100 kB it was sent.
#[test]
fn a_refusal_with_an_endless_message_is_blocked_with_a_bounded_line() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("talkative.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let _serve = std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut head = [0u8; 8];
            let _ = s.read_exact(&mut head);
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let _ = s.read_exact(&mut vec![0u8; len]);
            let reply = daemon::api::oneshot::reply_frame(&Err((7, "x".repeat(100_000))));
            let _ = s.write_all(&reply);
        }
    });
    let d = format!("sha256:{}", "6".repeat(64));
    let r = containerd_runs(&socket, "alpine:3.20", &d, &descriptor(&d), &[]);
    assert_eq!(r.code, Some(3), "{}", &r.reason[..r.reason.len().min(300)]);
    assert!(r.reason.contains("pullguardd refused the request: xxx"));
    assert!(r.reason.len() < 2000, "{} bytes", r.reason.len());
}

/// The attack: `ctr image pull myorg/app:v1` (or the transfer API) asks containerd for
/// the host `myorg`, which a search domain or /etc/hosts entry can point at an
/// attacker's registry, while the rules read the name as Docker Hub's `myorg/app` and
/// applied a rule meant for that namespace. containerd passes the name to the verifier
/// as it was written; a short name is refused there, with what to write instead.
#[test]
fn a_short_name_containerd_pulls_from_a_one_word_host_is_refused() {
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"hub-team\"\nmatch = \"docker.io/myorg/**\"\nrequire = \"any\"\n\n[[rule]]\nname = \"rest\"\nmatch = \"**\"\nrequire = \"reject\"\n",
        world.daemon_section("")
    ));
    let _daemon = Daemon::start(&world);
    let d = format!("sha256:{}", "7".repeat(64));
    let r = containerd_runs(&world.socket, "myorg/app:v1", &d, &descriptor(&d), &[]);
    assert_eq!(r.code, Some(1), "{}", r.reason);
    assert!(
        r.reason.contains("[invalid_reference]") && r.reason.contains("docker.io/myorg/app:v1"),
        "{}",
        r.reason
    );
    // The same image by its full name is judged by the rule meant for it.
    let r = containerd_runs(
        &world.socket,
        "docker.io/myorg/app:v1",
        &d,
        &descriptor(&d),
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.reason);
    // Names whose first part is a host to Docker and containerd alike are judged.
    for name in ["localhost:5000/app:v1", "registry.test/app:v1"] {
        let r = containerd_runs(&world.socket, name, &d, &descriptor(&d), &[]);
        assert!(
            r.reason.contains("[rejected_by_policy]"),
            "{name}: {}",
            r.reason
        );
    }
}
