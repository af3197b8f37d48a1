//! `pullguard verify IMAGE` and `pullguard status` against a real pullguardd and a real
//! notary-server signed with the real notary CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use common::pullguard;

use std::process::Command;

use harness::{Daemon, Notary, World};

#[test]
fn verify_is_a_dry_run_with_the_reasoning() {
    let notary = Notary::start();
    let world = World::new();
    world.write_config(&format!(
        "{}{}[[rule]]\nname = \"prod\"\nmatch = \"registry.test/pullguard/**\"\n",
        world.daemon_section(""),
        World::server_section(&notary)
    ));
    let _daemon = Daemon::start(&world);
    let socket = world.socket.to_str().unwrap();

    let (code, json, _) = pullguard(&[
        "verify",
        "registry.test/pullguard/app:v2",
        "--socket",
        socket,
        "--json",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        (json["role"].as_str(), json["rule"].as_str()),
        (Some("targets/releases"), Some("prod"))
    );
    assert_eq!(json["digest"], notary.get("DIGEST_V2"));
    assert_eq!(json["trust_server"], "notary");
    assert!(
        json["timestamp_expires"]
            .as_str()
            .unwrap()
            .starts_with("20"),
        "{json}"
    );
    let (_, _, text) = pullguard(&[
        "verify",
        "registry.test/pullguard/app:v2",
        "--socket",
        socket,
    ]);
    assert!(text.contains("trust server notary"), "{text}");
    assert!(text.contains("timestamp   expires "), "{text}");
    assert!(text.contains("issued about "), "{text}");

    let (code, _, text) = pullguard(&[
        "verify",
        "registry.test/pullguard/app:v9",
        "--socket",
        socket,
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("verdict     rejected [unknown_tag] (dry run"),
        "{text}"
    );
    assert!(
        text.contains("rule        prod (enforce, policy generation 1)"),
        "{text}"
    );
    assert!(text.contains("to fix      sign this tag"), "{text}");
    // Dry runs are recorded as such, never as a rejection an alert would fire on.
    assert!(world.events_of("pull.rejected").is_empty());
    let ev = world.events_of("verify.dry_run");
    assert_eq!(ev.len(), 3, "two allowed, one not");
    assert!(ev
        .iter()
        .all(|e| e["dry_run"] == true && e["source"] == "cli"));
    let refused: Vec<_> = ev.iter().filter(|e| e["reason"] == "unknown_tag").collect();
    assert_eq!(refused.len(), 1, "{ev:?}");
    let (code, _, text) = pullguard(&["events", "--file", world.events.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("verify.dry_run") && l.contains("reason=unknown_tag")),
        "{text}"
    );

    let (code, json, _) = pullguard(&["status", "--socket", socket, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        (
            json["policy_generation"].as_u64(),
            json["verdicts"].as_u64()
        ),
        (Some(1), Some(3))
    );
    // When, and which generation: an operator tells an old state from a current one.
    let last = json["last_reload"].as_str().unwrap();
    assert!(
        last.starts_with("ok at 20") && last.ends_with("(generation 1, start)"),
        "{json}"
    );
    // The harness turns the containerd watcher off, and NRI with it.
    assert_eq!(json["watcher"], "off");
    assert_eq!(json["nri"], "off");
    assert!(json["fetches"].as_u64().unwrap() >= 1, "{json}");
    assert!(json["cache_hits"].as_u64().unwrap() >= 1, "{json}");
    // The containerd 2.x hook, checked on this node: absent, alone, or with company.
    let dir = tempfile::tempdir().unwrap();
    let vdir = dir.path().join("bin");
    let hook = |vdir: &std::path::Path| {
        let (_, json, _) = pullguard(&[
            "status",
            "--socket",
            socket,
            "--json",
            "--verifier-dir",
            vdir.to_str().unwrap(),
        ]);
        (
            json["verifier_hook"]["ok"].as_bool().unwrap(),
            json["verifier_hook"]["state"].as_str().unwrap().to_owned(),
        )
    };
    let (ok, state) = hook(&vdir);
    assert!(!ok && state.contains("does not exist"), "{state}");
    std::fs::create_dir_all(&vdir).unwrap();
    std::os::unix::fs::symlink(
        harness::bin("pullguard-verifier"),
        vdir.join("pullguard-verifier"),
    )
    .unwrap();
    let (ok, state) = hook(&vdir);
    assert!(ok && state.ends_with("installed"), "{state}");
    std::fs::write(vdir.join("README"), "notes").unwrap();
    let (ok, state) = hook(&vdir);
    assert!(!ok && state.contains("also holds README"), "{state}");
}

#[test]
fn an_unreachable_daemon_is_exit_3_with_a_hint() {
    let world = World::new();
    for cmd in [&["verify", "alpine"][..], &["status"]] {
        let mut args = cmd.to_vec();
        args.extend_from_slice(&["--socket", world.socket.to_str().unwrap()]);
        let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{cmd:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("systemctl status pullguardd"));
    }
}

/// `status` and `verify` find the daemon as the verifier does: PULLGUARD_SOCKET when no
/// `--socket` is given (they used to ignore it and knock on the default path).
#[test]
fn commands_find_the_daemon_through_pullguard_socket() {
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"any\"\n",
        world.daemon_section("")
    ));
    let _daemon = Daemon::start(&world);
    for cmd in [
        &["status", "--json"][..],
        &["verify", "alpine:3.20", "--json"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
            .args(cmd)
            .env("PULLGUARD_SOCKET", &world.socket)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A reference that does not parse: the reason, and no empty repository or rule lines.
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .args(["verify", "Bad Ref!!"])
        .env("PULLGUARD_SOCKET", &world.socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[invalid_reference]"), "{text}");
    assert!(
        !text.contains("repository  \n") && !text.contains("rule         ("),
        "{text}"
    );
    // A malformed --digest is the flag's fault: usage (exit 2), naming the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .args(["verify", "registry.test/app:v1", "--digest", "abc"])
        .env("PULLGUARD_SOCKET", &world.socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--digest") && text.contains("64 hex digits"),
        "{text}"
    );
    // Unreachable: the message says where the path came from.
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .arg("status")
        .env("PULLGUARD_SOCKET", world.dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from PULLGUARD_SOCKET"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docs/install.md's "run pullguardd by hand" works as written: its policy (with its
/// paths moved into a temporary directory) checks, starts with none of its directories
/// there, and answers `pullguard status` found through PULLGUARD_SOCKET.
#[test]
fn the_documented_by_hand_run_starts_and_answers() {
    let install = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/install.md"),
    )
    .unwrap();
    let block = install
        .split_once("<!-- by-hand:")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .expect("docs/install.md has the by-hand policy");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("pullguard");
    let text = block.replace("/tmp/pullguard", base.to_str().unwrap());
    assert_ne!(text, block, "the documented paths are under /tmp/pullguard");
    let config = dir.path().join("pullguard.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();

    let out = Command::new(harness::bin("pullguardd"))
        .args(["--config", config, "--check-config"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut daemon = Command::new(harness::bin("pullguardd"))
        .args(["--config", config])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let socket = base.join("pullguard.sock");
    let started = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if started.elapsed() > std::time::Duration::from_secs(20)
            || daemon.try_wait().unwrap().is_some()
        {
            let _ = daemon.kill();
            let out = daemon.wait_with_output().unwrap();
            panic!(
                "pullguardd did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .arg("status")
        .env("PULLGUARD_SOCKET", &socket)
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("last reload"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        base.join("state").is_dir() && base.join("events.jsonl").exists(),
        "{text}"
    );
}
