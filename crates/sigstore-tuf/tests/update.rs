//! The TUF update against Sigstore's real repository (tests/fixtures/root-signing, laid
//! out as tuf-repo-cdn.sigstore.dev serves it), at a pinned time while its timestamp was
//! fresh; and every copy an attacker or a stale mirror could serve instead, refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use sigstore_tuf::{update, Fetch, Reason, State};
use time::macros::datetime;
use time::OffsetDateTime;

const FRESH: OffsetDateTime = datetime!(2026-08-22 00:00:00 UTC);
const TODAY: OffsetDateTime = datetime!(2026-12-05 00:00:00 UTC);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/root-signing")
            .join(name),
    )
    .unwrap()
}

/// A repository as the CDN lays it out: path → bytes. Reads are counted.
#[derive(Clone)]
struct Cdn {
    files: BTreeMap<String, Vec<u8>>,
    asked: Vec<String>,
}

impl Cdn {
    fn real() -> Cdn {
        let mut files = BTreeMap::new();
        for n in 10..=15 {
            files.insert(
                format!("{n}.root.json"),
                fixture(&format!("root_history/{n}.root.json")),
            );
        }
        files.insert("timestamp.json".into(), fixture("timestamp.json"));
        files.insert("165.snapshot.json".into(), fixture("snapshot.json"));
        files.insert("14.targets.json".into(), fixture("targets.json"));
        let tr = fixture("targets/trusted_root.json");
        files.insert(
            format!(
                "targets/{}.trusted_root.json",
                hex::encode(Sha256::digest(&tr))
            ),
            tr,
        );
        Cdn {
            files,
            asked: Vec::new(),
        }
    }
}

impl Fetch for Cdn {
    fn fetch(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        self.asked.push(path.to_owned());
        match self.files.get(path) {
            Some(b) if b.len() as u64 > max => Err(format!("{path} is over {max} bytes")),
            other => Ok(other.cloned()),
        }
    }
}

fn from(version: u32) -> State {
    State::from_root(fixture(&format!("root_history/{version}.root.json")))
}

#[test]
fn updates_from_an_embedded_root_to_the_newest_and_verifies_the_trusted_root() {
    let mut cdn = Cdn::real();
    let u = update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap();
    assert_eq!(u.root_version, 15);
    assert_eq!(u.targets_version, 14);
    assert_eq!(u.target, fixture("targets/trusted_root.json"));
    assert_eq!(u.state.root, fixture("root_history/15.root.json"));
    assert!(
        cdn.asked.contains(&"13.root.json".to_owned())
            && cdn.asked.contains(&"16.root.json".to_owned())
    );
    // Again from the state it left: nothing newer, the same answer.
    let again = update(&u.state, &mut Cdn::real(), FRESH, "trusted_root.json").unwrap();
    assert_eq!(again.target, u.target);
}

#[test]
fn walks_through_root_v11_whose_key_id_is_not_its_hash() {
    let u = update(&from(10), &mut Cdn::real(), FRESH, "trusted_root.json").unwrap();
    assert_eq!(u.root_version, 15);
}

#[test]
fn freeze_expired_copies_are_refused_as_of_today() {
    let e = update(&from(12), &mut Cdn::real(), TODAY, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::Expired, "{e}");
    assert!(
        e.message
            .contains("root (version 15) expired at 2026-11-20T13:58:18Z"),
        "{e}"
    );
    // A root still valid, the timestamp not: a mirror that stopped updating.
    let e = update(
        &from(12),
        &mut Cdn::real(),
        datetime!(2026-09-01 00:00:00 UTC),
        "trusted_root.json",
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::Expired, "{e}");
    assert!(e.message.contains("timestamp (version 762)"), "{e}");
}

#[test]
fn rollback_an_older_timestamp_than_trusted_is_refused() {
    let u = update(&from(12), &mut Cdn::real(), FRESH, "trusted_root.json").unwrap();
    let mut cdn = Cdn::real();
    cdn.files
        .insert("timestamp.json".into(), fixture("timestamp-761.json"));
    let e = update(&u.state, &mut cdn, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::Rollback, "{e}");
    assert!(
        e.message
            .contains("timestamp is version 761, older than version 762"),
        "{e}"
    );
    // Without the state, the older copy is fine (it is what the client knew of).
    update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap();
}

#[test]
fn mix_and_match_a_snapshot_other_than_the_timestamp_names_is_refused() {
    let mut cdn = Cdn::real();
    cdn.files
        .insert("165.snapshot.json".into(), fixture("snapshot-164.json"));
    let e = update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::Rollback, "{e}");
    assert!(e.message.contains("mixed copies"), "{e}");
}

