//! `pullguard trust verify` as operators and acceptance checks run it (docs/contracts.md
//! §2), against trust data made by the real notary-server and notary CLI
//! (tests/fixtures/notary-real) and by old Notary clients (tests/fixtures/notary-compat).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const GUN: &str = "registry.test/pullguard/app";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn real_dir() -> PathBuf {
    repo_root().join("tests/fixtures/notary-real/metadata")
}

/// The fixtures are evaluated at a fixed time after they were made, never at the clock.
fn made_at() -> OffsetDateTime {
    let s = std::fs::read_to_string(repo_root().join("tests/fixtures/notary-real/made-at"))
        .expect("made-at");
    OffsetDateTime::parse(s.trim(), &Rfc3339).expect("made-at is RFC 3339")
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

fn soon() -> String {
    at(made_at() + Duration::hours(1))
}

fn shared_compat() -> PathBuf {
    // Kept in the repository (tests/fixtures/README.md says where they come from).
    repo_root().join("tests/fixtures/notary-compat")
}

struct Outcome {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .arg("trust")
        .arg("verify")
        .args(args)
        .output()
        .expect("run pullguard");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn verify_real(dir: &Path, extra: &[&str]) -> Outcome {
    let now = soon();
    let mut args = vec![
        "--metadata-dir",
        dir.to_str().expect("utf8"),
        "--gun",
        GUN,
        "--now",
        now.as_str(),
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn assert_rejected(o: &Outcome, reason: &str) {
    assert_eq!(o.code, 1, "stdout: {} stderr: {}", o.stdout, o.stderr);
    assert_eq!(o.json["trusted"], false, "{}", o.stdout);
    assert_eq!(o.json["reason"], reason, "{}", o.stdout);
    assert!(
        o.json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        o.stdout
    );
}

fn expected_digest(tag: &str) -> String {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/notary-real/expected.json"))
            .expect("expected.json"),
    )
    .expect("json");
    let entry = v["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .find(|t| t["tag"] == tag)
        .expect("tag in expected.json");
    format!("sha256:{}", entry["sha256"].as_str().expect("sha"))
}

/// A writable copy of the real metadata, for cases that alter it.
fn copy_real() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&real_dir(), tmp.path());
    tmp
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

fn edit_signed(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    edit(&mut doc);
    std::fs::write(path, serde_json::to_vec(&doc).expect("json")).expect("write");
}

#[test]
fn real_tags_resolve_like_notary_lookup() {
    for (tag, role) in [
        ("v1", "targets"),
        ("v2", "targets/releases"),
        ("v3", "targets/releases"),
    ] {
        let o = verify_real(&real_dir(), &["--tag", tag]);
        assert_eq!(o.code, 0, "{tag}: {} {}", o.stdout, o.stderr);
        assert_eq!(o.json["trusted"], true);
        assert_eq!(o.json["gun"], GUN);
        assert_eq!(o.json["tag"], tag);
        assert_eq!(o.json["role"], role);
        assert_eq!(o.json["digest"], expected_digest(tag.trim()));
        assert_eq!(o.json["size"], 87);
        assert_eq!(o.json["root_trust"], "tofu");
        assert_eq!(o.json["signers"].as_array().map(Vec::len), Some(1));
        for r in ["root", "timestamp", "snapshot", "targets"] {
            assert!(o.json["expires"][r].is_string(), "expires.{r}");
        }
    }
}

#[test]
fn real_length_beyond_32_bits_stays_an_integer() {
    let o = verify_real(&real_dir(), &["--tag", "big"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json["size"], 123_456_789_012_u64);
    assert_eq!(o.json["digest"], expected_digest("big"));
}

#[test]
fn real_tag_signed_only_by_another_delegation() {
    let o = verify_real(&real_dir(), &["--tag", "qa-only"]);
    assert_rejected(&o, "unknown_tag");
    assert!(o.json["message"]
        .as_str()
        .unwrap_or("")
        .contains("only targets/qa signs it"));
    let o = verify_real(&real_dir(), &["--tag", "qa-only", "--any-role"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json["role"], "targets/qa");
    assert_eq!(o.json["digest"], expected_digest("qa-only"));
}

#[test]
fn real_unknown_tag_and_digests() {
    assert_rejected(&verify_real(&real_dir(), &["--tag", "v9"]), "unknown_tag");
    let d = expected_digest("v2");
    let o = verify_real(&real_dir(), &["--digest", &d]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json["tag"], "v2");
    let other = format!("sha256:{}", "0".repeat(64));
    assert_rejected(
        &verify_real(&real_dir(), &["--digest", &other]),
        "digest_mismatch",
    );
}

#[test]
fn real_root_rotation_from_a_trusted_root() {
    let v1 = real_dir().join("1.root.json");
    let o = verify_real(
        &real_dir(),
        &["--tag", "v1", "--trusted-root", v1.to_str().expect("utf8")],
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json["root_trust"], "trusted-root");

    let gap = copy_real();
    std::fs::remove_file(gap.path().join("2.root.json")).expect("rm");
    let o = verify_real(
        gap.path(),
        &["--tag", "v1", "--trusted-root", v1.to_str().expect("utf8")],
    );
    assert_rejected(&o, "root_rotation_broken");
}

#[test]
fn real_timestamp_expires_after_fourteen_days() {
    let later = at(made_at() + Duration::days(15));
    let o = run(&[
        "--metadata-dir",
        real_dir().to_str().expect("utf8"),
        "--gun",
        GUN,
        "--tag",
        "v1",
        "--now",
        &later,
        "--json",
    ]);
    assert_rejected(&o, "expired");
    assert!(
        o.json["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("timestamp expired"),
        "{}",
        o.stdout
    );
}

#[test]
fn real_stale_timestamp_with_max_age() {
    let later = at(made_at() + Duration::hours(2));
    let dir = real_dir();
    let base = [
        "--metadata-dir",
        dir.to_str().expect("utf8"),
        "--gun",
        GUN,
        "--tag",
        "v1",
        "--now",
        &later,
        "--json",
    ];
    let o = run(&[&base[..], &["--max-age", "30m"]].concat());
    assert_rejected(&o, "stale_timestamp");
    let o = run(&[&base[..], &["--max-age", "1d"]].concat());
    assert_eq!(o.code, 0, "{}", o.stdout);
}

/// The root key of the real root.json: its ID and certificate PEM.
fn real_root_key() -> (String, Vec<u8>) {
    let root: Value =
        serde_json::from_slice(&std::fs::read(real_dir().join("root.json")).expect("root"))
            .expect("json");
    let id = root["signed"]["roles"]["root"]["keyids"][0]
        .as_str()
        .expect("id")
        .to_owned();
    let b64 = root["signed"]["keys"][&id]["keyval"]["public"]
        .as_str()
        .expect("public");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("b64");
    (id, pem)
}

#[test]
fn real_root_pinned_by_key_id_and_certificate() {
    let (id, pem) = real_root_key();
    let o = verify_real(&real_dir(), &["--tag", "v1", "--root-key-id", &id]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json["root_trust"], "pinned");

    let tmp = tempfile::tempdir().expect("tmp");
    let cert = tmp.path().join("root.crt");
    std::fs::write(&cert, pem).expect("write");
    let o = verify_real(
        &real_dir(),
        &["--tag", "v1", "--root-cert", cert.to_str().expect("utf8")],
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json["root_trust"], "pinned");

    let zeros = "0".repeat(64);
    assert_rejected(
        &verify_real(&real_dir(), &["--tag", "v1", "--root-key-id", &zeros]),
        "root_not_pinned",
    );
    let other = shared_compat().join(
        "notary0.1/trusted_certificates/docker.com/notary0.1/samplerepo/4ff57dc987163053a12c066f2dd36b1ae6037a92f5416d381fe311a3db1868d8.crt",
    );
    let o = verify_real(
        &real_dir(),
        &["--tag", "v1", "--root-cert", other.to_str().expect("utf8")],
    );
    assert_rejected(&o, "root_not_pinned");
}

#[test]
fn real_root_issued_by_a_pinned_ca() {
    let base = repo_root().join("tests/fixtures/notary-real/ca-pinned");
    let meta = base.join("metadata");
    let gun = "registry.test/pullguard/ca-pinned";
    let now = soon();
    // `--root-ca CA`, and `--root-key-id ID` beside it when given.
    let with_key = |ca: &str, key_id: Option<&str>| {
        let ca = base.join(ca);
        let mut args = vec![
            "--metadata-dir",
            meta.to_str().expect("utf8"),
            "--gun",
            gun,
            "--tag",
            "v1",
            "--now",
            &now,
            "--root-ca",
            ca.to_str().expect("utf8"),
            "--json",
        ];
        if let Some(id) = key_id {
            args.extend(["--root-key-id", id]);
        }
        run(&args)
    };
    let run_with = |ca: &str| with_key(ca, None);
    let o = run_with("ca.crt");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert_eq!(o.json["root_trust"], "pinned");
    assert_rejected(&run_with("other-ca.crt"), "root_not_pinned");
    // Same name as the real CA, different key.
    assert_rejected(&run_with("impostor-ca.crt"), "root_not_pinned");
    // A key ID pinned beside the CA decides alone (Notary's order): another key's ID
    // refuses the CA-issued root; its own ID lets it in whatever CA is named.
    let other_key = "ab".repeat(32);
    assert_rejected(&with_key("ca.crt", Some(&other_key)), "root_not_pinned");
    let own = "1222cafa242ec13abf29e2f67ac3f058f6164b7243d88e911f9f03d33f042212";
    let o = with_key("other-ca.crt", Some(own));
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
}

#[test]
fn real_tampered_and_unsigned_timestamp() {
    let tmp = copy_real();
    let ts = tmp.path().join("timestamp.json");
    edit_signed(&ts, |d| d["signed"]["version"] = Value::from(1000));
    assert_rejected(&verify_real(tmp.path(), &["--tag", "v1"]), "bad_signature");
    edit_signed(&ts, |d| d["signatures"] = Value::Array(vec![]));
    assert_rejected(
        &verify_real(tmp.path(), &["--tag", "v1"]),
        "threshold_not_met",
    );
}

#[test]
fn real_padded_timestamp_is_oversized() {
    let tmp = copy_real();
    let ts = tmp.path().join("timestamp.json");
    let mut bytes = std::fs::read(&ts).expect("read");
    bytes.splice(1..1, std::iter::repeat_n(b' ', 1024 * 1024));
    std::fs::write(&ts, bytes).expect("write");
    assert_rejected(&verify_real(tmp.path(), &["--tag", "v1"]), "oversized");
}

#[test]
fn real_targets_altered_against_snapshot() {
    let tmp = copy_real();
    let targets = tmp.path().join("targets.json");
    let mut bytes = std::fs::read(&targets).expect("read");
    bytes.push(b'\n');
    std::fs::write(&targets, &bytes).expect("write");
    assert_rejected(
        &verify_real(tmp.path(), &["--tag", "v1"]),
        "length_mismatch",
    );

    bytes.pop();
    // Same length, one hex digit of a key ID changed: the hash must catch it.
    let pos = bytes
        .windows(7)
        .position(|w| w == b"keyids\"")
        .expect("keyids")
        + 10;
    bytes[pos] = if bytes[pos] == b'a' { b'b' } else { b'a' };
    std::fs::write(&targets, &bytes).expect("write");
    assert_rejected(&verify_real(tmp.path(), &["--tag", "v1"]), "hash_mismatch");
}

#[test]
fn real_snapshot_from_another_publish_is_rejected() {
    // snapshot.json of an earlier publish, served with the current timestamp.
    let tmp = copy_real();
    edit_signed(&tmp.path().join("snapshot.json"), |d| {
        d["signed"]["version"] = Value::from(1)
    });
    let o = verify_real(tmp.path(), &["--tag", "v1"]);
    assert!(
        ["hash_mismatch", "length_mismatch"].contains(&o.json["reason"].as_str().unwrap_or("")),
        "{}",
        o.stdout
    );
    assert_eq!(o.code, 1);
}

#[test]
fn malformed_and_missing_trust_data() {
    let tmp = copy_real();
    std::fs::write(tmp.path().join("timestamp.json"), b"this is not json").expect("write");
    assert_rejected(
        &verify_real(tmp.path(), &["--tag", "v1"]),
        "malformed_metadata",
    );

    let empty = tempfile::tempdir().expect("tmp");
    let o = verify_real(empty.path(), &["--tag", "v1"]);
    assert_rejected(&o, "no_trust_data");
}

#[test]
fn usage_errors_exit_2() {
    let o = verify_real(Path::new("/nonexistent/pullguard"), &["--tag", "v1"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("cannot read metadata directory"),
        "{}",
        o.stderr
    );
    let o = verify_real(&real_dir(), &["--digest", "sha256:xyz"]);
    assert_eq!(o.code, 2);
    let o = run(&[
        "--metadata-dir",
        "x",
        "--gun",
        GUN,
        "--tag",
        "v1",
        "--now",
        "yesterday",
    ]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--now"), "{}", o.stderr);
    let o = run(&["--metadata-dir", "x", "--gun", GUN]);
    assert_eq!(o.code, 2, "neither --tag nor --digest");
}

#[test]
fn human_output_names_the_verdict_and_the_reason() {
    let dir = real_dir();
    let now = soon();
    let o = run(&[
        "--metadata-dir",
        dir.to_str().expect("utf8"),
        "--gun",
        GUN,
        "--tag",
        "v2",
        "--now",
        &now,
    ]);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout
            .starts_with(&format!("trusted: {GUN}:v2 -> {}", expected_digest("v2"))),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("trust on first use"), "{}", o.stdout);
    let o = run(&[
        "--metadata-dir",
        dir.to_str().expect("utf8"),
        "--gun",
        GUN,
        "--tag",
        "nope",
        "--now",
        &now,
    ]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.starts_with("rejected: tag \"nope\" is not signed"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.trim_end().ends_with("[unknown_tag]"),
        "{}",
        o.stdout
    );
}

fn compat(version: &str, gun_tail: &str, tag: &str, now: &str) -> Outcome {
    let dir = shared_compat().join(format!(
        "{version}/tuf/docker.com/{version}/{gun_tail}/metadata"
    ));
    let gun = format!("docker.com/{version}/{gun_tail}");
    run(&[
        "--metadata-dir",
        dir.to_str().expect("utf8"),
        "--gun",
        &gun,
        "--tag",
        tag,
        "--now",
        now,
        "--json",
    ])
}

#[test]
fn compat_notary_0_1_is_trusted() {
    for now in [
        "2026-01-01T00:00:00Z",
        "2026-11-25T00:00:00Z",
        "2100-01-01T00:00:00Z",
    ] {
        let o = compat("notary0.1", "samplerepo", "LICENSE", now);
        assert_eq!(o.code, 0, "{now}: {}", o.stdout);
        assert_eq!(
            o.json["digest"],
            "sha256:9395bac6fccb26bcb55efb083d1b4b0fe72a1c25f959f056c016120b3bb56a62"
        );
        assert_eq!(o.json["size"], 11309);
        assert_eq!(o.json["role"], "targets");
    }
}

#[test]
fn compat_notary_0_1_before_its_certificate_is_valid() {
    let o = compat("notary0.1", "samplerepo", "LICENSE", "2015-06-01T00:00:00Z");
    assert_rejected(&o, "certificate_expired");
    assert!(
        o.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("is not valid until 2016-02-05"),
        "{}",
        o.stdout
    );
}

/// Notary accepts a root certificate whose notBefore is up to a day ahead of the node's
/// clock (signer and node clocks differ); a real repository signed just after its root
/// certificate was made must not be refused for it. notBefore is 2016-02-05T00:58:57Z.
#[test]
fn compat_root_certificate_starting_within_a_day_is_accepted_as_notary_does() {
    let o = compat("notary0.1", "samplerepo", "LICENSE", "2016-02-04T01:00:00Z");
    assert_eq!(o.code, 0, "23h 59m early: {}", o.stdout);
    let o = compat("notary0.1", "samplerepo", "LICENSE", "2016-02-04T00:58:00Z");
    assert_rejected(&o, "certificate_expired");
}

#[test]
fn compat_notary_0_3_trusted_until_its_root_certificate_expires() {
    let o = compat("notary0.3", "tst", "hello", "2026-07-01T00:00:00Z");
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(
        o.json["role"], "targets/releases",
        "rsapss-signed rsa-x509 delegation"
    );
    assert_eq!(
        o.json["digest"],
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let o = compat("notary0.3", "tst", "LICENSE", "2026-07-01T00:00:00Z");
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json["size"], 11309);

    let o = compat("notary0.3", "tst", "hello", "2026-08-01T00:00:00Z");
    assert_rejected(&o, "certificate_expired");
    assert!(
        o.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired 2026-07-25"),
        "{}",
        o.stdout
    );
}

#[test]
fn compat_root_certificate_must_name_the_repository() {
    let dir = shared_compat().join("notary0.1/tuf/docker.com/notary0.1/samplerepo/metadata");
    let o = run(&[
        "--metadata-dir",
        dir.to_str().expect("utf8"),
        "--gun",
        "docker.com/other/repo",
        "--tag",
        "LICENSE",
        "--now",
        "2026-01-01T00:00:00Z",
        "--json",
    ]);
    assert_rejected(&o, "root_not_pinned");
    assert!(
        o.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("not to this repository"),
        "{}",
        o.stdout
    );
}

/// Without any anchor the text output says so and names every way to give one (it named
/// three of the six).
#[test]
fn first_use_names_every_way_to_anchor_the_root() {
    let o = run(&[
        "--metadata-dir",
        real_dir().to_str().unwrap(),
        "--gun",
        "registry.test/pullguard/app",
        "--tag",
        "v2",
        "--now",
        &soon(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for option in [
        "--trusted-root",
        "--root-cert",
        "--root-key-id",
        "--root-ca",
        "--keys-dir",
        "--state-dir",
    ] {
        assert!(o.stdout.contains(option), "{option}: {}", o.stdout);
    }
}
