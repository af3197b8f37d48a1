//! `pullguard inspect` against a real notary-server signed with the real notary CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use common::pullguard;

use harness::Notary;

#[test]
fn inspect_shows_tags_signers_keys_and_roles() {
    let notary = Notary::start();
    let gun = notary.get("GUN").to_owned();
    let server = [
        "--server",
        notary.get("NOTARY_URL"),
        "--ca",
        notary.get("NOTARY_CA"),
    ];
    let with = |extra: &[&str], what: &str| {
        let mut a = vec!["inspect", what];
        a.extend_from_slice(&server);
        a.extend_from_slice(extra);
        pullguard(&a)
    };

    let (code, _, text) = with(&["--pretty"], &gun);
    assert_eq!(code, 0, "{text}");
    let v1 = notary.get("DIGEST_V1").trim_start_matches("sha256:");
    let v2 = notary.get("DIGEST_V2").trim_start_matches("sha256:");
    assert!(
        text.lines()
            .any(|l| l.starts_with("v1 ") && l.contains(v1) && l.ends_with("(Repo Admin)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("v2 ") && l.contains(v2) && l.ends_with("releases")),
        "{text}"
    );
    assert!(
        text.contains("Administrative keys for registry.test/pullguard/app"),
        "{text}"
    );
    assert!(text.contains("Root trust: trusted on first use"), "{text}");

    let (code, json, text) = with(&["--json"], &format!("{gun}:v2"));
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["signed_tags"].as_array().unwrap().len(), 1);
    assert_eq!(json["signed_tags"][0]["digest"], notary.get("DIGEST_V2"));
    assert_eq!(json["signers"][0]["role"], "targets/releases");
    let root_keys = json["administrative_keys"]["root"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(root_keys.len(), 1);
    assert!(json["roles"]["timestamp"]["version"].as_u64().unwrap() >= 1);

    // Pinned to the right root key: shown; to another: refused.
    let key = root_keys[0].as_str().unwrap();
    let (code, json, _) = with(&["--json", "--root-key-id", key], &gun);
    assert_eq!((code, json["root_trust"].as_str()), (0, Some("pinned")));
    let (code, json, _) = with(&["--json", "--root-key-id", &"ab".repeat(32)], &gun);
    assert_eq!((code, json["error"].as_str()), (1, Some("root_not_pinned")));
    // The hint gives the full ID to pin (the table's 12 digits cannot be pinned: a short
    // prefix could be matched by a key made for it), and a short one is refused as usage.
    let (_, _, text) = with(&[], &gun);
    assert!(
        text.contains(&format!("pullguard keys pin {gun} --key-id {key}")),
        "{text}"
    );
    let (code, json, _) = with(&["--json", "--root-key-id", &key[..12]], &gun);
    assert_eq!((code, json["error"].as_str()), (2, Some("bad_usage")));
    assert!(
        json["message"].as_str().unwrap().contains("64-digit"),
        "{json}"
    );

    // Error paths: an unsigned tag, an unknown repository, the server down.
    let (code, json, _) = with(&["--json"], &format!("{gun}:v9"));
    assert_eq!((code, json["error"].as_str()), (1, Some("unknown_tag")));
    let (code, json, _) = with(&["--json"], "registry.test/nobody/here");
    assert_eq!((code, json["error"].as_str()), (1, Some("no_trust_data")));
    notary.stop_server();
    let (code, json, text) = with(&["--json"], &gun);
    assert_eq!(
        (code, json["error"].as_str()),
        (3, Some("trust_server_unreachable")),
        "{text}"
    );
    let (code, _, _) = pullguard(&["inspect", &gun, "--metadata-dir", "/nonexistent"]);
    assert_eq!(code, 2);
}

/// Saved trust data is read as of `--now`: the fixtures' timestamp expires on
/// 2026-12-09, after which the README's example would otherwise fail.
#[test]
fn inspect_reads_saved_trust_data_as_of_now() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/notary-real/metadata"
    );
    let base = [
        "inspect",
        "registry.test/pullguard/app",
        "--metadata-dir",
        dir,
    ];
    let at = |now: &str| {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--now", now, "--json"]);
        pullguard(&args)
    };
    let (code, json, text) = at("2026-11-26T00:00:00Z");
    assert_eq!(code, 0, "{text}");
    assert!(json.to_string().contains("v2"), "{json}");
    let (code, json, text) = at("2027-01-01T00:00:00Z");
    assert_eq!(
        (code, json["error"].as_str()),
        (1, Some("expired")),
        "{text}"
    );
    let (code, _, _) = at("yesterday");
    assert_eq!(code, 2);
}

/// trust-core's own messages start with the repository; inspect does not say it twice.
#[test]
fn inspect_names_the_repository_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/notary-real/metadata/root.json"
    );
    std::fs::copy(src, dir.path().join("root.json")).unwrap();
    let gun = "registry.test/pullguard/app";
    let (code, json, text) = pullguard(&[
        "inspect",
        gun,
        "--metadata-dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (code, json["error"].as_str()),
        (1, Some("no_trust_data")),
        "{text}"
    );
    let message = json["message"].as_str().unwrap();
    assert_eq!(message.matches(gun).count(), 1, "{message}");
}
