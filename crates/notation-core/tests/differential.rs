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

use std::process::Command;

use notation_core::profile::{check_chain, check_store_certificate, StoreKind};
use sigstore_core::certs::Cert;
use test_support::differential::{peer, seed_and_count, Tally};

fn certs(pem: &[u8]) -> Option<Vec<Cert>> {
    sigstore_core::keys::pem_blocks(pem, "CERTIFICATE")
        .ok()?
        .iter()
        .map(|d| Cert::parse(d).ok())
        .collect()
}

#[test]
fn generated_chains_stores_and_identities_are_judged_as_notation_judges_them() {
    let (seed, count) = seed_and_count();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(peer("NOTATION_PEER"))
        .args(["differential", "--seed", &seed, "--count", &count, "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tally = Tally::new("notation", "docs/notation-differences.md");
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
        match c["kind"].as_str().unwrap() {
            "chain" => {
                let pem = std::fs::read(dir.path().join(format!("{id}.pem"))).unwrap();
                let chain = certs(&pem);
                let ours = match &chain {
                    Some(chain) => check_chain(chain),
                    None => Err("a certificate pullguard cannot parse".to_owned()),
                };
                tally.judge(
                    &id,
                    "chain",
                    &labels,
                    ours,
                    c["chain_ok"].as_bool().unwrap(),
                    c["chain_error"].as_str().unwrap(),
                );
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
                tally.judge(
                    &id,
                    if kind == StoreKind::Tsa {
                        "tsa store"
                    } else {
                        "ca store"
                    },
                    &labels,
                    ours,
                    c["store_ok"].as_bool().unwrap(),
                    c["store_error"].as_str().unwrap(),
                );
            }
            "identity" => {
                let ids: Vec<String> = c["identities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned())
                    .collect();
                let ours = notation_core::dn::check_identities(&ids);
                tally.judge(
                    &id,
                    "identity",
                    &labels,
                    ours,
                    c["ok"].as_bool().unwrap(),
                    c["error"].as_str().unwrap(),
                );
            }
            other => panic!("case kind {other}"),
        }
    }
    tally.finish(&seed);
}
