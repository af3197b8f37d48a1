//! pullguard's cosign verification against Sigstore's own code, on generated inputs:
//! `sigstore-peer differential` (tests/sigstore/peer, over sigstore-go and cosign's
//! library) makes a Fulcio/CT/Rekor/TSA stack of its own and keyless image signatures in
//! both layouts cosign writes (Sigstore bundle, classic `.sig` layer annotations), valid
//! and broken in every field a verifier checks, and records the reference's verdict on
//! each; pullguard judges the same inputs here. Every disagreement fails the test unless
//! docs/sigstore-differences.md lists it, with its reason.
//!
//! CI runs a fixed seed (1, 200 cases); `scripts/differential` runs long random sessions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use sigstore_core::certs::Identity;
use sigstore_core::trust_root::TrustedRoot;
use sigstore_core::{bundle, classic, Expect};
use test_support::differential::{cosign_classic_manifest, peer, seed_and_count, Tally};

fn judge(dir: &Path, c: &serde_json::Value, root: &TrustedRoot) -> Result<(), String> {
    let id = &c["identity"];
    let issuer = id["issuer"].as_str().unwrap();
    let identity = match id["subject_regex"].as_str().filter(|r| !r.is_empty()) {
        Some(re) => Identity::regex(re, issuer)?,
        None => Identity::exact(id["subject"].as_str().unwrap(), issuer),
    };
    let identities = [identity];
    let expect = Expect {
        digest: c["digest"].as_str().unwrap(),
        same_repository: None,
        keys: &[],
        tlog: c["tlog"].as_bool().unwrap(),
        identities: &identities,
        root: Some(root),
        now: time::OffsetDateTime::now_utc(),
    };
    let file = |k: &str| std::fs::read(dir.join(c[k].as_str().unwrap())).unwrap();
    let verdict = match c["layout"].as_str().unwrap() {
        "bundle" => bundle::verify(&file("bundle"), &expect),
        "classic" => {
            let payload = file("payload");
            let annotations: serde_json::Value =
                serde_json::from_slice(&file("annotations")).unwrap();
            let layers = classic::layers(&cosign_classic_manifest(&payload, &annotations))
                .map_err(|e| e.to_string())?;
            let [layer] = layers.as_slice() else {
                return Err(format!("{} signature layers, not one", layers.len()));
            };
            classic::verify(layer, &payload, &expect)
        }
        other => panic!("layout {other}"),
    };
    verdict
        .map(|_| ())
        .map_err(|e| format!("{}: {}", e.reason.as_str(), e.message))
}

#[test]
fn generated_keyless_signatures_are_judged_as_sigstore_judges_them() {
    let (seed, count) = seed_and_count();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(peer("SIGSTORE_PEER"))
        .args(["differential", "--seed", &seed, "--count", &count, "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = TrustedRoot::parse(&std::fs::read(dir.path().join("trusted_root.json")).unwrap())
        .expect("the generated trusted root parses");
    let mut tally = Tally::new("sigstore", "docs/sigstore-differences.md");
    let mut layouts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let text = std::fs::read_to_string(dir.path().join("cases.jsonl")).unwrap();
    for line in text.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = c["id"].as_str().unwrap();
        let layout = c["layout"].as_str().unwrap();
        let labels: Vec<String> = c["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        let ours = judge(dir.path(), &c, &root);
        let theirs = c["peer_ok"].as_bool().unwrap();
        let e = layouts.entry(layout.to_owned()).or_default();
        e.0 += 1;
        e.1 += usize::from(theirs && ours.is_ok());
        tally.judge(
            id,
            layout,
            &labels,
            ours,
            theirs,
            c["peer_error"].as_str().unwrap_or_default(),
        );
    }
    let labels = tally.finish(&seed);
    // Both layouts were judged, valid signatures of each verified by both sides, and
    // every case that the reference refuses was refused by pullguard too (checked above).
    for layout in ["bundle", "classic"] {
        let (n, both_accept) = layouts.get(layout).copied().unwrap_or_default();
        assert!(
            n > 0 && both_accept > 0,
            "{layout}: {n} cases, {both_accept} accepted by both"
        );
        let (valid, _) = labels
            .get(&format!("{layout}: valid"))
            .copied()
            .unwrap_or_default();
        assert!(valid > 0, "{layout}: no valid case generated");
    }
}
