//! Every rejection reason, triggered by metadata that breaks exactly one rule.
//! Repositories are signed with keys the tests hold (test-support), so a case can be
//! correctly signed and still bad.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use serde_json::{json, Value};
use test_support::{envelope, manifest, sha256_hex, Repo, TestKey};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use trust_core::{
    verify, Error, Pins, Reason, RepoFiles, RootAnchor, RootTrust, TagPolicy, TrustedState,
    VerifiedRepo, VerifyOptions,
};

const GUN: &str = "registry.test/team/app";
const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

fn opts() -> VerifyOptions<'static> {
    VerifyOptions::new(GUN, NOW, RootAnchor::FirstUse)
}

fn ok(files: &RepoFiles, opts: &VerifyOptions<'_>) -> VerifiedRepo {
    verify(files, opts).unwrap_or_else(|e| panic!("expected trusted, got {e} [{}]", e.reason()))
}

fn rejected(files: &RepoFiles, opts: &VerifyOptions<'_>) -> Error {
    match verify(files, opts) {
        Ok(_) => panic!("expected a rejection, got trusted"),
        Err(e) => e,
    }
}

fn with(files: &RepoFiles, name: &str, bytes: Vec<u8>) -> RepoFiles {
    let mut f = files.clone();
    f.insert(name, bytes);
    f
}

fn repo() -> Repo {
    Repo::new(GUN, NOW)
}

/// Rewrites a field inside `signed` without re-signing.
fn tamper(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(bytes).expect("json");
    edit(&mut doc["signed"]);
    serde_json::to_vec(&doc).expect("json")
}

#[test]
fn baseline_is_trusted_and_resolves_v1() {
    let repo = repo();
    let v = ok(&repo.files(), &opts());
    let m = v.resolve_tag("v1", TagPolicy::Docker).expect("v1");
    assert_eq!(m.role, "targets");
    assert_eq!(m.sha256, sha256_hex(&manifest("v1")));
    assert_eq!(m.signers, vec![repo.targets_key.id.clone()]);
    assert_eq!(v.root_trust, RootTrust::FirstUse);
}

#[test]
fn no_trust_data_when_nothing_is_served() {
    let e = rejected(&RepoFiles::new(), &opts());
    assert_eq!(e.reason(), Reason::NoTrustData);
    let mut files = repo().files();
    let mut no_ts = RepoFiles::new();
    for name in files
        .names()
        .filter(|n| *n != "timestamp")
        .map(str::to_owned)
        .collect::<Vec<_>>()
    {
        no_ts.insert(
            name.clone(),
            files.get(&name).map(<[u8]>::to_vec).unwrap_or_default(),
        );
    }
    files = no_ts;
    assert_eq!(rejected(&files, &opts()).reason(), Reason::NoTrustData);
}

#[test]
fn bad_signature_on_tampered_timestamp() {
    let files = repo().files();
    let bad = tamper(files.get("timestamp").unwrap_or_default(), |s| {
        s["version"] = json!(9)
    });
    let e = rejected(&with(&files, "timestamp", bad), &opts());
    assert_eq!(e.reason(), Reason::BadSignature, "{e}");
    assert!(
        e.to_string()
            .starts_with("timestamp: 0 of 1 required signatures valid"),
        "{e}"
    );
}

#[test]
fn bad_signature_on_tampered_root() {
    let files = repo().files();
    let bad = tamper(files.get("root").unwrap_or_default(), |s| {
        s["expires"] = json!("2099-01-01T00:00:00Z")
    });
    let mut f = with(&files, "root", bad.clone());
    // Keep the snapshot consistent so that the signature is the first thing to fail.
    f.insert("1.root", bad);
    assert_eq!(rejected(&f, &opts()).reason(), Reason::BadSignature);
}

/// A repository whose targets.json is at least 64 KiB: its hashes and signatures are
/// checked on a second thread while it is parsed.
fn large_repo() -> Repo {
    let mut repo = repo();
    for i in 0..2_000 {
        let tag = format!("t{i}");
        repo.targets.insert(tag.clone(), manifest(&tag));
    }
    let bytes = repo.targets_bytes();
    assert!(bytes.len() >= 64 * 1024, "{} bytes: too small", bytes.len());
    repo
}

