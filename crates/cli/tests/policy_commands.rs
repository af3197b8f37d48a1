//! `pullguard policy check | explain | diff` and `pullguard verify --policy`: the real
//! binary, against a real notary-server (signed with the real notary CLI) and, for
//! `diff`, the images in a real containerd.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use common::pullguard;

use std::path::{Path, PathBuf};

use harness::{Containerd, Notary, World};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const SERVER: &str = "[trust_server.main]\nurl = \"https://notary.example.com\"\n\n[defaults]\ntrust_server = \"main\"\n";

#[test]
fn check_reports_errors_with_positions_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        &format!("{SERVER}\n[[rule]]\nname = \"prod\"\nmatch = \"r.io/**\"\nmode = \"enforced\"\nmax_timestamp_age = \"3 weeks\"\n"),
    );
    let (code, _, text) = pullguard(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("bad.toml:10:8: error:"), "{text}");
    assert!(text.contains("invalid (1 error)"), "{text}");
    let (code, json, _) = pullguard(&["policy", "check", bad.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"][0]["line"], 10);

    let warned = write(
        dir.path(),
        "warned.toml",
        &format!("{SERVER}\n[[rule]]\nname = \"hub\"\nmatch = \"docker.io/alpine:3.20\"\n\n[[rule]]\nname = \"any-prod\"\nmatch = \"**/prod/**\"\nany_registry = true\nrequire = \"any\"\n"),
    );
    let (code, _, text) = pullguard(&["policy", "check", warned.to_str().unwrap()]);
    assert_eq!(code, 0, "valid, with warnings: {text}");
    assert!(
        text.contains("warned.toml:9:9: warning: rule hub can never match")
            && text.contains("docker.io/library/alpine:3.20"),
        "{text}"
    );
    assert!(
        text.contains("warned.toml:13:9: warning: rule any-prod") && text.contains("attacker"),
        "{text}"
    );
    assert!(text.contains("valid, 2 rules, 2 warnings"), "{text}");
    let (_, json, _) = pullguard(&["policy", "check", warned.to_str().unwrap(), "--json"]);
    assert_eq!(json["warnings"].as_array().unwrap().len(), 2);

    // A policy file others can write: pullguardd would refuse it, so the check does.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&warned, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (code, _, text) = pullguard(&["policy", "check", warned.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("policy file:") && text.contains("chmod go-w"),
        "{text}"
    );
    std::fs::set_permissions(&warned, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Unreadable input is exit 2, as everywhere else (1 is "read, and invalid").
    let (code, _, text) = pullguard(&["policy", "check", "/nonexistent/policy.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot read the policy file"), "{text}");
    let one = write(
        dir.path(),
        "one.toml",
        &format!("{SERVER}\n[[rule]]\nname = \"reg\"\nmatch = \"registry.example.com/**\"\n"),
    );
    let (code, _, text) = pullguard(&["policy", "check", one.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("valid, 1 rule, 0 warnings"), "{text}");

    // "valid" only when pullguardd would load it: files the policy names are read too
    // (a missing ca_file passed here and was refused by the daemon's reload).
    let missing = write(
        dir.path(),
        "missing-files.toml",
        "[trust_server.main]\nurl = \"https://notary.example.com\"\nca_file = \"/nonexistent/ca.pem\"\n\n[defaults]\ntrust_server = \"main\"\n\n[[rule]]\nname = \"pinned\"\nmatch = \"registry.example.com/**\"\nroot_certs = [\"/nonexistent/root.crt\"]\n",
    );
    let (code, _, text) = pullguard(&["policy", "check", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    assert!(
        text.contains(":11:15: error: rule pinned: root_certs /nonexistent/root.crt"),
        "{text}"
    );
    assert!(text.contains("invalid (2 errors)"), "{text}");
    // The daemon's own check says the same, one problem per line.
    let out = std::process::Command::new(harness::bin("pullguardd"))
        .args(["--config", missing.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines.iter().all(|l| l.starts_with("pullguardd: ")), "{err}");
}

/// `--help` promises every problem: unknown keys and wrong values are all reported, each
/// at its line, with the key meant (as clap suggests for flags).
#[test]
fn check_reports_every_typo_with_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let typos = write(
        dir.path(),
        "typos.toml",
        &format!(
            "{SERVER}
[[rule]]
name = \"prod\"
match = \"r.io/**\"
modee = \"audit\"

[[rule]]
name = \"hub\"
match = \"docker.io/**\"
require = \"any\"
cosign_tlogg = true
"
        ),
    );
    let (code, _, text) = pullguard(&["policy", "check", typos.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "typos.toml:10:1: error: unknown key \"modee\" in rule 1; did you mean \"mode\"?"
        ),
        "{text}"
    );
    assert!(
        text.contains("typos.toml:16:1: error: unknown key \"cosign_tlogg\" in rule 2; did you mean \"cosign_tlog\"?"),
        "{text}"
    );
    assert!(text.contains("invalid (2 errors)"), "{text}");
}

#[test]
fn explain_names_the_winner_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.toml",
        &format!("{SERVER}\n[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"reject\"\n\n[[rule]]\nname = \"team\"\nmatch = \"r.io/team/**\"\nmode = \"audit\"\n"),
    );
    let p = p.to_str().unwrap();
    let (code, _, text) = pullguard(&["policy", "explain", "r.io/team/app", "--policy", p]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("normalised  r.io/team/app:latest"), "{text}");
    assert!(
        text.contains(
            "rule        team (match \"r.io/team/**\", line 14): the longest literal text before a wildcard"
        ),
        "{text}"
    );
    assert!(
        text.contains("applies     audit, signed, proof notary-v1, trust server main"),
        "{text}"
    );
    assert!(text.contains("also matches all"), "{text}");
    let (_, json, _) = pullguard(&["policy", "explain", "alpine", "--policy", p, "--json"]);
    assert_eq!(json["image"], "docker.io/library/alpine:latest");
    assert_eq!(json["rule"], "all");

    // What a migrating rule accepts: either proof, cosign's keys and log requirement.
    let mig = write(
        dir.path(),
        "m.toml",
        &format!("{SERVER}\n[[rule]]\nname = \"m\"\nmatch = \"**\"\nproofs = [\"notary-v1\", \"cosign\"]\nproofs_required = \"any\"\ncosign_keys = [\"team.pub\"]\ncosign_tlog = false\n"),
    );
    let (code, _, text) = pullguard(&[
        "policy",
        "explain",
        "r.io/x",
        "--policy",
        mig.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("any one of the proofs notary-v1, cosign (tried in this order), cosign: signed by one of 1 key(s) (team.pub), transparency log not required, trust server main"),
        "{text}"
    );

    let none = write(
        dir.path(),
        "none.toml",
        &format!("{SERVER}\n[[rule]]\nname = \"team\"\nmatch = \"r.io/team/**\"\n"),
    );
    let (code, _, text) = pullguard(&[
        "policy",
        "explain",
        "alpine",
        "--policy",
        none.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no_matching_rule"), "{text}");
    let (code, _, text) = pullguard(&["policy", "explain", "UPPER/Case", "--policy", p]);
    assert_eq!(code, 2, "{text}");
}

fn notary_policy(notary: &Notary, mode: &str) -> String {
    let world = World::new();
    let _ = &world;
    format!(
        "{}[[rule]]\nname = \"prod\"\nmatch = \"registry.test/pullguard/**\"\nmode = \"{mode}\"\n",
        World::server_section(notary)
    )
}

#[test]
fn verify_with_a_policy_file_needs_no_daemon() {
    let notary = Notary::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let p = write(
        dir.path(),
        "p.toml",
        &format!(
            "[daemon]\nkeys_dir = \"{}\"\n{}",
            keys.display(),
            notary_policy(&notary, "enforce")
        ),
    );
    let p = p.to_str().unwrap();
    let (code, json, text) = pullguard(&[
        "verify",
        "registry.test/pullguard/app:v2",
        "--policy",
        p,
        "--json",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["digest"], notary.get("DIGEST_V2"));
    assert_eq!(json["role"], "targets/releases");

    let (code, _, text) = pullguard(&["verify", "registry.test/pullguard/app:v9", "--policy", p]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("rejected [unknown_tag] (offline, policy file)"),
        "{text}"
    );
    assert!(text.contains("to fix      sign this tag"), "{text}");

    notary.stop_server();
    let (code, json, _) = pullguard(&[
        "verify",
        "registry.test/pullguard/app:v2",
        "--policy",
        p,
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(json["reason"], "trust_server_unreachable");

    let broken = write(dir.path(), "broken.toml", "[[rule]]\nmatch = 7\n");
    let (code, json, text) = pullguard(&[
        "verify",
        "alpine",
        "--policy",
        broken.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 2, "{text}");
    assert_eq!(json["error"], "bad_policy");
}

#[test]
fn diff_shows_which_verdicts_a_rollout_changes() {
    let cd = Containerd::start();
    let repo = cd.get("REPO").to_owned();
    for tag in ["signed", "unsigned"] {
        let (ok, out) = cd.pull("default", &format!("{repo}:{tag}"));
        assert!(ok, "{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let policy = |require: &str| {
        format!(
            "[daemon]\nkeys_dir = \"{}\"\n{}[[rule]]\nname = \"demo-{require}\"\nmatch = \"127.0.0.1:*/demo/**\"\nrequire = \"{require}\"\n",
            keys.display(),
            cd.server_section()
        )
    };
    let old = write(dir.path(), "old.toml", &policy("any"));
    let new = write(dir.path(), "new.toml", &policy("signed"));
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());

    // The images in containerd.
    let (code, json, text) = pullguard(&[
        "policy",
        "diff",
        old,
        new,
        "--containerd",
        cd.socket(),
        "--json",
    ]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(json["images"], 2);
    assert_eq!(json["changed"], 1, "{json}");
    let changed: Vec<_> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["changed"] == true)
        .collect();
    assert_eq!(changed[0]["image"], format!("default/{repo}:unsigned"));
    assert_eq!(changed[0]["new"]["reason"], "unknown_tag");
    assert_eq!(changed[0]["old"]["allowed"], true);
    // Nothing was removed: a diff enforces nothing.
    assert_eq!(cd.images("default").len(), 2);

    // A list instead of containerd; the same policy twice changes nothing.
    let list = write(
        dir.path(),
        "images.txt",
        &format!("# comment\n{repo}:signed\n\n{repo}:unsigned\n"),
    );
    let (code, _, text) = pullguard(&[
        "policy",
        "diff",
        old,
        new,
        "--images",
        list.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "{repo}:unsigned: allowed (rule demo-any) -> rejected [unknown_tag] (rule demo-signed)"
        )),
        "{text}"
    );
    assert!(
        text.contains("2 images, 1 verdict changes (1 newly rejected)"),
        "{text}"
    );
    let (code, _, text) = pullguard(&[
        "policy",
        "diff",
        new,
        new,
        "--images",
        list.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");

    // Error paths: containerd unreachable (3), unreadable list (2).
    let (code, json, _) = pullguard(&[
        "policy",
        "diff",
        old,
        new,
        "--containerd",
        "/nonexistent.sock",
        "--json",
    ]);
    assert_eq!(code, 3);
    assert_eq!(json["error"], "containerd_unreachable");
    let (code, _, _) = pullguard(&["policy", "diff", old, new, "--images", "/nonexistent"]);
    assert_eq!(code, 2);
}

/// The shipped examples: each passes `--syntax-only`; every file a full check misses is
/// one its header says to create, and each such error names the key, its line and what
/// to do — once, not once per rule.
#[test]
fn examples_say_which_files_to_create_and_file_errors_name_key_and_line() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") || path.ends_with("demo.toml") {
            continue; // (demo.toml is a template the demo fills in)
        }
        let file = path.to_str().unwrap();
        let (code, _, text) = pullguard(&["policy", "check", "--syntax-only", file]);
        assert_eq!(code, 0, "{file}: {text}");
        let header: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let (code, _, text) = pullguard(&["policy", "check", file]);
        for line in text.lines().filter(|l| l.contains(": error: ")) {
            let (place, message) = line.split_once(": error: ").unwrap();
            // FILE:LINE:COLUMN
            let mut parts = place.rsplitn(3, ':');
            let (col, row) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                col.parse::<usize>().is_ok() && row.parse::<usize>().is_ok(),
                "no position: {line}"
            );
            let missing = message
                .split_whitespace()
                .find(|w| w.starts_with("/etc/pullguard/"))
                .unwrap_or_else(|| panic!("no file named: {line}"))
                .trim_end_matches(':');
            assert!(
                header.contains(missing),
                "{file}: its header does not say to create {missing}"
            );
            assert!(message.contains("create it or correct the path"), "{line}");
            assert!(
                [
                    "ca_file",
                    "cosign_keys",
                    "root_cas",
                    "notation_trust_stores"
                ]
                .iter()
                .any(|k| message.contains(k)),
                "no key named: {line}"
            );
            checked += 1;
        }
        assert!(code == 0 || code == 1, "{file}: {text}");
        assert_eq!(
            text.matches("corp-root-ca.crt").count(),
            usize::from(text.contains("corp-root-ca.crt")),
            "one line per missing file: {text}"
        );
    }
    assert!(checked > 0, "no example names a file");
    // Several rules naming one missing file: one error listing them.
    let (_, _, text) = pullguard(&[
        "policy",
        "check",
        dir.join("private-registry.toml").to_str().unwrap(),
    ]);
    assert!(
        text.contains("error: rules prod, corp, other-registries: root_cas /etc/pullguard/keys/corp-root-ca.crt"),
        "{text}"
    );
}

/// A policy file that is not there is named with the flag that names another, and no
/// meaningless `1:1` position (as `policy explain` and `pullguardd --check-config` said).
#[test]
fn a_missing_policy_file_names_the_flag_not_a_position() {
    let (code, _, text) = pullguard(&[
        "policy",
        "explain",
        "alpine",
        "--policy",
        "/nonexistent/p.toml",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("/nonexistent/p.toml: cannot read the policy file"),
        "{text}"
    );
    assert!(
        text.contains("--policy FILE") && !text.contains(":1:1"),
        "{text}"
    );
    let out = std::process::Command::new(harness::bin("pullguardd"))
        .args(["--config", "/nonexistent/p.toml", "--check-config"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("--config FILE") && !err.contains(":1:1"),
        "{err}"
    );
}
