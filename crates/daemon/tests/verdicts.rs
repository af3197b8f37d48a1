//! pullguardd against a real notary-server signed with the real notary CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::time::Duration;

use harness::{eventually, free_port, verify, Daemon, Notary, World};

const APP: &str = "registry.test/pullguard/app";

fn config(world: &World, notary: &Notary, rules: &str) -> String {
    format!(
        "{}{}{rules}",
        world.daemon_section(""),
        World::server_section(notary)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_unsigned_and_unknown_tags() {
    let notary = Notary::start();
    let world = World::new();
    world.write_config(&config(
        &world,
        &notary,
        "[[rule]]\nname = \"all\"\nmatch = \"**\"\n",
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;

    let v1 = verify(&mut c, &format!("{APP}:v1"), notary.get("DIGEST_V1")).await;
    assert!(v1.allowed, "{v1:?}");
    assert_eq!(
        (v1.role.as_str(), v1.digest.as_str(), v1.rule.as_str()),
        ("targets", notary.get("DIGEST_V1"), "all")
    );
    assert_eq!(v1.policy_generation, 1);
    assert_eq!(
        v1.proof, "notary-v1",
        "the verdict names the proof that counted"
    );
    let v2 = verify(&mut c, &format!("{APP}:v2"), "").await;
    assert!(v2.allowed, "{v2:?}");
    assert_eq!(v2.role, "targets/releases");

    // Signed tag, but containerd resolved another digest.
    let wrong = verify(&mut c, &format!("{APP}:v2"), notary.get("DIGEST_V1")).await;
    assert_eq!(
        (wrong.allowed, wrong.reason.as_str()),
        (false, "digest_mismatch"),
        "{wrong:?}"
    );
    // Digest-only pull: allowed only if a signed target carries it.
    let by_digest = verify(&mut c, &format!("{APP}@{}", notary.get("DIGEST_V2")), "").await;
    assert!(by_digest.allowed, "{by_digest:?}");
    let other = format!("{APP}@sha256:{}", "0".repeat(64));
    assert_eq!(verify(&mut c, &other, "").await.reason, "digest_mismatch");

    // A repository nobody signed.
    let unsigned = verify(&mut c, "registry.test/pullguard/unsigned:v1", "").await;
    assert_eq!(
        (unsigned.allowed, unsigned.reason.as_str()),
        (false, "no_trust_data"),
        "{unsigned:?}"
    );
    assert!(
        unsigned.message.contains("does not exist"),
        "{}",
        unsigned.message
    );
    // A tag the registry may have, but the trust data does not sign.
    let v9 = verify(&mut c, &format!("{APP}:v9"), "").await;
    assert_eq!(
        (v9.allowed, v9.reason.as_str()),
        (false, "unknown_tag"),
        "{v9:?}"
    );

    // Every rejection is in the events file under its event ID.
    let rejected = world.events_of("pull.rejected");
    for r in [&wrong, &unsigned, &v9] {
        let ev = rejected
            .iter()
            .find(|e| e["event_id"] == r.event_id.as_str())
            .expect("event on disk");
        assert_eq!(ev["reason"], r.reason.as_str());
        assert_eq!(ev["mode"], "enforce");
        assert_eq!(ev["rule"], "all");
        assert!(ev["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(ev["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    assert_eq!(world.events_of("pull.allowed").len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_timestamp_per_max_age_and_audit_mode() {
    let notary = Notary::start();
    let world = World::new();
    let rules = r#"
[[rule]]
name = "fresh"
match = "registry.test/pullguard/app:v1"
max_timestamp_age = "1s"

[[rule]]
name = "audited"
match = "registry.test/pullguard/app:v2"
max_timestamp_age = "1s"
mode = "audit"
"#;
    world.write_config(&config(&world, &notary, rules));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    // The timestamp was issued when serve.sh published; wait until it is older than 1s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let v = verify(&mut c, &format!("{APP}:v1"), "").await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "stale_timestamp"),
        "{v:?}"
    );
    let a = verify(&mut c, &format!("{APP}:v2"), "").await;
    assert_eq!(
        (a.allowed, a.reason.as_str(), a.mode.as_str()),
        (true, "stale_timestamp", "audit"),
        "{a:?}"
    );
    let audited = world.events_of("pull.audited");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["reason"], "stale_timestamp");
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_server_unreachable_deny_and_cached() {
    let notary = Notary::start();
    let world = World::new();
    let rules = r#"
[[rule]]
name = "cached"
match = "registry.test/pullguard/app:v1"
on_unreachable = "cached"

[[rule]]
name = "deny"
match = "registry.test/pullguard/app:v2"
on_unreachable = "deny"
"#;
    world.write_config(&config(&world, &notary, rules));
    let mut daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    assert!(verify(&mut c, &format!("{APP}:v1"), "").await.allowed);
    assert!(verify(&mut c, &format!("{APP}:v2"), "").await.allowed);

    notary.stop_server();
    tokio::time::sleep(Duration::from_millis(1200)).await; // past cache_ttl
    let cached = verify(&mut c, &format!("{APP}:v1"), "").await;
    assert!(
        cached.allowed,
        "cached trust data within expiry: {cached:?}"
    );
    let denied = verify(&mut c, &format!("{APP}:v2"), "").await;
    assert_eq!(
        (denied.allowed, denied.reason.as_str()),
        (false, "trust_server_unreachable"),
        "{denied:?}"
    );
    assert!(!world.events_of("trust.fetch_failed").is_empty());

    // After a restart, with the server still down, the cache on disk still serves.
    daemon.stop();
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let after = verify(&mut c, &format!("{APP}:v1"), "").await;
    assert!(
        after.allowed,
        "cached trust data survives a restart: {after:?}"
    );
    assert!(!verify(&mut c, &format!("{APP}:v2"), "").await.allowed);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_rollback_protection_against_a_replaying_mirror() {
    let notary = Notary::start();
    let world = World::new();
    // Snapshot what the server serves now: a mirror will replay it later.
    let old = tempfile::tempdir().unwrap();
    let gun_dir = old.path().join("v2/registry.test/pullguard/app/_trust/tuf");
    std::fs::create_dir_all(gun_dir.join("targets")).unwrap();
    for f in [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
        "targets/releases.json",
    ] {
        let url = format!("{}/v2/{APP}/_trust/tuf/{f}", notary.get("NOTARY_URL"));
        let st = std::process::Command::new("curl")
            .args(["-fsS", "--cacert", notary.get("NOTARY_CA"), &url, "-o"])
            .arg(gun_dir.join(f))
            .status()
            .unwrap();
        assert!(st.success());
    }
    // The publisher moves on: v3 is signed, every version goes up.
    let digest3 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(b"v3"))
    };
    notary.cli(&format!("addhash {APP} v3 2 --sha256 {digest3} --publish"));

    world.write_config(&config(
        &world,
        &notary,
        "[[rule]]\nname = \"all\"\nmatch = \"**\"\n",
    ));
    let mut daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    assert!(verify(&mut c, &format!("{APP}:v3"), "").await.allowed);
    // The node's clock record is written beside the first verdict's answer (the
    // repository's record before it): it is there, and with today's time.
    let clock = world.state.join("clock.json");
    let text = eventually(5, || {
        let clock = clock.clone();
        async move { std::fs::read_to_string(&clock).ok() }
    })
    .await
    .expect("the clock record is written");
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert!(text.contains(&today), "{text}");
    daemon.stop();

    // A mirror on the same address serves the old data, with the server's own TLS cert.
    notary.stop_server();
    let port = notary.get("NOTARY_SERVER_PORT").to_owned();
    let tls = notary.dir.path().join("tls");
    let mut mirror = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import http.server,ssl,functools\n\
             h=functools.partial(http.server.SimpleHTTPRequestHandler,directory='{}')\n\
             s=http.server.HTTPServer(('127.0.0.1',{port}),h)\n\
             c=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER);c.load_cert_chain('{}','{}')\n\
             s.socket=c.wrap_socket(s.socket,server_side=True)\n\
             s.serve_forever()",
            old.path().display(),
            tls.join("notary-server.crt").display(),
            tls.join("notary-server.key").display()
        ))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon::start(&world);
    let c = daemon.client().await;
    let replay = eventually(10, || {
        let mut c = c.clone();
        async move {
            let v = verify(&mut c, &format!("{APP}:v1"), "").await;
            (v.reason != "trust_server_unreachable").then_some(v)
        }
    })
    .await
    .unwrap();
    let _ = mirror.kill();
    let _ = mirror.wait();
    assert_eq!(
        (replay.allowed, replay.reason.as_str()),
        (false, "rollback"),
        "{replay:?}"
    );
    drop(c);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_exits_64_and_check_config_says_why() {
    let world = World::new();
    world.write_config("[[rule]]\nmatch = \"**\"\nmode = \"sometimes\"\n");
    for args in [vec!["--check-config"], vec![]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pullguardd"))
            .arg("--config")
            .arg(&world.config)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("pullguard.toml:3:"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_pulls_share_one_fetch() {
    let notary = Notary::start();
    let world = World::new();
    let port = free_port();
    let daemon_cfg = world.daemon_section(&format!("metrics = \"{port}\""));
    world.write_config(&format!(
        "{daemon_cfg}{}[[rule]]\nname = \"all\"\nmatch = \"**\"\n",
        World::server_section(&notary)
    ));
    let daemon = Daemon::start(&world);
    let c = daemon.client().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut c = c.clone();
        let tag = if i % 2 == 0 { "v1" } else { "v2" };
        tasks.push(tokio::spawn(async move {
            verify(&mut c, &format!("{APP}:{tag}"), "").await
        }));
    }
    for t in tasks {
        let v = t.await.unwrap();
        assert!(v.allowed, "{v:?}");
    }
    let out = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pullguard_trust_fetches_total 1\n"),
        "one chain fetch for 40 concurrent pulls:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_events_status_socket_modes_and_graceful_stop() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"no\"\nmatch = \"**\"\nrequire = \"reject\"\n",
        world.daemon_section("")
    ));
    let mut daemon = Daemon::start(&world);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&world.socket), 0o660);
    assert_eq!(mode(world.socket.parent().unwrap()), 0o750);

    let mut c = daemon.client().await;
    let mut stream = c
        .watch_events(daemon::api::WatchEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let v = verify(&mut c, "registry.test/x/y:1", "").await;
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev: serde_json::Value = serde_json::from_str(&ev.json).unwrap();
    assert_eq!(ev["event_id"], v.event_id.as_str());
    assert_eq!(ev["event"], "pull.rejected");

    let status = c
        .status(daemon::api::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            status.policy_generation,
            status.last_reload.starts_with("ok at "),
            status.verdicts
        ),
        (1, true, 1)
    );
    assert_eq!(status.policy_file, world.config.display().to_string());

    daemon.stop();
    assert_eq!(
        daemon.child.try_wait().unwrap().and_then(|s| s.code()),
        Some(0),
        "SIGTERM is a clean exit"
    );
    assert!(!world.socket.exists(), "the socket is removed on shutdown");
}