#[test]
fn a_changed_or_re_signed_copy_is_refused() {
    // The targets role's file with the trusted root's hash changed: its signatures no
    // longer verify.
    let mut cdn = Cdn::real();
    let t = String::from_utf8(fixture("targets.json")).unwrap();
    let changed = t.replacen("6494e21e", "6494e21f", 1);
    assert_ne!(t, changed);
    cdn.files
        .insert("14.targets.json".into(), changed.into_bytes());
    let e = update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::ThresholdNotMet, "{e}");
    // A root rotation someone made up: 13.root.json with a later expiry.
    let mut cdn = Cdn::real();
    let r = String::from_utf8(fixture("root_history/13.root.json")).unwrap();
    let changed = r.replacen("\"expires\": \"2026", "\"expires\": \"2036", 1);
    assert_ne!(r, changed, "the fixture's layout changed");
    cdn.files
        .insert("13.root.json".into(), changed.into_bytes());
    let e = update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::ThresholdNotMet, "{e}");
    // An old root served as the next version.
    let mut cdn = Cdn::real();
    cdn.files
        .insert("16.root.json".into(), fixture("root_history/15.root.json"));
    let e = update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::Rollback, "{e}");
}

#[test]
fn a_trusted_root_other_than_the_one_signed_for_is_refused() {
    let mut cdn = Cdn::real();
    let path = cdn
        .files
        .keys()
        .find(|k| k.starts_with("targets/"))
        .unwrap()
        .clone();
    let mut other = fixture("targets/trusted_root.json");
    let at = other.len() / 2;
    other[at] ^= 1;
    cdn.files.insert(path, other);
    let e = update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::HashMismatch, "{e}");
}

#[test]
fn an_unreachable_repository_is_said_and_an_oversized_file_refused() {
    struct Down;
    impl Fetch for Down {
        fn fetch(&mut self, path: &str, _: u64) -> Result<Option<Vec<u8>>, String> {
            Err(format!("connection refused for {path}"))
        }
    }
    let e = update(&from(12), &mut Down, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::Unavailable, "{e}");
    let mut cdn = Cdn::real();
    cdn.files
        .insert("timestamp.json".into(), vec![b' '; 100 * 1024]);
    let e = update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap_err();
    assert_eq!(e.reason, Reason::Unavailable, "{e}");
    assert!(e.message.contains("over"), "{e}");
}

/// A repository of our own: a key listed under two IDs counts once toward a threshold.
#[test]
fn one_key_under_two_ids_does_not_meet_a_threshold_of_two() {
    use p256::ecdsa::signature::Signer as _;
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let point = hex::encode(key.verifying_key().to_encoded_point(false).as_bytes());
    let k = serde_json::json!({"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": point}});
    let role = |t: u64| serde_json::json!({"keyids": ["a", "b"], "threshold": t});
    let signed = serde_json::json!({
        "_type": "root", "spec_version": "1.0", "version": 1, "expires": "2030-01-01T00:00:00Z",
        "consistent_snapshot": true, "keys": {"a": k, "b": k},
        "roles": {"root": role(2), "timestamp": role(1), "snapshot": role(1), "targets": role(1)}
    });
    let canonical = trust_core::canonical::Json::parse(signed.to_string().as_bytes())
        .unwrap()
        .to_canonical();
    let sig: p256::ecdsa::Signature = key.sign(&canonical);
    let sig = hex::encode(sig.to_der().as_bytes());
    let root = serde_json::json!({"signed": signed, "signatures": [{"keyid": "a", "sig": sig}, {"keyid": "b", "sig": sig}]});
    let e = update(
        &State::from_root(root.to_string().into_bytes()),
        &mut Cdn::real(),
        FRESH,
        "trusted_root.json",
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::ThresholdNotMet, "{e}");
    assert!(e.message.contains("signed by 1 of the 2 keys"), "{e}");
}

/// A snapshot carrying its key's signature thousands of times: each would cost a hash of
/// the whole file, and the file's length is pinned by nothing. Refused before any check.
#[test]
fn signatures_piled_under_one_key_id_are_refused_before_any_is_checked() {
    let snapshot = String::from_utf8(fixture("snapshot.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    let first = doc["signatures"][0].clone();
    let piled: Vec<_> = std::iter::repeat_n(first.clone(), 10_000).collect();
    doc["signatures"] = serde_json::Value::Array(piled);
    let served = |doc: &serde_json::Value| {
        let mut cdn = Cdn::real();
        cdn.files
            .insert("165.snapshot.json".into(), serde_json::to_vec(doc).unwrap());
        update(&from(12), &mut cdn, FRESH, "trusted_root.json").unwrap_err()
    };
    let e = served(&doc);
    assert_eq!(e.reason, Reason::Malformed, "{e}");
    assert!(e.to_string().contains("more than 64"), "{e}");
    // Twice is enough to be refused: one key ID signs once.
    doc["signatures"] = serde_json::Value::Array(vec![first.clone(), first]);
    let e = served(&doc);
    assert_eq!(e.reason, Reason::Malformed, "{e}");
    assert!(e.to_string().contains("signs twice"), "{e}");
}
