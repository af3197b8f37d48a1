//! Syslog to a real rsyslogd, the metrics endpoint, and who may use the socket.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{eventually, free_port, verify, Daemon, World};

struct Rsyslog {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Rsyslog {
    fn start(udp: u16, tcp: u16) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "global(workDirectory=\"{d}\")\nmodule(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
             module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")\n\
             *.* action(type=\"omfile\" file=\"{d}/out.log\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (Debian package rsyslog)");
        let r = Rsyslog { dir, child };
        // UDP to a socket not yet bound is lost without a trace: probe until received.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..100 {
            let _ = probe.send_to(b"<30>1 - - probe - - - rsyslog-ready", ("127.0.0.1", udp));
            std::thread::sleep(Duration::from_millis(100));
            if r.log().contains("rsyslog-ready") {
                return r;
            }
        }
        panic!("rsyslogd did not start receiving");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("out.log")).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rules() -> &'static str {
    "[[rule]]\nname = \"blocked\"\nmatch = \"registry.test/blocked/**\"\nrequire = \"reject\"\n"
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_a_real_rsyslogd_over_udp_and_tcp() {
    let (udp, tcp) = (free_port(), free_port());
    let rsyslog = Rsyslog::start(udp, tcp);
    for target in [
        format!("udp://127.0.0.1:{udp}"),
        format!("tcp://127.0.0.1:{tcp}"),
    ] {
        let world = World::new();
        world.write_config(&format!(
            "{}{}",
            world.daemon_section(&format!("syslog = \"{target}\"")),
            rules()
        ));
        let daemon = Daemon::start(&world);
        let mut c = daemon.client().await;
        let v = verify(&mut c, "registry.test/blocked/app:v1", "").await;
        assert!(!v.allowed);
        let line = eventually(10, || async {
            rsyslog
                .log()
                .lines()
                .find(|l| l.contains(&v.event_id))
                .map(str::to_owned)
        })
        .await
        .unwrap_or_else(|| panic!("{target}: event not in rsyslog's file:\n{}", rsyslog.log()));
        // RFC 5424, facility daemon, severity warning for a rejection.
        assert!(line.starts_with("<28>1 "), "{line}");
        assert!(
            line.contains(" pullguardd ") && line.contains(" pull.rejected "),
            "{line}"
        );
        let json = &line[line.find('{').unwrap()..];
        let ev: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(ev["reason"], "rejected_by_policy");
    }
}

