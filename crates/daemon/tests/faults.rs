//! Fault injection: a trust server that is stopped, refuses, never answers, drips one
//! byte a second, streams 10 GB, answers garbage, presents a certificate for another
//! name, or fails with a 500. Each must give its reason well inside containerd's 10 s
//! verifier budget, and never an allowed pull. The misbehaving server is
//! tests/faults/trust-server.py over TLS from a CA made here; the daemon is the real one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{free_port, repo_root, verify, Daemon, World};

/// containerd kills a verifier after 10 s; pullguard must have answered well before.
const BUDGET: Duration = Duration::from_secs(5);

/// A CA, a server certificate for 127.0.0.1 and one for another name only.
fn certificates(dir: &Path) {
    let script = format!(
        ". {root}/tests/notary/lib.sh; notary_make_ca {d}; cd {d}/tls && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=other.example \
           -keyout other.key -out other.csr 2>/dev/null && \
         printf 'subjectAltName=DNS:other.example\\n' > other.ext && \
         openssl x509 -req -in other.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
           -extfile other.ext -out other.crt 2>/dev/null",
        root = repo_root().display(),
        d = dir.display()
    );
    let st = Command::new("bash").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "certificates");
}

struct Server(Child);

impl Server {
    fn start(mode: &str, port: u16, dir: &Path, name: &str) -> Server {
        let tls = dir.join("tls");
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/faults/trust-server.py"))
            .arg(mode)
            .arg(port.to_string())
            .arg(tls.join(format!("{name}.crt")))
            .arg(tls.join(format!("{name}.key")))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_trust_server_never_allows_and_answers_in_time() {
    let world = World::new();
    let certs = world.dir.path().join("certs");
    certificates(&certs);
    let cases = [
        // (mode, certificate, reason, what the message must mention)
        (
            "stopped",
            "notary-server",
            "trust_server_unreachable",
            "connect",
        ),
        (
            "blackhole",
            "notary-server",
            "trust_server_unreachable",
            "root.json",
        ),
        (
            "drip",
            "notary-server",
            "trust_server_unreachable",
            "root.json",
        ),
        ("huge", "notary-server", "oversized", "larger than"),
        ("garbage", "notary-server", "malformed_metadata", "root"),
        (
            "garbage",
            "other",
            "trust_server_unreachable",
            "certificate",
        ),
        ("error", "notary-server", "trust_server_unreachable", "500"),
    ];
    let mut ports = Vec::new();
    let mut servers = Vec::new();
    let mut sections = String::new();
    let mut rules = String::new();
    for (i, (mode, cert, _, _)) in cases.iter().enumerate() {
        let port = free_port();
        ports.push(port);
        if *mode != "stopped" {
            servers.push(Server::start(mode, port, &certs, cert));
        }
        sections.push_str(&format!(
            "[trust_server.s{i}]\nurl = \"https://127.0.0.1:{port}\"\nca_file = \"{}\"\ntimeout = \"2s\"\n\n",
            certs.join("tls/ca.crt").display()
        ));
        rules.push_str(&format!(
            "[[rule]]\nname = \"case{i}\"\nmatch = \"registry.test/case{i}/**\"\ntrust_server = \"s{i}\"\ntofu = true\n\n"
        ));
    }
    world.write_config(&format!("{}{sections}{rules}", world.daemon_section("")));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for (i, (mode, cert, reason, mention)) in cases.iter().enumerate() {
        let t = Instant::now();
        let v = verify(&mut c, &format!("registry.test/case{i}/app:v1"), "").await;
        let took = t.elapsed();
        let what = format!("{mode} ({cert} certificate)");
        assert!(!v.allowed, "{what}: allowed! {v:?}");
        assert_eq!(v.reason, *reason, "{what}: {v:?}");
        assert!(
            v.message.to_lowercase().contains(mention),
            "{what}: message should mention {mention:?}: {}",
            v.message
        );
        assert!(took < BUDGET, "{what}: took {took:?}");
    }
    // Each failure is also an event for the operator.
    let failed = world.events_of("trust.fetch_failed");
    assert!(failed.len() >= cases.len() - 1, "{failed:#?}");
    drop(servers);
}

/// Logs written to a file or journald carry no terminal colour codes.
#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"any\"\n",
        world.daemon_section("")
    ));
    let log = world.dir.path().join("stderr.log");
    let mut child = std::process::Command::new(harness::bin("pullguardd"))
        .arg("--config")
        .arg(&world.config)
        .env("PULLGUARD_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("pullguardd ready"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}
