//! What an operator who is not root sees: `status` and `keys list` say that access, not
//! the daemon or the directory, is the problem, and what to do; `allowed_gids` lets its
//! group reach the socket. The real binaries, the client run as `nobody` with setpriv.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use harness::{Daemon, World};

const NOBODY: &str = "65534";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
}

/// `pullguard ARGS` as uid/gid 65534: (exit code, stdout then stderr).
fn as_nobody(bin: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(bin)
        .args(args)
        .env_remove("PULLGUARD_SOCKET")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_who_may_not_connect_is_told_so_and_allowed_gids_opens_the_socket() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run the client as another user");
        return;
    }
    let world = World::new();
    std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The binary where nobody can run it (a build tree under /root is not).
    let bin = world.dir.path().join("pullguard");
    std::fs::copy(env!("CARGO_BIN_EXE_pullguard"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rules = "[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"any\"\n";
    world.write_config(&format!("{}{rules}", world.daemon_section("")));
    let _daemon = Daemon::start(&world);
    let socket = world.socket.to_str().unwrap();

    let (code, text) = as_nobody(&bin, &["status", "--socket", socket]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("permission denied to uid 65534")
            && text.contains("allowed_uids / allowed_gids")
            && text.contains("run this as root"),
        "{text}"
    );
    assert!(!text.contains("is it running"), "it is running: {text}");

    // Its gid allowed: the socket and its directory are given to that group at the reload.
    world.write_config(&format!(
        "{}{rules}",
        world.daemon_section(&format!("allowed_gids = [{NOBODY}]"))
    ));
    let reloaded = harness::eventually(10, || async {
        world.events_of("policy.reloaded").into_iter().next()
    })
    .await;
    assert!(reloaded.is_some(), "no reload");
    let (code, text) = as_nobody(&bin, &["status", "--socket", socket]);
    assert!(text.contains("last reload  ok at"), "{text}");
    assert_ne!(code, 3, "{text}");

    // keys list names the OS error and the fix, not "does not exist".
    let keys = world.dir.path().join("keys");
    std::fs::create_dir_all(keys.join("private")).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(keys.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, text) = as_nobody(
        &bin,
        &["keys", "list", "--keys-dir", keys.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("private: permission denied") && text.contains("run this as root"),
        "{text}"
    );
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let inner = keys.join("private");
    let (code, text) = as_nobody(
        &bin,
        &["keys", "list", "--keys-dir", inner.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("permission denied") && !text.contains("does not exist"),
        "{text}"
    );
}