#[test]
fn bad_signature_on_tampered_targets_even_with_consistent_snapshot() {
    for repo in [repo(), large_repo()] {
        let targets = tamper(&repo.targets_bytes(), |s| {
            s["targets"]["v1"]["length"] = json!(999);
        });
        let root = repo.root_bytes();
        let snapshot = repo.snapshot_bytes(&root, &targets, &Default::default());
        let files = with(
            &with(
                &with(&repo.files(), "targets", targets),
                "snapshot",
                snapshot.clone(),
            ),
            "timestamp",
            repo.timestamp_bytes(&snapshot),
        );
        let e = rejected(&files, &opts());
        assert_eq!(e.reason(), Reason::BadSignature, "{e}");
        assert!(e.to_string().starts_with("targets:"), "{e}");
    }
}

#[test]
fn threshold_not_met_when_root_needs_two_and_has_one() {
    let mut repo = repo();
    repo.root_keys = vec![TestKey::ed25519(10), TestKey::p256(11)];
    repo.root_threshold = 2;
    assert!(verify(&repo.files(), &opts()).is_ok(), "both sign: trusted");
    repo.root_signers = Some(vec![TestKey::ed25519(10)]);
    let e = rejected(&repo.files(), &opts());
    assert_eq!(e.reason(), Reason::ThresholdNotMet);
    assert_eq!(e.to_string(), "root: 1 of 2 required signatures valid");
}

#[test]
fn duplicate_signatures_by_one_key_count_once() {
    let mut repo = repo();
    let k = TestKey::ed25519(10);
    repo.root_keys = vec![k.clone(), TestKey::p256(11)];
    repo.root_threshold = 2;
    repo.root_signers = Some(vec![k.clone(), k]);
    assert_eq!(
        rejected(&repo.files(), &opts()).reason(),
        Reason::ThresholdNotMet
    );
}

#[test]
fn signatures_piled_under_an_authorised_key_id_are_not_all_checked() {
    // Each check hashes the whole signed body: thousands of junk signatures under the
    // timestamp key's ID cost thousands of hashes, with no key needed. Only the first
    // signature under a key ID is checked, so junk put first leaves the good one unread.
    let files = repo().files();
    let doc: Value = serde_json::from_slice(files.get("timestamp").unwrap()).unwrap();
    let good = doc["signatures"][0].clone();
    let mut junk = good.clone();
    junk["sig"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        [7u8; 64]
    ));
    let piled = |sigs: Vec<Value>| {
        let mut d = doc.clone();
        d["signatures"] = Value::Array(sigs);
        serde_json::to_vec(&d).unwrap()
    };
    let mut first_good = vec![good.clone()];
    first_good.extend(std::iter::repeat_n(junk.clone(), 3000));
    ok(&with(&files, "timestamp", piled(first_good)), &opts());
    let mut junk_first: Vec<Value> = std::iter::repeat_n(junk, 3000).collect();
    junk_first.push(good);
    let e = rejected(&with(&files, "timestamp", piled(junk_first)), &opts());
    assert_eq!(e.reason(), Reason::BadSignature, "{e}");
}

#[test]
fn one_key_listed_under_two_key_ids_counts_once() {
    // Root, then a delegation, ask for two signers and list one P-256 key twice: its
    // SPKI with the point uncompressed and compressed, two key IDs.
    let (k, alias) = (TestKey::p256(12), TestKey::p256_compressed(12));
    assert_ne!(k.id, alias.id);
    let mut repo = repo();
    repo.root_keys = vec![k.clone(), alias.clone()];
    repo.root_threshold = 2;
    repo.root_signers = Some(vec![k.clone(), alias.clone()]);
    let e = rejected(&repo.files(), &opts());
    assert_eq!(e.reason(), Reason::ThresholdNotMet, "{e}");

    let mut repo = with_releases(NOW);
    let d = &mut repo.delegations[0];
    d.keys = vec![k.clone(), alias.clone()];
    d.threshold = 2;
    d.signers = Some(vec![k, alias]);
    let e = rejected(&repo.files(), &opts());
    assert_eq!(e.reason(), Reason::ThresholdNotMet, "{e}");
    assert!(e.to_string().starts_with("targets/releases:"), "{e}");
}

#[test]
fn threshold_not_met_when_signed_by_a_key_the_role_does_not_authorise() {
    for mut repo in [repo(), large_repo()] {
        repo.targets_signers = Some(vec![TestKey::ed25519(99)]);
        let e = rejected(&repo.files(), &opts());
        assert_eq!(e.reason(), Reason::ThresholdNotMet);
        assert!(
            e.to_string()
                .contains("1 signature is by a key this role does not authorise"),
            "{e}"
        );
    }
}

