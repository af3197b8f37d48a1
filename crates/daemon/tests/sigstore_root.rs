//! pullguardd and Sigstore's public-good trusted root: its own TUF refresh from a
//! repository (a copy of Sigstore's real one, crates/sigstore-tuf/tests/fixtures, in the
//! CDN's layout in a directory), what `status` says of the root in use, and the events
//! an operator alerts on. The copy is expired today (its newest root on 2026-11-20), so
//! pullguardd's refresh, which uses the clock, must refuse it and say so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::path::{Path, PathBuf};

use harness::{nth_event, Daemon, World};
use sha2::{Digest as _, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigstore-tuf/tests/fixtures/root-signing")
}

fn cdn(dir: &Path) {
    let f = fixtures();
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    for n in 12..=15 {
        std::fs::copy(
            f.join(format!("root_history/{n}.root.json")),
            dir.join(format!("{n}.root.json")),
        )
        .unwrap();
    }
    std::fs::copy(f.join("timestamp.json"), dir.join("timestamp.json")).unwrap();
    std::fs::copy(f.join("snapshot.json"), dir.join("165.snapshot.json")).unwrap();
    std::fs::copy(f.join("targets.json"), dir.join("14.targets.json")).unwrap();
    let tr = std::fs::read(f.join("targets/trusted_root.json")).unwrap();
    std::fs::write(
        dir.join("targets").join(format!(
            "{}.trusted_root.json",
            hex::encode(Sha256::digest(&tr))
        )),
        tr,
    )
    .unwrap();
}

fn policy(world: &World, repo: &Path) -> String {
    format!(
        "{}[[rule]]\nname = \"keyless\"\nmatch = \"**\"\nmode = \"audit\"\nproofs = [\"cosign\"]\ntrusted_root = \"sigstore-public-good\"\ncosign_identities = [{{ subject = \"a@example.com\", issuer = \"https://accounts.google.com\" }}]\n",
        world.daemon_section(&format!("sigstore_tuf = \"{}\"\n", repo.display()))
    )
}

fn status(world: &World) -> serde_json::Value {
    let out = std::process::Command::new(harness::bin("pullguard"))
        .args(["status", "--json", "--socket"])
        .arg(&world.socket)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_repository_is_refused_in_an_event_and_the_shipped_root_stays() {
    let world = World::new();
    let repo = world.dir.path().join("tuf");
    cdn(&repo);
    world.write_config(&policy(&world, &repo));
    let _daemon = Daemon::start(&world);
    let ev = nth_event(&world, "trust_root.update_failed", 1).await;
    let m = ev["message"].as_str().unwrap();
    assert!(
        m.contains("expired at 2026-11-20T13:58:18Z") && m.contains("the kept copy stays in use"),
        "{ev}"
    );
    let s = status(&world);
    assert_eq!(
        s["sigstore_root"], "the copy shipped with pullguard (no TUF update kept yet)",
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_update_is_shown_in_status_and_its_expiry_is_an_event() {
    let world = World::new();
    let repo = world.dir.path().join("tuf");
    cdn(&repo);
    // An operator's update while the copy was fresh (an offline node's routine).
    let out = std::process::Command::new(harness::bin("pullguard"))
        .args(["sigstore", "update-root", "--repository"])
        .arg(&repo)
        .arg("--state-dir")
        .arg(&world.state)
        .arg("--initial-root")
        .arg(fixtures().join("root_history/12.root.json"))
        .args(["--now", "2026-08-22T00:00:00Z"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.write_config(&policy(&world, &repo));
    let _daemon = Daemon::start(&world);
    let s = status(&world);
    let root = s["sigstore_root"].as_str().unwrap();
    assert!(
        root.starts_with("TUF root version 15 (expires 2026-11-20T13:58:18Z)"),
        "{s}"
    );
    // Today the kept root has expired: said in status too, where an operator looks first.
    assert!(
        root.contains("; warning: the Sigstore trusted root's TUF root (root version 15) expired at 2026-11-20T13:58:18Z"),
        "{s}"
    );
    // And alertable (severity warning).
    let ev = nth_event(&world, "trust_root.expiring", 1).await;
    assert!(
        ev["message"]
            .as_str()
            .unwrap()
            .contains("root (root version 15) expired at 2026-11-20T13:58:18Z"),
        "{ev}"
    );
}
