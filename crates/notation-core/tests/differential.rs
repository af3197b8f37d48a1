//! pullguard's Notation rules against the Notary Project's own code, on generated
//! inputs: `notation-peer differential` (tests/notation/peer, over notation-core-go
//! v1.3.0 and notation-go v1.3.2) makes certificate chains, trust-store certificates and
//! trusted identities, valid and broken in every field the rules look at, and records
//! notation's verdict on each; pullguard judges the same inputs here. Every disagreement
//! fails the test unless docs/notation-differences.md lists it, with its reason.
//!
//! CI runs a fixed seed (1, 200 cases of each kind); `scripts/differential` runs long
//! random sessions (PULLGUARD_DIFFERENTIAL_SEED, PULLGUARD_DIFFERENTIAL_COUNT).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use notation_core::profile::{check_chain, check_store_certificate, StoreKind};
use sigstore_core::certs::Cert;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The notation peer, built by scripts/lib-tools.sh into the tools cache.
fn peer() -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". {}/scripts/lib-tools.sh; go_tools_env; printf %s \"$NOTATION_PEER\"",
            repo_root().display()
        ))
        .output()
        .unwrap();
    let p = PathBuf::from(String::from_utf8(out.stdout).unwrap());
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test (it builds the notation peer with Go)",
        p.display()
    );
    p
}

/// A documented difference: which check, the generator label that causes it, and
/// whether pullguard refuses what notation accepts or the other way round.
struct Known {
    check: String,
    label: String,
    pullguard_refuses: bool,
}

/// The table in docs/notation-differences.md: `| check | label | pullguard | why |`.
fn known() -> Vec<Known> {
    let text = std::fs::read_to_string(repo_root().join("docs/notation-differences.md")).unwrap();
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let [_, check, label, verdict, why, ..] = cells.as_slice() else {
                return None;
            };
            let label = label.trim_matches('`');
            let pullguard_refuses = match *verdict {
                "refuses" => true,
                "accepts" => false,
                _ => return None,
            };
            assert!(!why.is_empty(), "a row without its reason: {l}");
            Some(Known {
                check: (*check).to_owned(),
                label: label.to_owned(),
                pullguard_refuses,
            })
        })
        .collect()
}

fn certs(pem: &[u8]) -> Option<Vec<Cert>> {
    sigstore_core::keys::pem_blocks(pem, "CERTIFICATE")
        .ok()?
        .iter()
        .map(|d| Cert::parse(d).ok())
        .collect()
}

#[test]
fn generated_chains_stores_and_identities_are_judged_as_notation_judges_them() {
    let seed = std::env::var("PULLGUARD_DIFFERENTIAL_SEED").unwrap_or_else(|_| "1".to_owned());
    let count = std::env::var("PULLGUARD_DIFFERENTIAL_COUNT").unwrap_or_else(|_| "200".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(peer())
        .args(["differential", "--seed", &seed, "--count", &count, "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let known = known();
    assert!(
        !known.is_empty(),
        "docs/notation-differences.md has no table"
    );
    let mut unexplained = Vec::new();
    let (mut cases, mut agreed) = (0, 0);
    let mut explained: std::collections::BTreeMap<String, usize> = Default::default();
    let text = std::fs::read_to_string(dir.path().join("cases.jsonl")).unwrap();
    for line in text.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = c["id"].as_str().unwrap().to_owned();
        let labels: Vec<String> = c["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        // (check, ours, theirs, their reason, ours in words)
        let mut judged: Vec<(&str, bool, bool, String, String)> = Vec::new();
        match c["kind"].as_str().unwrap() {
            "chain" => {
                let pem = std::fs::read(dir.path().join(format!("{id}.pem"))).unwrap();
                let chain = certs(&pem);
                let ours = match &chain {
                    Some(chain) => check_chain(chain),
                    None => Err("a certificate pullguard cannot parse".to_owned()),
                };
                judged.push((
                    "chain",
                    ours.is_ok(),
                    c["chain_ok"].as_bool().unwrap(),
                    c["chain_error"].as_str().unwrap().to_owned(),
                    ours.err().unwrap_or_default(),
                ));
                let kind = if c["store_kind"] == "tsa" {
                    StoreKind::Tsa
                } else {
                    StoreKind::Signing
                };
                let index = c["store_index"].as_u64().unwrap() as usize;
                let ours = match &chain {
                    Some(chain) => check_store_certificate(&chain[index], kind),
                    None => Err("a certificate pullguard cannot parse".to_owned()),
                };
                judged.push((
                    if kind == StoreKind::Tsa {
                        "tsa store"
                    } else {
                        "ca store"
                    },
                    ours.is_ok(),
                    c["store_ok"].as_bool().unwrap(),
                    c["store_error"].as_str().unwrap().to_owned(),
                    ours.err().unwrap_or_default(),
                ));
            }
            "identity" => {
                let ids: Vec<String> = c["identities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned())
                    .collect();
                let ours = notation_core::dn::check_identities(&ids);
                judged.push((
                    "identity",
                    ours.is_ok(),
                    c["ok"].as_bool().unwrap(),
                    c["error"].as_str().unwrap().to_owned(),
                    ours.err().unwrap_or_default(),
                ));
            }
            other => panic!("case kind {other}"),
        }
        for (check, ours, theirs, their_reason, our_reason) in judged {
            cases += 1;
            if ours == theirs {
                agreed += 1;
                continue;
            }
            match known.iter().find(|k| {
                k.check == check && k.pullguard_refuses != ours && labels.contains(&k.label)
            }) {
                Some(k) => *explained.entry(format!("{check}: {}", k.label)).or_default() += 1,
                None => unexplained.push(format!(
                    "{id} {check}: pullguard {}, notation {} ({their_reason}; ours: {our_reason}); labels {labels:?}",
                    if ours { "accepts" } else { "refuses" },
                    if theirs { "accepts" } else { "refuses" },
                )),
            }
        }
    }
    println!(
        "differential (seed {seed}): {cases} judgements, {agreed} agree, {} listed differences {explained:?}, {} unexplained",
        cases - agreed - unexplained.len(),
        unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} disagreements with notation not listed in docs/notation-differences.md:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
    assert!(
        agreed * 2 > cases,
        "the generator made mostly disagreements"
    );
}