#[test]
fn root_not_pinned_when_pin_names_another_key() {
    let repo = repo();
    let other = Pins {
        certs: vec![],
        cas: vec![],
        key_ids: vec![TestKey::ed25519(77).id],
    };
    let o = VerifyOptions::new(GUN, NOW, RootAnchor::Pinned(&other));
    assert_eq!(rejected(&repo.files(), &o).reason(), Reason::RootNotPinned);

    let right = Pins {
        certs: vec![],
        cas: vec![],
        key_ids: vec![repo.root_keys[0].id.clone()],
    };
    let o = VerifyOptions::new(GUN, NOW, RootAnchor::Pinned(&right));
    assert_eq!(ok(&repo.files(), &o).root_trust, RootTrust::Pinned);
}

#[test]
fn root_rotation_walks_forward_from_a_trusted_root() {
    let mut repo = repo();
    let v1 = repo.root_bytes();
    repo.rotate_root(vec![TestKey::ed25519(20)]);
    repo.rotate_root(vec![TestKey::p256(21)]);
    let o = VerifyOptions::new(GUN, NOW, RootAnchor::TrustedRoot(&v1));
    let v = ok(&repo.files(), &o);
    assert_eq!(v.roles["root"].version, 3);
    assert_eq!(v.root_trust, RootTrust::TrustedRoot);
}

#[test]
fn root_rotation_broken_by_a_gap() {
    let mut repo = repo();
    let v1 = repo.root_bytes();
    repo.rotate_root(vec![TestKey::ed25519(20)]);
    repo.rotate_root(vec![TestKey::p256(21)]);
    let full = repo.files();
    let mut gap = RepoFiles::new();
    for name in full.names().filter(|n| *n != "2.root") {
        gap.insert(name, full.get(name).unwrap_or_default().to_vec());
    }
    let o = VerifyOptions::new(GUN, NOW, RootAnchor::TrustedRoot(&v1));
    let e = rejected(&gap, &o);
    assert_eq!(e.reason(), Reason::RootRotationBroken);
    assert!(e.to_string().contains("2.root.json is missing"), "{e}");
}

#[test]
fn root_rotation_broken_when_the_newest_root_claims_a_version_far_ahead() {
    // A server names version 2^63 in an (unsigned) root.json: refused before any walk,
    // not after 2^63 steps, nor after fetching that many files.
    let mut repo = repo();
    let v1 = repo.root_bytes();
    repo.rotate_root(vec![TestKey::ed25519(20)]);
    let files = repo.files();
    let o = VerifyOptions::new(GUN, NOW, RootAnchor::TrustedRoot(&v1));
    for version in [258_u64, i64::MAX as u64] {
        let far = with(
            &files,
            "root",
            tamper(files.get("root").unwrap(), |s| {
                s["version"] = json!(version)
            }),
        );
        let e = rejected(&far, &o);
        assert_eq!(e.reason(), Reason::RootRotationBroken, "{e}");
        assert!(e.to_string().contains("more than the 256 rotations"), "{e}");
    }
}

#[test]
fn root_rotation_broken_when_new_root_lacks_old_keys_signature() {
    let mut repo = repo();
    let v1 = repo.root_bytes();
    repo.rotate_root(vec![TestKey::ed25519(20)]);
    // An attacker's root v2: signed only by a key of their own.
    repo.root_signers = Some(repo.root_keys.clone());
    let o = VerifyOptions::new(GUN, NOW, RootAnchor::TrustedRoot(&v1));
    let e = rejected(&repo.files(), &o);
    assert_eq!(e.reason(), Reason::RootRotationBroken);
    assert!(
        e.to_string()
            .contains("not signed by the root keys of version 1"),
        "{e}"
    );
}

#[test]
fn root_rotation_broken_when_same_version_differs() {
    let repo = repo();
    let trusted = repo.root_bytes();
    let mut other = repo.clone();
    other.expires.insert("root", NOW + Duration::days(30));
    let o = VerifyOptions::new(GUN, NOW, RootAnchor::TrustedRoot(&trusted));
    assert_eq!(
        rejected(&other.files(), &o).reason(),
        Reason::RootRotationBroken
    );
}

#[test]
fn expired_timestamp_targets_and_root() {
    for role in ["timestamp", "targets", "snapshot", "root"] {
        let mut repo = repo();
        repo.expires.insert(role, NOW - Duration::hours(3));
        let e = rejected(&repo.files(), &opts());
        assert_eq!(e.reason(), Reason::Expired, "{role}: {e}");
        assert!(e.to_string().starts_with(&format!("{role} expired")), "{e}");
        assert!(e.to_string().ends_with("3h ago"), "{e}");
    }
}

