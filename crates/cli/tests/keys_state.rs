//! `pullguard keys` and `trust verify --state-dir/--keys-dir`: what a node remembers,
//! across process restarts, with trust data from the real notary-server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const GUN: &str = "registry.test/pullguard/app";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/notary-real")
}

fn now() -> OffsetDateTime {
    let s = std::fs::read_to_string(fixtures().join("made-at")).expect("made-at");
    OffsetDateTime::parse(s.trim(), &Rfc3339).expect("time") + Duration::hours(1)
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("fmt")
}

struct Out {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

fn pullguard(args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .args(args)
        .env_remove("PULLGUARD_KEY_PASSPHRASE")
        .env_remove("PULLGUARD_IMPORT_PASSPHRASE")
        .envs(env.iter().copied())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Out {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn verify(meta: &Path, gun: &str, when: &str, extra: &[&str]) -> Out {
    let mut args = vec![
        "trust",
        "verify",
        "--metadata-dir",
        meta.to_str().unwrap(),
        "--gun",
        gun,
        "--tag",
        "v1",
        "--now",
        when,
        "--json",
    ];
    args.extend_from_slice(extra);
    pullguard(&args, &[])
}

#[test]
fn rollback_is_caught_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = state.to_str().unwrap();
    let when = at(now());
    // First process: the current repository (root v3, timestamp v8…), trusted on first use.
    let o = verify(
        &fixtures().join("metadata"),
        GUN,
        &when,
        &["--state-dir", s],
    );
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert_eq!(o.json["root_trust"], "tofu");
    // Without the state, the older copy looks fine on its own…
    let o = verify(&fixtures().join("earlier"), GUN, &when, &[]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    // …but a second process that remembers is not fooled.
    let o = verify(&fixtures().join("earlier"), GUN, &when, &["--state-dir", s]);
    assert_eq!(
        (o.code, o.json["reason"].as_str()),
        (1, Some("rollback")),
        "{}",
        o.stdout
    );
    // And the current one is now anchored in the state.
    let o = verify(
        &fixtures().join("metadata"),
        GUN,
        &when,
        &["--state-dir", s],
    );
    assert_eq!(o.json["root_trust"], "state", "{}", o.stdout);

    let o = pullguard(
        &["keys", "show-state", GUN, "--state-dir", s, "--json"],
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.json["versions"]["root"], 3);
    assert!(o.json["tofu"]["first_use"].is_string(), "{}", o.stdout);
    // A repository with no state: exit 1, as its --help says.
    let o = pullguard(
        &[
            "keys",
            "show-state",
            "registry.test/never/seen",
            "--state-dir",
            s,
            "--json",
        ],
        &[],
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(
        o.json.get("state"),
        Some(&serde_json::Value::Null),
        "{}",
        o.stdout
    );
    let help = pullguard(&["keys", "show-state", "--help"], &[]);
    assert!(
        help.stdout.contains("1 no state kept for the repository"),
        "{}",
        help.stdout
    );
}

#[test]
fn damaged_state_never_falls_back_to_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = state.to_str().unwrap();
    let when = at(now());
    assert_eq!(
        verify(
            &fixtures().join("metadata"),
            GUN,
            &when,
            &["--state-dir", s]
        )
        .code,
        0
    );
    let file = std::fs::read_dir(state.join("repos"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();

    let o = verify(
        &fixtures().join("metadata"),
        GUN,
        &when,
        &["--state-dir", s],
    );
    assert_eq!(o.code, 2, "{} {}", o.stdout, o.stderr);
    assert_ne!(o.json["trusted"], true);
    assert!(
        o.stderr.contains("is corrupt") && o.stderr.contains("forget-state"),
        "{}",
        o.stderr
    );

    // Only an explicit decision starts over.
    assert_eq!(
        pullguard(&["keys", "forget-state", GUN, "--state-dir", s], &[]).code,
        0
    );
    assert_eq!(
        verify(
            &fixtures().join("metadata"),
            GUN,
            &when,
            &["--state-dir", s]
        )
        .code,
        0
    );
}

#[test]
fn clock_set_backwards_is_refused_until_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("state");
    let s = s.to_str().unwrap();
    assert_eq!(
        verify(
            &fixtures().join("metadata"),
            GUN,
            &at(now()),
            &["--state-dir", s]
        )
        .code,
        0
    );
    let earlier = at(now() - Duration::days(2));
    let o = verify(
        &fixtures().join("metadata"),
        GUN,
        &earlier,
        &["--state-dir", s],
    );
    assert_eq!(
        (o.code, o.json["reason"].as_str()),
        (1, Some("clock_went_backwards")),
        "{}",
        o.stdout
    );
    assert_eq!(
        pullguard(&["keys", "forget-state", "--clock", "--state-dir", s], &[]).code,
        0
    );
    let o = verify(
        &fixtures().join("metadata"),
        GUN,
        &at(now() - Duration::minutes(30)),
        &["--state-dir", s],
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
}

#[test]
fn keys_dir_decides_pinning_and_tofu() {
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("keys");
    let k = k.to_str().unwrap();
    let cagun = "registry.test/pullguard/ca-pinned";
    let meta = fixtures().join("ca-pinned/metadata");
    let when = at(now());

    // Nothing pinned and no TOFU allowance: rejected, with the fix in the message.
    let o = verify(&meta, cagun, &when, &["--keys-dir", k]);
    assert_eq!(
        (o.code, o.json["reason"].as_str()),
        (1, Some("root_not_pinned")),
        "{}",
        o.stdout
    );
    assert!(
        o.json["message"]
            .as_str()
            .unwrap()
            .contains("pullguard keys pin"),
        "{}",
        o.stdout
    );

    // An unrelated CA for the prefix, the right CA for the exact name: exact wins.
    let other = fixtures().join("ca-pinned/other-ca.crt");
    let right = fixtures().join("ca-pinned/ca.crt");
    assert_eq!(
        pullguard(
            &[
                "keys",
                "pin",
                "registry.test/pullguard/*",
                "--ca",
                other.to_str().unwrap(),
                "--keys-dir",
                k
            ],
            &[]
        )
        .code,
        0
    );
    let o = verify(&meta, cagun, &when, &["--keys-dir", k]);
    assert_eq!(o.json["reason"], "root_not_pinned", "{}", o.stdout);
    assert_eq!(
        pullguard(
            &[
                "keys",
                "pin",
                cagun,
                "--ca",
                right.to_str().unwrap(),
                "--keys-dir",
                k
            ],
            &[]
        )
        .code,
        0
    );
    let o = verify(&meta, cagun, &when, &["--keys-dir", k]);
    assert_eq!(
        (o.code, o.json["root_trust"].as_str()),
        (0, Some("pinned")),
        "{}",
        o.stdout
    );

    // Explicit TOFU for another repository.
    assert_eq!(
        pullguard(&["keys", "pin", GUN, "--tofu", "--keys-dir", k], &[]).code,
        0
    );
    let o = verify(&fixtures().join("metadata"), GUN, &when, &["--keys-dir", k]);
    assert_eq!(
        (o.code, o.json["root_trust"].as_str()),
        (0, Some("tofu")),
        "{}",
        o.stdout
    );

    let o = pullguard(&["keys", "list", "--keys-dir", k, "--json"], &[]);
    assert_eq!(
        o.json["anchors"].as_array().map(Vec::len),
        Some(3),
        "{}",
        o.stdout
    );
    assert_eq!(
        pullguard(&["keys", "unpin", GUN, "--keys-dir", k], &[]).code,
        0
    );
    assert_eq!(
        verify(&fixtures().join("metadata"), GUN, &when, &["--keys-dir", k]).json["reason"],
        "root_not_pinned"
    );
}

#[test]
fn state_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = state.to_str().unwrap();
    assert_eq!(
        verify(
            &fixtures().join("metadata"),
            GUN,
            &at(now()),
            &["--state-dir", s]
        )
        .code,
        0
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = verify(
        &fixtures().join("metadata"),
        GUN,
        &at(now()),
        &["--state-dir", s],
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains(&format!("chmod go-w {s}")),
        "{}",
        o.stderr
    );
}

fn shared_compat() -> PathBuf {
    // Kept in the repository (tests/fixtures/README.md says where they come from).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/notary-compat")
}

#[test]
fn import_generate_and_list_signing_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("keys");
    let k = k.to_str().unwrap();
    let dir = shared_compat().join("notary0.1/private");
    let root = dir.join(
        "root_keys/d0c623c8e70c70d42a8a8125c44a8598588b3f6e31d5c21a83cbc338dfde8a68_root.key",
    );
    let targets = dir.join("tuf_keys/docker.com/notary0.1/samplerepo/7fc757801b9bab4ec9e35bfe7a6b61668ff6f4c81b5632af19e6c728ab799599_targets.key");
    let env = [
        ("PULLGUARD_IMPORT_PASSPHRASE", "randompass"),
        ("PULLGUARD_KEY_PASSPHRASE", "node passphrase"),
    ];
    let o = pullguard(
        &[
            "keys",
            "import",
            root.to_str().unwrap(),
            targets.to_str().unwrap(),
            "--keys-dir",
            k,
            "--json",
        ],
        &env,
    );
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let imported = o.json["imported"].as_array().unwrap();
    assert_eq!(
        imported[0]["key_id"],
        "d0c623c8e70c70d42a8a8125c44a8598588b3f6e31d5c21a83cbc338dfde8a68"
    );
    assert_eq!(
        imported[0]["role"], "root",
        "0.1 keeps the role in the file name"
    );
    assert_eq!(imported[1]["role"], "targets");

    let bad = [
        ("PULLGUARD_IMPORT_PASSPHRASE", "nope"),
        ("PULLGUARD_KEY_PASSPHRASE", "x"),
    ];
    let o = pullguard(
        &["keys", "import", root.to_str().unwrap(), "--keys-dir", k],
        &bad,
    );
    assert_eq!(o.code, 1, "{} {}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("NOT imported") && o.stdout.contains("wrong passphrase"),
        "{}",
        o.stdout
    );

    // Several files, one with another passphrase (notary 0.3's "password"): every file is
    // tried and the report says which were imported and which not.
    let other = shared_compat().join("notary0.3/private/root_keys/f4eaf871a74aa3b3a0ff95cef2455a1e4d461639f5625418e76756fc5c948690.key");
    let k2 = tmp.path().join("keys2");
    let o = pullguard(
        &[
            "keys",
            "import",
            other.to_str().unwrap(),
            targets.to_str().unwrap(),
            "--keys-dir",
            k2.to_str().unwrap(),
            "--json",
        ],
        &env,
    );
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert_eq!(
        o.json["imported"].as_array().unwrap().len(),
        1,
        "{}",
        o.stdout
    );
    assert_eq!(o.json["imported"][0]["role"], "targets");
    assert!(
        o.json["failed"][0]["file"]
            .as_str()
            .unwrap()
            .contains("f4eaf871"),
        "{}",
        o.stdout
    );
    assert!(
        o.json["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("wrong passphrase"),
        "{}",
        o.stdout
    );

    let o = pullguard(
        &[
            "keys",
            "generate",
            "--type",
            "ed25519",
            "--role",
            "targets/releases",
            "--keys-dir",
            k,
            "--json",
        ],
        &env,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.json["public_pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let stored = std::fs::read_to_string(o.json["path"].as_str().unwrap()).unwrap();
    assert!(
        stored.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "stored encrypted"
    );
    assert!(!stored.contains("node passphrase"));

    let o = pullguard(&["keys", "list", "--keys-dir", k, "--json"], &[]);
    let roles: Vec<&str> = o.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["role"].as_str())
        .collect();
    assert_eq!(roles.len(), 3, "{}", o.stdout);
    assert!(roles.contains(&"targets/releases") && roles.contains(&"root"));

    // No passphrase source at all: a clear error, not an unprotected key.
    let o = pullguard(
        &["keys", "generate", "--role", "targets", "--keys-dir", k],
        &[],
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("PULLGUARD_KEY_PASSPHRASE"),
        "{}",
        o.stderr
    );
}

/// `keys list --keys-dir /typo` listed zero pins and succeeded: a directory that does not
/// exist is an error an operator sees (exit 2), not an empty list.
#[test]
fn listing_a_keys_directory_that_does_not_exist_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("kesy");
    let o = pullguard(&["keys", "list", "--keys-dir", typo.to_str().unwrap()], &[]);
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert!(o.stderr.contains("does not exist"), "{}", o.stderr);
    std::fs::create_dir(&typo).unwrap();
    let o = pullguard(&["keys", "list", "--keys-dir", typo.to_str().unwrap()], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("pinned repositories (0)"), "{}", o.stdout);
}

/// `keys pin` stores a repository as the node names it (the Notary GUN): a pin written
/// `docker.io/alpine` pinned nothing before, and the rule's trust on first use decided.
/// A spelling that names no repository is refused, with the spelling to use.
#[test]
fn keys_pin_stores_the_nodes_name_for_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("keys");
    let k = k.to_str().unwrap();
    let o = pullguard(
        &["keys", "pin", "docker.io/alpine", "--tofu", "--keys-dir", k],
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    let index = std::fs::read_to_string(dir.path().join("keys/index.toml")).unwrap();
    assert!(
        index.contains("repository = \"docker.io/library/alpine\""),
        "{index}"
    );
    let o = pullguard(&["keys", "pin", "team/*", "--tofu", "--keys-dir", k], &[]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(
        o.stderr.contains("docker.io/library/team/*"),
        "{}",
        o.stderr
    );
    // The one spelling, whichever was typed, is what unpin removes.
    let o = pullguard(&["keys", "unpin", "docker.io/alpine", "--keys-dir", k], &[]);
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let index = std::fs::read_to_string(dir.path().join("keys/index.toml")).unwrap();
    assert!(!index.contains("alpine"), "{index}");
}