/// Kubernetes Events asked for outside a pod (no service account mounted): pullguardd
/// runs, says in status why no Event can be posted, and its verdicts do not wait. The
/// posting itself is tests/k8s/run's, on a real API server.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_events_without_a_service_account_say_why_and_block_nothing() {
    if std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists() {
        eprintln!("SKIPPED: this machine is a Kubernetes pod (a service account is mounted)");
        return;
    }
    let world = World::new();
    world.write_config(&format!(
        "{}{}",
        world.daemon_section(&format!(
            "kubernetes_events = true\nkubernetes_api = \"https://127.0.0.1:{}\"",
            free_port()
        )),
        rules()
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    assert!(
        !verify(&mut c, "registry.test/blocked/app:v1", "")
            .await
            .allowed
    );
    let s = daemon.status().await;
    assert!(
        s.kubernetes_events
            .starts_with("off: cannot read the cluster CA"),
        "{s:?}"
    );
    // Off unless asked for.
    let plain = World::new();
    plain.write_config(&format!("{}{}", plain.daemon_section(""), rules()));
    let daemon = Daemon::start(&plain);
    assert_eq!(daemon.status().await.kubernetes_events, "off");
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_down_never_blocks_verdicts() {
    // Nothing listens on this TCP port: verdicts must still come, and the file has them.
    let world = World::new();
    world.write_config(&format!(
        "{}{}",
        world.daemon_section(&format!("syslog = \"tcp://127.0.0.1:{}\"", free_port())),
        rules()
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let started = std::time::Instant::now();
    for i in 0..50 {
        assert!(
            !verify(&mut c, &format!("registry.test/blocked/app:{i}"), "")
                .await
                .allowed
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "verdicts waited for syslog"
    );
    assert_eq!(world.events_of("pull.rejected").len(), 50);
}

/// Lines the syslog sink gave up on while its receiver could not be reached were lost
/// without a count: now each is counted in `events_dropped` at once, and once the
/// receiver is back one `events.dropped` event reaches it saying how many.
#[tokio::test(flavor = "multi_thread")]
async fn lines_syslog_could_not_take_are_counted_and_said_when_it_is_back() {
    let (udp, tcp) = (free_port(), free_port());
    let world = World::new();
    world.write_config(&format!(
        "{}{}",
        world.daemon_section(&format!("syslog = \"tcp://127.0.0.1:{tcp}\"")),
        rules()
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for i in 0..3 {
        verify(&mut c, &format!("registry.test/blocked/app:{i}"), "").await;
    }
    let dropped = eventually(20, || async {
        let n = daemon.status().await.events_dropped;
        (n >= 3).then_some(n)
    })
    .await;
    assert!(dropped.is_some(), "lines given up on were not counted");
    let rsyslog = Rsyslog::start(udp, tcp);
    let said = eventually(30, || {
        let (mut c, rsyslog) = (c.clone(), &rsyslog);
        async move {
            verify(&mut c, "registry.test/blocked/app:again", "").await;
            rsyslog
                .log()
                .contains("were not delivered to syslog while it could not be reached")
                .then_some(())
        }
    })
    .await;
    assert!(said.is_some(), "{}", rsyslog.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_counts_verdicts() {
    let port = free_port();
    let world = World::new();
    world.write_config(&format!(
        "{}{}",
        world.daemon_section(&format!("metrics = \"{port}\"")),
        rules()
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for _ in 0..3 {
        verify(&mut c, "registry.test/blocked/app:v1", "").await;
    }
    let out = Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pullguard_verdicts_total{reason=\"rejected_by_policy\"} 3"),
        "{text}"
    );
    assert!(text.contains("pullguard_policy_generation 1"), "{text}");
    // Fetch time in seconds with a fraction, not cut to whole seconds.
    let sum = text
        .lines()
        .find_map(|l| l.strip_prefix("pullguard_trust_fetch_seconds_sum "))
        .expect("fetch seconds");
    assert!(sum.contains('.') && sum.parse::<f64>().is_ok(), "{sum}");
    let other = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/other"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout), "404");
}

/// Child mode of `only_allowed_users_may_call`: one Verify as whoever runs it.
#[tokio::test(flavor = "multi_thread")]
async fn client_child() {
    let Ok(socket) = std::env::var("PULLGUARD_TEST_SOCKET") else {
        return;
    };
    let mut c = harness::connect(std::path::Path::new(&socket)).await;
    let r = c
        .verify(daemon::api::VerifyRequest {
            image: "registry.test/blocked/app:v1".into(),
            ..Default::default()
        })
        .await;
    match r {
        Ok(v) => println!("ANSWER allowed={}", v.into_inner().allowed),
        Err(s) => println!("STATUS {:?}", s.code()),
    }
    // The same call over the verifier's one-shot framing: the same check.
    let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let req = daemon::api::VerifyRequest {
        image: "registry.test/blocked/app:v1".into(),
        ..Default::default()
    };
    match daemon::api::oneshot::call(&stream, &req).unwrap() {
        daemon::api::oneshot::Reply::Verdict(v) => println!("ONESHOT allowed={}", v.allowed),
        daemon::api::oneshot::Reply::Status(code, _) => {
            println!("ONESHOT {:?}", tonic::Code::from(code));
        }
        daemon::api::oneshot::Reply::NotSpoken => println!("ONESHOT not spoken"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_users_may_call_and_a_revoked_uid_is_refused_at_once() {
    use std::os::unix::fs::PermissionsExt as _;
    if !rustix_is_root() {
        eprintln!("needs root to run a client as another user");
        return;
    }
    let world = World::new();
    let run_as_nobody = |world: &World| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "client_child", "--nocapture"])
            .env("PULLGUARD_TEST_SOCKET", &world.socket)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let open_up = |world: &World| {
        // Let the other user reach the socket, so that pullguardd's own check decides.
        for p in [
            world.dir.path().to_path_buf(),
            world.socket.parent().unwrap().to_path_buf(),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&world.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    };
    world.write_config(&format!("{}{}", world.daemon_section(""), rules()));
    let mut daemon = Daemon::start(&world);
    open_up(&world);
    let out = run_as_nobody(&world);
    assert!(out.contains("STATUS PermissionDenied"), "{out}");
    assert!(out.contains("ONESHOT PermissionDenied"), "{out}");
    let denied = world.events_of("access.denied");
    assert_eq!(denied.len(), 2, "one per call, either framing");
    assert!(denied[0]["message"].as_str().unwrap().contains("uid 65534"));
    daemon.stop();

    world.write_config(&format!(
        "{}{}",
        world.daemon_section("allowed_uids = [65534]"),
        rules()
    ));
    let _daemon = Daemon::start(&world);
    open_up(&world);
    let out = run_as_nobody(&world);
    assert!(out.contains("ANSWER allowed=false"), "{out}");
    assert!(out.contains("ONESHOT allowed=false"), "{out}");

    // Revoked by a reload: refused from the next call on, no restart. The reload event
    // names the restart-only setting changed with it, and only that one.
    world.write_config(&format!(
        "{}{}",
        world.daemon_section("events_keep = 3"),
        rules()
    ));
    let reloaded = harness::eventually(10, || async {
        world.events_of("policy.reloaded").into_iter().next()
    })
    .await
    .expect("policy.reloaded");
    let message = reloaded["message"].as_str().unwrap();
    assert!(message.contains("take effect only at restart"), "{message}");
    assert!(message.contains("events_keep"), "{message}");
    assert!(!message.contains("allowed_uids"), "{message}");
    let out = run_as_nobody(&world);
    assert!(
        out.contains("STATUS PermissionDenied") && out.contains("ONESHOT PermissionDenied"),
        "revoked uid still served: {out}"
    );
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
}

/// A small file system mounted over a directory for the length of a test: a tmpfs
/// (to fill), or an ext4 image on a loop device (to make the kernel turn it read-only as
/// it does on an I/O error with `errors=remount-ro`).
struct SmallDisk {
    dir: std::path::PathBuf,
    image: Option<tempfile::NamedTempFile>,
}

impl SmallDisk {
    fn run(cmd: &mut Command) {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn tmpfs(dir: &std::path::Path) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        Self::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=256k,mode=0750", "pullguard-test"])
                .arg(dir),
        );
        SmallDisk {
            dir: dir.to_path_buf(),
            image: None,
        }
    }

    fn ext4(dir: &std::path::Path) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(8 << 20).unwrap();
        Self::run(
            Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(image.path()),
        );
        Self::run(
            Command::new("mount")
                .args(["-o", "loop,errors=remount-ro"])
                .arg(image.path())
                .arg(dir),
        );
        SmallDisk {
            dir: dir.to_path_buf(),
            image: Some(image),
        }
    }

    /// Writes a file until the file system says it is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let filler = self.dir.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        filler
    }

    /// What the kernel does to ext4 on an I/O error under `errors=remount-ro`.
    fn fail_read_only(&self) {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let device = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(self.dir.to_str().unwrap()))
            .and_then(|l| l.split(' ').next())
            .expect("the loop device in /proc/self/mounts")
            .trim_start_matches("/dev/")
            .to_owned();
        std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // -d frees the loop device of an ext4 image.
        let _ = Command::new("umount")
            .arg("-l")
            .arg("-d")
            .arg(&self.dir)
            .status();
        let _ = self.image.take();
    }
}

/// Verdicts while the events file cannot be written: a rejection keeps its reason and
/// reaches syslog; a pull an enforce rule would allow is refused (it cannot be recorded);
/// syslog gets one `events.unwritable` per outage. Returns how many notices syslog has.
async fn during_outage(
    c: &mut daemon::api::pullguard_client::PullguardClient<tonic::transport::Channel>,
    world: &World,
    rsyslog: &Rsyslog,
    outage: &str,
) -> usize {
    let blocked = verify(c, &format!("registry.test/blocked/app:{outage}"), "").await;
    assert!(!blocked.allowed, "{outage}: {blocked:?}");
    assert_eq!(blocked.reason, "rejected_by_policy", "{outage}");
    let open = verify(c, &format!("registry.test/open/app:{outage}"), "").await;
    assert!(!open.allowed, "{outage}: {open:?}");
    assert_eq!(open.reason, "events_unwritable", "{outage}");
    for needle in [blocked.event_id.as_str(), " events.unwritable "] {
        eventually(10, || async {
            rsyslog.log().contains(needle).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{outage}: {needle:?} not on syslog:\n{}", rsyslog.log()));
    }
    assert!(
        !std::fs::read_to_string(&world.events)
            .unwrap_or_default()
            .contains(&blocked.event_id),
        "{outage}: the event cannot be in the file"
    );
    rsyslog.log().matches(" events.unwritable ").count()
}

fn outage_world(tcp: u16) -> World {
    let world = World::new();
    world.write_config(&format!(
        "{}{}[[rule]]\nname = \"open\"\nmatch = \"registry.test/open/**\"\nrequire = \"any\"\n",
        world.daemon_section(&format!("syslog = \"tcp://127.0.0.1:{tcp}\"")),
        rules()
    ));
    world
}

/// A daemon whose events file is on `mount`'s file system, syslog to a real rsyslogd,
/// one allowed verdict behind it. `None` when not root (mounting needs it).
struct Outage {
    c: daemon::api::pullguard_client::PullguardClient<tonic::transport::Channel>,
    daemon: Daemon,
    disk: SmallDisk,
    world: World,
    rsyslog: Rsyslog,
}

async fn outage(mount: fn(&std::path::Path) -> SmallDisk) -> Option<Outage> {
    if !rustix_is_root() {
        eprintln!("needs root to mount a small file system");
        return None;
    }
    let (udp, tcp) = (free_port(), free_port());
    let rsyslog = Rsyslog::start(udp, tcp);
    let world = outage_world(tcp);
    let disk = mount(world.events.parent().unwrap());
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    assert!(verify(&mut c, "registry.test/open/app:0", "").await.allowed);
    Some(Outage {
        c,
        daemon,
        disk,
        world,
        rsyslog,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn events_disk_full_stays_closed_is_reported_on_syslog_and_recovers() {
    let Some(Outage {
        mut c,
        mut daemon,
        disk,
        world,
        rsyslog,
    }) = outage(SmallDisk::tmpfs).await
    else {
        return;
    };

    for round in 1..=2 {
        let filler = disk.fill();
        // Appends fit in the events file's last page until that is full: pulls go on
        // until the first one that cannot be recorded, which is refused.
        let mut refused = None;
        for i in 0..500 {
            let v = verify(
                &mut c,
                &format!("registry.test/open/filling:{round}-{i}"),
                "",
            )
            .await;
            if !v.allowed {
                refused = Some(v);
                break;
            }
        }
        let v = refused.expect("the full disk was never noticed");
        assert_eq!(v.reason, "events_unwritable", "{v:?}");
        let notices = during_outage(&mut c, &world, &rsyslog, "full").await;
        assert_eq!(notices, round, "one events.unwritable per outage");

        // Space again: verdicts are recorded, and the file says how many it missed.
        std::fs::remove_file(filler).unwrap();
        let again = verify(&mut c, &format!("registry.test/open/app:after-{round}"), "").await;
        assert!(again.allowed, "{again:?}");
        let recovered = world.events_of("events.recovered");
        assert_eq!(recovered.len(), round, "{recovered:?}");
        let message = recovered[round - 1]["message"].as_str().unwrap();
        assert!(
            message.contains("3 event(s) could not be written"),
            "{message}"
        );
    }
    // Every line is still one JSON object: no half-written line survived.
    let text = std::fs::read_to_string(&world.events).unwrap();
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("corrupt line {line:?}: {e}"));
    }
    daemon.stop();
    drop(disk);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_disk_turned_read_only_stays_closed_and_a_restart_refuses_to_start() {
    let Some(Outage {
        mut c,
        mut daemon,
        disk,
        world,
        rsyslog,
    }) = outage(SmallDisk::ext4).await
    else {
        return;
    };

    disk.fail_read_only();
    assert_eq!(
        during_outage(&mut c, &world, &rsyslog, "read-only").await,
        1
    );
    let status = c
        .status(daemon::api::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status
            .last_errors
            .iter()
            .any(|e| e.contains("Read-only file system")),
        "{status:?}"
    );

    // A restart on a read-only events directory refuses to run (the verifier then
    // denies every pull) and says why.
    daemon.stop();
    let err = Daemon::refused(&world);
    assert!(
        err.contains("cannot open the events file") && err.contains("Read-only file system"),
        "{err}"
    );
    drop(disk);
}