#[test]
fn stale_timestamp_beyond_max_age() {
    let mut repo = repo();
    // Issued two days ago (expiry = issue + 14 days): not expired, but stale for 1h.
    repo.expires
        .insert("timestamp", NOW - Duration::days(2) + Duration::days(14));
    let mut o = opts();
    assert!(verify(&repo.files(), &o).is_ok());
    o.max_timestamp_age = Some(Duration::hours(1));
    let e = rejected(&repo.files(), &o);
    assert_eq!(e.reason(), Reason::StaleTimestamp);
    assert!(e.to_string().contains("2d ago"), "{e}");
    o.max_timestamp_age = Some(Duration::days(3));
    assert!(verify(&repo.files(), &o).is_ok());
}

#[test]
fn rollback_against_saved_state() {
    let mut repo = repo();
    for role in ["timestamp", "snapshot", "targets"] {
        repo.versions.insert(role, 8);
    }
    let saved = ok(&repo.files(), &opts()).state;
    assert_eq!(saved.versions["timestamp"], 8);

    for role in ["timestamp", "snapshot", "targets"] {
        let mut old = repo.clone();
        old.versions.insert(role, 3);
        let mut o = opts();
        o.state = Some(&saved);
        let e = rejected(&old.files(), &o);
        assert_eq!(e.reason(), Reason::Rollback, "{role}: {e}");
        assert_eq!(
            e.to_string(),
            format!("{role}: version 3 is older than trusted version 8 (rollback)")
        );
    }
}

#[test]
fn rollback_of_root_against_saved_state() {
    let mut repo = repo();
    let old = repo.clone();
    repo.rotate_root(vec![TestKey::ed25519(30)]);
    let saved = ok(&repo.files(), &opts()).state;
    let mut o = opts();
    o.state = Some(&saved);
    assert_eq!(rejected(&old.files(), &o).reason(), Reason::Rollback);
}

#[test]
fn state_root_is_the_anchor_for_the_next_verification() {
    let mut repo = repo();
    let saved: TrustedState = ok(&repo.files(), &opts()).state;
    repo.rotate_root(vec![TestKey::ed25519(40)]);
    let mut o = opts();
    o.state = Some(&saved);
    let v = ok(&repo.files(), &o);
    assert_eq!(v.root_trust, RootTrust::State);
    // An attacker's fresh self-signed root is not accepted on top of the state.
    let mut evil = Repo::new(GUN, NOW);
    evil.root_keys = vec![TestKey::ed25519(66)];
    evil.versions.insert("root", 2);
    let e = rejected(&evil.files(), &o);
    assert_eq!(e.reason(), Reason::RootRotationBroken, "{e}");
}

#[test]
fn hash_mismatch_for_snapshot_from_another_version() {
    let repo = repo();
    let mut other = repo.clone();
    other.versions.insert("snapshot", 2);
    let files = with(
        &repo.files(),
        "snapshot",
        other.files().get("snapshot").unwrap_or_default().to_vec(),
    );
    let e = rejected(&files, &opts());
    assert_eq!(e.reason(), Reason::HashMismatch, "{e}");
    assert!(e.to_string().starts_with("snapshot: sha"), "{e}");
}

