//! `pullguard events` over the events file a real pullguardd writes, with verdicts from
//! a real notary-server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use common::pullguard;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{verify, Daemon, Notary, World};

#[tokio::test(flavor = "multi_thread")]
async fn events_filters_and_follows_what_the_daemon_writes() {
    let notary = Notary::start();
    let world = World::new();
    world.write_config(&format!(
        "{}{}[[rule]]\nname = \"prod\"\nmatch = \"registry.test/pullguard/**\"\n",
        world.daemon_section(""),
        World::server_section(&notary)
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    assert!(
        verify(&mut c, "registry.test/pullguard/app:v2", "")
            .await
            .allowed
    );
    assert!(
        !verify(&mut c, "registry.test/pullguard/app:v9", "")
            .await
            .allowed
    );
    assert!(
        !verify(&mut c, "docker.io/library/alpine:3.20", "")
            .await
            .allowed
    );
    let config = world.config.to_str().unwrap();

    // The events file is found through the policy's [daemon] events_file.
    let (code, _, text) = pullguard(&["events", "--policy", config, "--reason", "unknown_tag"]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("pull.rejected")
            && lines[0].contains("image=registry.test/pullguard/app:v9"),
        "{text}"
    );

    let (_, _, text) = pullguard(&[
        "events",
        "--policy",
        config,
        "--event",
        "pull.rejected",
        "--json",
    ]);
    let rejected: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected.len(), 2, "{text}");
    assert_eq!(rejected[1]["reason"], "no_matching_rule");

    let (_, _, text) = pullguard(&["events", "--policy", config, "--image", "alpine", "--json"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    // The help's example: a policy-style pattern, not a substring (it matched nothing).
    let (_, _, text) = pullguard(&[
        "events",
        "--policy",
        config,
        "--image",
        "registry.test/pullguard/**",
        "--json",
    ]);
    assert!(text.lines().count() >= 1, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("\"image\":\"registry.test/pullguard/")),
        "{text}"
    );
    let (_, _, text) = pullguard(&[
        "events",
        "--policy",
        config,
        "--image",
        "docker.io/*/alpine:*",
    ]);
    assert_eq!(text.lines().count(), 1, "{text}");
    // Nothing is older than now minus a day, and nothing is newer than the future.
    let (_, _, all) = pullguard(&["events", "--policy", config, "--since", "1d"]);
    assert!(all.lines().count() >= 4, "{all}");
    let (code, _, none) = pullguard(&[
        "events",
        "--file",
        world.events.to_str().unwrap(),
        "--since",
        "0s",
        "--event",
        "pull.allowed",
    ]);
    assert_eq!((code, none.lines().count()), (0, 0), "{none}");

    // --follow prints events written after it started.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .args([
            "events",
            "--follow",
            "--json",
            "--event",
            "pull.rejected",
            "--file",
        ])
        .arg(&world.events)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the existing rejections first");
    }
    assert!(
        !verify(&mut c, "registry.test/pullguard/app:v10", "")
            .await
            .allowed
    );
    let line = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the new rejection, followed");
    assert!(line.contains("app:v10"), "{line}");
    let _ = child.kill();
    let _ = child.wait();

    // Error paths.
    let (code, _, text) = pullguard(&["events", "--file", "/nonexistent/events.jsonl"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("cannot read the events file")
            && text.contains("check the path given with --file"),
        "{text}"
    );
    let (code, _, _) = pullguard(&[
        "events",
        "--file",
        world.events.to_str().unwrap(),
        "--since",
        "soon",
    ]);
    assert_eq!(code, 2);
}

/// `pullguard events --json | shipper`: a reader that goes away (a shipper restarting,
/// `| head`) ends the command quietly, not with a panic and exit 101.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_output_pipe_ends_events_quietly() {
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"any\"\nmatch = \"**\"\nrequire = \"any\"\n",
        world.daemon_section("")
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    // Well over a pipe's 64 KiB of events.
    for n in 0..600 {
        assert!(
            verify(&mut c, &format!("registry.test/app:v{n}"), "")
                .await
                .allowed
        );
    }
    let mut child = Command::new(harness::bin("pullguard"))
        .args(["events", "--json", "--file"])
        .arg(&world.events)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    // The reader is dropped here: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{:?} {stderr}",
        out.status
    );
}

/// A typo'd filter matched nothing and said nothing; the sets are closed, so it is a
/// usage error naming the nearest value.
#[test]
fn typod_filters_are_usage_errors_with_the_nearest_value() {
    for (flag, typo, nearest) in [
        ("--reason", "unknwn_tag", "unknown_tag"),
        ("--event", "pull.rejectd", "pull.rejected"),
    ] {
        let (code, _, text) = pullguard(&["events", flag, typo, "--file", "/dev/null"]);
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains(&format!("did you mean \"{nearest}\"")),
            "{text}"
        );
    }
}

/// `events --policy FILE` when FILE does not load — exactly when the operator wants the
/// `policy.invalid` event — says so, and reads the file pullguardd says it writes; with
/// no daemon to ask, it says it reads the default.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_does_not_load_is_said_and_the_daemons_events_file_is_read() {
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"any\"\nmatch = \"**\"\nrequire = \"any\"\n",
        world.daemon_section("")
    ));
    let daemon = Daemon::start(&world);
    // A broken edit: the daemon keeps the last good policy and records policy.invalid.
    std::fs::write(&world.config, "[[rule]]\nname = \"any\"\nmatch = \n").unwrap();
    harness::nth_event(&world, "policy.invalid", 1).await;
    let run = |socket: &std::path::Path| {
        Command::new(harness::bin("pullguard"))
            .args(["events", "--event", "policy.invalid", "--policy"])
            .arg(&world.config)
            .env("PULLGUARD_SOCKET", socket)
            .output()
            .unwrap()
    };
    let out = run(&world.socket);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the policy does not load ("), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "reading {}, the events file pullguardd writes",
            world.events.display()
        )),
        "{stderr}"
    );
    assert!(stdout.contains("policy.invalid"), "{stdout}");
    drop(daemon);
    let out = run(&world.dir.path().join("no-daemon.sock"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pullguardd did not answer ("), "{stderr}");
}

/// An events file with raw control characters in its fields (written by an older
/// pullguardd, or by hand): they reach the operator's terminal as `?`, not as escapes
/// that clear the screen or newlines that forge lines.
#[test]
fn control_characters_in_an_events_file_do_not_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(
        &file,
        "{\"time\":\"2026-12-07T00:00:00Z\",\"event\":\"pull.rejected\",\"image\":\"a\\u001b[2J\\nforged\",\"message\":\"m\\r\\n\"}\n",
    )
    .unwrap();
    let (code, _, out) = pullguard(&["events", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(out.contains("image=a?[2J?forged"), "{out:?}");
}
