//! Against a notary-server started for this test: signs a repository with the real
//! `notary` CLI (tests/notary/make-fixtures.sh), then verifies it at the wall clock.
//! Needs the Debian package `notary`; scripts/test installs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn verify(dir: &Path, tag: &str) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .args(["trust", "verify", "--metadata-dir"])
        .arg(dir)
        .args([
            "--gun",
            "registry.test/pullguard/app",
            "--tag",
            tag,
            "--json",
        ])
        .output()
        .expect("run pullguard");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn freshly_signed_repository_verifies_now() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/notary/make-fixtures.sh");
    let out = tempfile::tempdir().expect("tmp");
    let status = Command::new("bash")
        .arg(&script)
        .arg(out.path())
        .status()
        .expect("bash");
    assert!(
        status.success(),
        "tests/notary/make-fixtures.sh failed: is the Debian package `notary` installed? (scripts/test installs it)"
    );
    let meta = out.path().join("metadata");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("expected.json")).expect("expected"))
            .expect("json");
    for entry in expected["tags"].as_array().expect("tags") {
        let tag = entry["tag"].as_str().expect("tag");
        let (code, json) = verify(&meta, tag);
        // notary lookup found every tag; Docker's rules accept all but the qa delegation.
        assert!(entry["notary_lookup"]
            .as_str()
            .unwrap_or("")
            .contains(entry["sha256"].as_str().unwrap_or("?")));
        if tag == "qa-only" {
            assert_eq!(
                (code, json["reason"].as_str()),
                (1, Some("unknown_tag")),
                "{json}"
            );
        } else {
            assert_eq!(code, 0, "{tag}: {json}");
            assert_eq!(
                json["digest"],
                format!("sha256:{}", entry["sha256"].as_str().unwrap_or(""))
            );
        }
    }
}
