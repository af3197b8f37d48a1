//! `pullguard sigstore update-root` against a copy of Sigstore's real TUF repository
//! (crates/sigstore-tuf/tests/fixtures/root-signing) served over HTTP on 127.0.0.1 in the
//! CDN's layout, and read from a directory as an offline node would; at a pinned time,
//! since the newest copies there are expired today.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::pullguard;
use sha2::{Digest as _, Sha256};

const FRESH: &str = "2026-08-22T00:00:00Z";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigstore-tuf/tests/fixtures/root-signing")
}

/// The repository as tuf-repo-cdn.sigstore.dev lays it out.
fn cdn(dir: &Path, timestamp: &str) {
    let f = fixtures();
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    for n in 10..=15 {
        std::fs::copy(
            f.join(format!("root_history/{n}.root.json")),
            dir.join(format!("{n}.root.json")),
        )
        .unwrap();
    }
    std::fs::copy(f.join(timestamp), dir.join("timestamp.json")).unwrap();
    std::fs::copy(f.join("snapshot.json"), dir.join("165.snapshot.json")).unwrap();
    std::fs::copy(f.join("targets.json"), dir.join("14.targets.json")).unwrap();
    let tr = std::fs::read(f.join("targets/trusted_root.json")).unwrap();
    let name = format!("{}.trusted_root.json", hex::encode(Sha256::digest(&tr)));
    std::fs::write(dir.join("targets").join(name), tr).unwrap();
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> Server {
    // The picker every test shares, so no parallel test's server takes this port.
    let picked = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lib/free_port.py"))
        .output()
        .unwrap();
    assert!(picked.status.success(), "tests/lib/free_port.py failed");
    let port: u16 = String::from_utf8(picked.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "python3 -m http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child, format!("http://127.0.0.1:{port}"))
}

fn update(repo: &str, state: &Path, now: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let twelve = fixtures().join("root_history/12.root.json");
    let mut args = vec![
        "sigstore",
        "update-root",
        "--repository",
        repo,
        "--state-dir",
        state.to_str().unwrap(),
        "--initial-root",
        twelve.to_str().unwrap(),
        "--now",
        now,
    ];
    args.extend_from_slice(extra);
    pullguard(&args)
}

#[test]
fn updates_from_a_served_copy_of_sigstores_repository_and_keeps_it() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("cdn");
    cdn(&repo, "timestamp.json");
    let server = serve(&repo);
    let state = t.path().join("state");
    let (code, json, text) = update(&server.1, &state, FRESH, &["--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["root_version"], 15, "{json}");
    assert_eq!(json["changed"], true, "{json}");
    assert_eq!(json["timestamp_expires"], "2026-08-28T19:25:56Z", "{json}");
    let kept = state.join("sigstore-tuf");
    assert_eq!(
        std::fs::read(kept.join("trusted_root.json")).unwrap(),
        std::fs::read(fixtures().join("targets/trusted_root.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(kept.join("root.json")).unwrap(),
        std::fs::read(fixtures().join("root_history/15.root.json")).unwrap()
    );
    // Again: verified, nothing changed.
    let (code, _, text) = update(&server.1, &state, FRESH, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("verified, unchanged"), "{text}");
}

#[test]
fn an_offline_copy_in_a_directory_works_and_stale_or_rolled_back_copies_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("copy");
    cdn(&repo, "timestamp.json");
    let state = t.path().join("state");
    let (code, _, text) = update(repo.to_str().unwrap(), &state, FRESH, &[]);
    assert_eq!(code, 0, "{text}");
    let kept = std::fs::read(state.join("sigstore-tuf/timestamp.json")).unwrap();

    // Today: the copy is stale (root v15 expired on 2026-11-20): refused, kept unchanged.
    let (code, _, text) = update(repo.to_str().unwrap(), &state, "2026-12-05T00:00:00Z", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("expired at 2026-11-20T13:58:18Z"), "{text}");
    assert!(text.contains("the copy in use is unchanged"), "{text}");

    // An older timestamp than the one kept: a rollback.
    let older = t.path().join("older");
    cdn(&older, "timestamp-761.json");
    let (code, _, text) = update(older.to_str().unwrap(), &state, FRESH, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("older than version 762"), "{text}");
    assert_eq!(
        std::fs::read(state.join("sigstore-tuf/timestamp.json")).unwrap(),
        kept
    );

    // Nothing there: unreachable, exit 3.
    let (code, _, text) = update("http://127.0.0.1:9/", &t.path().join("s2"), FRESH, &[]);
    assert_eq!(code, 3, "{text}");
}