/// Files from 64 KiB up are hashed while they are parsed (on another thread): the
/// verdict must be what hashing first would give, whether the tampered bytes still parse
/// or not.
#[test]
fn hash_mismatch_for_a_large_targets_file_hashed_beside_its_parse() {
    let files = large_repo().files();
    let bytes = files.get("targets").unwrap_or_default().to_vec();
    ok(&files, &opts());
    // Same length, still canonical JSON (one target's digest changed): only the hashes
    // can tell.
    let key = b"\"sha256\":\"";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    let mut redirected = bytes.clone();
    redirected[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let e = rejected(&with(&files, "targets", redirected), &opts());
    assert_eq!(e.reason(), Reason::HashMismatch, "{e}");
    assert!(e.to_string().starts_with("targets: sha"), "{e}");
    // Same length, no longer JSON: still the hash mismatch, not the parse error.
    let mut broken = bytes;
    broken[0] = b'[';
    let e = rejected(&with(&files, "targets", broken), &opts());
    assert_eq!(e.reason(), Reason::HashMismatch, "{e}");
}

#[test]
fn length_mismatch_for_padded_targets() {
    let files = repo().files();
    let mut padded = files.get("targets").unwrap_or_default().to_vec();
    padded.push(b' ');
    let e = rejected(&with(&files, "targets", padded), &opts());
    assert_eq!(e.reason(), Reason::LengthMismatch);
    assert!(e.to_string().contains("but snapshot lists"), "{e}");
}

#[test]
fn unknown_tag_and_digest_mismatch() {
    let v = ok(&repo().files(), &opts());
    let e = v.resolve_tag("v9", TagPolicy::Docker).expect_err("unknown");
    assert_eq!(e.reason(), Reason::UnknownTag);
    assert_eq!(
        e.to_string(),
        "tag \"v9\" is not signed in targets/releases or targets"
    );
    let e = v
        .find_digest(&"ab".repeat(32), TagPolicy::Docker)
        .expect_err("digest");
    assert_eq!(e.reason(), Reason::DigestMismatch);
    let e = v
        .verify_tag_digest("v1", &"cd".repeat(32), TagPolicy::Docker)
        .expect_err("digest");
    assert_eq!(e.reason(), Reason::DigestMismatch);
    let found = v
        .find_digest(&sha256_hex(&manifest("v1")), TagPolicy::Docker)
        .expect("found");
    assert_eq!(found.name, "v1");
}

#[test]
fn malformed_metadata() {
    let files = repo().files();
    for bad in [
        &b"{"[..],
        br#"{"signed":{},"signatures":[]}"#,
        br#"{"signed":{"a":1,"a":2},"signatures":[]}"#,
    ] {
        let e = rejected(&with(&files, "timestamp", bad.to_vec()), &opts());
        assert_eq!(e.reason(), Reason::MalformedMetadata, "{e}");
    }
}

#[test]
fn malformed_when_expires_lies_past_the_year_9999_in_utc() {
    // It parses (the local time is in 9999), but its UTC time cannot be held: once it
    // made writing the verdict's expiry panic.
    let files = repo().files();
    let late = "9999-12-31T23:59:59-23:59";
    let bad = tamper(files.get("timestamp").unwrap(), |s| {
        s["expires"] = json!(late)
    });
    let e = rejected(&with(&files, "timestamp", bad), &opts());
    assert_eq!(e.reason(), Reason::MalformedMetadata, "{e}");
    assert!(e.to_string().contains("past the year 9999"), "{e}");
    let t = OffsetDateTime::parse(late, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(trust_core::rfc3339(t).starts_with("9999-12-31"));
    assert!(trust_core::fmt_time(&t).starts_with("9999-12-31"));
}

#[test]
fn malformed_when_a_key_id_does_not_match_its_key() {
    let repo = repo();
    let mut signed = repo.root_signed();
    let key = TestKey::ed25519(1);
    let keys = signed["keys"].as_object_mut().expect("keys");
    let entry = keys.remove(&key.id).expect("root key");
    let wrong = "0".repeat(64);
    keys.insert(wrong.clone(), entry);
    signed["roles"]["root"]["keyids"] = json!([wrong]);
    let bytes = envelope(&signed, &[&key]);
    let e = rejected(&with(&repo.files(), "root", bytes), &opts());
    assert_eq!(e.reason(), Reason::MalformedMetadata);
    assert!(e.to_string().contains("does not match its key"), "{e}");
}

#[test]
fn oversized_timestamp_and_stated_lengths() {
    let files = repo().files();
    // Whitespace keeps the signature valid: only the size cap can reject this.
    let mut big = files.get("timestamp").unwrap_or_default().to_vec();
    big.splice(1..1, std::iter::repeat_n(b' ', 1024 * 1024));
    let e = rejected(&with(&files, "timestamp", big), &opts());
    assert_eq!(e.reason(), Reason::Oversized, "{e}");

    let mut o = opts();
    o.limits.file = 100;
    let e = rejected(&files, &o);
    assert_eq!(e.reason(), Reason::Oversized, "{e}");
}

fn with_releases(now: OffsetDateTime) -> Repo {
    let mut repo = repo();
    let d = repo.delegate("targets/releases", TestKey::p256(50), now);
    d.targets.insert("v2".into(), manifest("v2"));
    d.targets.insert("v1".into(), manifest("v1-from-releases"));
    let q = repo.delegate("targets/qa", TestKey::ed25519(51), now);
    q.targets.insert("qa-only".into(), manifest("qa"));
    repo
}

/// Three large delegations: their files are read ahead of the walk, two at a time.
fn with_large_delegations() -> Repo {
    let mut repo = repo();
    for (role, key) in [
        ("targets/releases", TestKey::p256(50)),
        ("targets/qa", TestKey::ed25519(51)),
        ("targets/ops", TestKey::ed25519(52)),
    ] {
        let d = repo.delegate(role, key, NOW);
        for i in 0..800 {
            let tag = format!("{}-{i}", &role[8..]);
            d.targets.insert(tag.clone(), manifest(&tag));
        }
    }
    let d = &repo.delegations[0];
    assert!(
        Repo::delegation_bytes(d).len() * 3 >= 128 * 1024,
        "too small to be read ahead"
    );
    repo
}

/// Children read ahead of the walk give the walk's outcome: the first failing child in
/// the walk's order is the error, whichever thread read it and whatever comes after.
#[test]
fn delegations_read_ahead_fail_in_the_walks_order() {
    let repo = with_large_delegations();
    let files = repo.files();
    let v = ok(&files, &opts());
    assert_eq!(
        v.resolve_tag("releases-799", TagPolicy::Docker)
            .unwrap()
            .role,
        "targets/releases"
    );
    let tampered = |role: &str| {
        let mut b = files.get(role).unwrap().to_vec();
        let key = b"\"sha256\":\"";
        let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        b
    };
    // qa (read on the second thread) tampered, ops (read here) signed by a stranger:
    // qa comes first in the walk.
    let mut stranger = repo.clone();
    stranger.delegations[2].signers = Some(vec![TestKey::ed25519(99)]);
    let both = with(&stranger.files(), "targets/qa", tampered("targets/qa"));
    let e = rejected(&both, &opts());
    assert_eq!(e.reason(), Reason::HashMismatch, "{e}");
    assert!(e.to_string().contains("targets/qa"), "{e}");
    // The other way round: qa signed by a stranger, ops tampered.
    let mut stranger = repo.clone();
    stranger.delegations[1].signers = Some(vec![TestKey::ed25519(99)]);
    let ops = stranger.files().get("targets/ops").unwrap().to_vec();
    let mut b = ops.clone();
    b[0] = b'[';
    let e = rejected(&with(&stranger.files(), "targets/ops", b), &opts());
    assert!(e.to_string().contains("targets/qa"), "{e}");
    assert_ne!(e.reason(), Reason::HashMismatch, "{e}");
    // Each alone is refused too.
    let e = rejected(
        &with(&files, "targets/ops", tampered("targets/ops")),
        &opts(),
    );
    assert_eq!(e.reason(), Reason::HashMismatch, "{e}");
    assert!(e.to_string().contains("targets/ops"), "{e}");
}

#[test]
fn docker_semantics_releases_first_then_targets_never_other_delegations() {
    let repo = with_releases(NOW);
    let v = ok(&repo.files(), &opts());
    let m = v.resolve_tag("v1", TagPolicy::Docker).expect("v1");
    assert_eq!(m.role, "targets/releases", "releases wins over targets");
    assert_eq!(m.sha256, sha256_hex(&manifest("v1-from-releases")));
    let e = v.resolve_tag("qa-only", TagPolicy::Docker).expect_err("qa");
    assert_eq!(e.reason(), Reason::UnknownTag);
    assert!(e.to_string().contains("only targets/qa signs it"), "{e}");
    assert_eq!(
        v.resolve_tag("qa-only", TagPolicy::AnyRole)
            .expect("any")
            .role,
        "targets/qa"
    );
}

#[test]
fn require_roles_needs_every_role_to_agree() {
    let mut repo = with_releases(NOW);
    repo.delegations[1]
        .targets
        .insert("v2".into(), manifest("v2"));
    let v = ok(&repo.files(), &opts());
    let both = ["targets/releases".to_owned(), "targets/qa".to_owned()];
    let m = v
        .resolve_tag("v2", TagPolicy::RequireRoles(&both))
        .expect("both sign v2");
    assert_eq!(m.role, "targets/releases+targets/qa");
    let e = v
        .resolve_tag("qa-only", TagPolicy::RequireRoles(&both))
        .expect_err("releases lacks it");
    assert_eq!(e.reason(), Reason::UnknownTag);
    let e = v.resolve_tag(
        "v1",
        TagPolicy::RequireRoles(&["targets/releases".to_owned(), "targets".to_owned()]),
    );
    assert_eq!(e.expect_err("disagree").reason(), Reason::DigestMismatch);
}

fn without(files: &RepoFiles, name: &str) -> RepoFiles {
    let mut out = RepoFiles::new();
    for n in files.names().filter(|n| *n != name) {
        out.insert(
            n.to_owned(),
            files.get(n).map(<[u8]>::to_vec).unwrap_or_default(),
        );
    }
    out
}

/// Notary would skip an expired targets/releases and fall back to targets, which may
/// still list an older digest for the same tag: the whole repository fails instead.
#[test]
fn expired_delegation_fails_the_repository_instead_of_falling_back_to_targets() {
    let mut repo = with_releases(NOW);
    repo.delegations[0].expires = NOW - Duration::days(1);
    let e = rejected(&repo.files(), &opts());
    assert_eq!(e.reason(), Reason::Expired, "{e}");
    assert!(e.to_string().starts_with("targets/releases expired"), "{e}");
}

#[test]
fn under_signed_delegation_fails_the_repository() {
    let mut repo = with_releases(NOW);
    repo.delegations[0].signers = Some(vec![TestKey::ed25519(98)]);
    let e = rejected(&repo.files(), &opts());
    assert_eq!(e.reason(), Reason::ThresholdNotMet, "{e}");
    assert!(e.to_string().starts_with("targets/releases:"), "{e}");
}

/// A hostile trust server holding no keys answers 404 for targets/releases, which the
/// snapshot lists, hoping that `targets`' older digest for v1 is used instead.
#[test]
fn withheld_delegation_listed_in_the_snapshot_fails_the_repository() {
    let repo = with_releases(NOW);
    let files = without(&repo.files(), "targets/releases");
    let e = rejected(&files, &opts());
    assert_eq!(e.reason(), Reason::NoTrustData, "{e}");
    assert!(
        e.to_string()
            .contains("delegation targets/releases is listed in the snapshot but was not served"),
        "{e}"
    );
}

/// A delegation this node trusted before may not disappear, whether the server withholds
/// its file or (holding the snapshot key) drops it from the snapshot.
#[test]
fn withdrawn_delegation_trusted_before_is_a_rollback() {
    let repo = with_releases(NOW);
    let saved = ok(&repo.files(), &opts()).state;
    assert_eq!(saved.versions.get("targets/releases"), Some(&1));
    let mut o = opts();
    o.state = Some(&saved);

    let e = rejected(&without(&repo.files(), "targets/releases"), &o);
    assert_eq!(e.reason(), Reason::Rollback, "{e}");
    assert!(e.to_string().contains("not served"), "{e}");

    // The snapshot re-signed without targets/releases (its key is often the server's).
    let mut dropped = repo.clone();
    dropped.versions.insert("snapshot", 2);
    dropped.versions.insert("timestamp", 2);
    let root = dropped.root_bytes();
    let targets = dropped.targets_bytes();
    let mut listed = std::collections::BTreeMap::new();
    listed.insert(
        "targets/qa".to_owned(),
        Repo::delegation_bytes(&dropped.delegations[1]),
    );
    let snapshot = dropped.snapshot_bytes(&root, &targets, &listed);
    let files = with(
        &with(
            &without(&repo.files(), "targets/releases"),
            "snapshot",
            snapshot.clone(),
        ),
        "timestamp",
        dropped.timestamp_bytes(&snapshot),
    );
    let e = rejected(&files, &o);
    assert_eq!(e.reason(), Reason::Rollback, "{e}");
    assert!(
        e.to_string().contains("no longer listed in the snapshot"),
        "{e}"
    );
    // A node that never saw it skips it, as Notary does (nothing to roll back from).
    let first = ok(&files, &opts());
    assert!(first.skipped_roles().any(|(r, _)| r == "targets/releases"));
}

/// targets/releases re-signed v1 to a new digest; `targets` still lists the old one.
/// A pull by the old digest is refused even though a signed role lists it.
#[test]
fn superseded_digest_is_not_pullable_by_digest() {
    let repo = with_releases(NOW);
    let v = ok(&repo.files(), &opts());
    let old = sha256_hex(&manifest("v1"));
    let new = sha256_hex(&manifest("v1-from-releases"));
    let e = v
        .find_digest(&old, TagPolicy::Docker)
        .expect_err("superseded");
    assert_eq!(e.reason(), Reason::DigestMismatch, "{e}");
    assert!(e.to_string().contains("superseded"), "{e}");
    assert!(e.to_string().contains(&new), "{e}");
    let m = v.find_digest(&new, TagPolicy::Docker).expect("current");
    assert_eq!(
        (m.name.as_str(), m.role.as_str()),
        ("v1", "targets/releases")
    );
    // The tag itself, with the old digest, is refused the same way.
    let e = v
        .verify_tag_digest("v1", &old, TagPolicy::Docker)
        .expect_err("old");
    assert_eq!(e.reason(), Reason::DigestMismatch);
}

#[test]
fn delegation_whose_bytes_differ_from_snapshot_fails_the_repository() {
    let repo = with_releases(NOW);
    let files = repo.files();
    let mut other = repo.clone();
    other.delegations[0].version = 2;
    let swapped = Repo::delegation_bytes(&other.delegations[0]);
    let e = rejected(&with(&files, "targets/releases", swapped), &opts());
    assert_eq!(e.reason(), Reason::HashMismatch, "{e}");
}

#[test]
fn delegation_rollback_against_saved_state() {
    let mut repo = with_releases(NOW);
    repo.delegations[0].version = 5;
    let saved = ok(&repo.files(), &opts()).state;
    repo.delegations[0].version = 4;
    let mut o = opts();
    o.state = Some(&saved);
    let e = rejected(&repo.files(), &o);
    assert_eq!(e.reason(), Reason::Rollback);
    assert!(e.to_string().starts_with("targets/releases:"), "{e}");
}

#[test]
fn delegation_cannot_sign_outside_its_paths() {
    let mut repo = with_releases(NOW);
    repo.delegations[0].paths = vec!["release-".into()];
    repo.delegations[0]
        .targets
        .insert("release-1".into(), manifest("r1"));
    let v = ok(&repo.files(), &opts());
    assert_eq!(
        v.resolve_tag("release-1", TagPolicy::Docker)
            .expect("in paths")
            .role,
        "targets/releases"
    );
    // v1 and v2 are outside "release-": releases' entries are ignored.
    assert_eq!(
        v.resolve_tag("v1", TagPolicy::Docker)
            .expect("from targets")
            .role,
        "targets"
    );
    assert_eq!(
        v.resolve_tag("v2", TagPolicy::Docker)
            .expect_err("outside")
            .reason(),
        Reason::UnknownTag
    );
}

#[test]
fn state_records_the_versions_seen() {
    let repo = with_releases(NOW);
    let v = ok(&repo.files(), &opts());
    assert_eq!(v.state.gun, GUN);
    for role in [
        "root",
        "timestamp",
        "snapshot",
        "targets",
        "targets/releases",
        "targets/qa",
    ] {
        assert_eq!(v.state.versions.get(role), Some(&1), "{role}");
    }
}

#[test]
fn mix_and_match_root_not_named_by_snapshot() {
    // A root that is validly self-signed, but not the one the snapshot lists.
    let repo = repo();
    let mut other = repo.clone();
    other.expires.insert("root", NOW + Duration::days(200));
    let files = with(&repo.files(), "root", other.root_bytes());
    let e = rejected(&files, &opts());
    assert!(
        matches!(e.reason(), Reason::HashMismatch | Reason::LengthMismatch),
        "{e}"
    );
    assert!(e.to_string().starts_with("root:"), "{e}");
}

#[test]
fn fast_forward_versions_are_recovered_from_by_rotating_the_keys_that_signed_them() {
    // Someone holding the timestamp, snapshot and targets keys served inflated versions,
    // and a node trusted them.
    let mut repo = repo();
    for role in ["timestamp", "snapshot", "targets"] {
        repo.versions.insert(role, 1_000_000);
    }
    let inflated = ok(&repo.files(), &opts()).state;
    assert_eq!(inflated.versions["timestamp"], 1_000_000);

    // The publisher carries on at honest versions with the same keys: still refused, as
    // rollback protection must.
    let mut honest = repo.clone();
    for role in ["timestamp", "snapshot", "targets"] {
        honest.versions.insert(role, 5);
    }
    let mut o = opts();
    o.state = Some(&inflated);
    assert_eq!(rejected(&honest.files(), &o).reason(), Reason::Rollback);

    // After a root (signed by the root key) that replaces the timestamp and snapshot keys,
    // those versions start over; the targets version still holds.
    let root_v1 = honest.root_bytes();
    honest.root_history.insert(1, root_v1);
    honest.versions.insert("root", 2);
    honest.timestamp_key = TestKey::p256(30);
    honest.snapshot_key = TestKey::ed25519(31);
    let e = rejected(&honest.files(), &o);
    assert_eq!(e.reason(), Reason::Rollback, "{e}");
    assert!(e.to_string().starts_with("targets:"), "{e}");
    // Replacing the targets key too: everything verifies, and the node's state comes down.
    honest.targets_key = TestKey::p256(32);
    let v = ok(&honest.files(), &o);
    assert_eq!(v.state.versions["timestamp"], 5);
    assert_eq!(v.state.versions["targets"], 5);

    // A root that changes nothing does not reset anything.
    let mut same_keys = repo.clone();
    same_keys.root_history.insert(1, repo.root_bytes());
    same_keys.versions.insert("root", 2);
    same_keys.versions.insert("timestamp", 5);
    assert_eq!(rejected(&same_keys.files(), &o).reason(), Reason::Rollback);
}
