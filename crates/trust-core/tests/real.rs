//! The library against trust data from the real notary-server (tests/fixtures/notary-real),
//! for what the offline command cannot express: rollback against a saved state.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![allow(clippy::disallowed_methods)] // the tests read fixtures; the library itself may not

use std::path::{Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use trust_core::{verify, Reason, RepoFiles, RootAnchor, RootTrust, TagPolicy, VerifyOptions};

const GUN: &str = "registry.test/pullguard/app";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/notary-real")
}

fn files() -> RepoFiles {
    let meta = fixture().join("metadata");
    let mut f = RepoFiles::new();
    for name in [
        "root",
        "1.root",
        "2.root",
        "3.root",
        "timestamp",
        "snapshot",
        "targets",
        "targets/releases",
        "targets/qa",
    ] {
        f.insert(
            name,
            std::fs::read(meta.join(format!("{name}.json"))).expect("fixture file"),
        );
    }
    f
}

fn now() -> OffsetDateTime {
    let s = std::fs::read_to_string(fixture().join("made-at")).expect("made-at");
    OffsetDateTime::parse(s.trim(), &Rfc3339).expect("rfc3339") + Duration::hours(1)
}

#[test]
fn real_repository_verifies_and_remembers_versions() {
    let v = verify(
        &files(),
        &VerifyOptions::new(GUN, now(), RootAnchor::FirstUse),
    )
    .expect("trusted");
    assert_eq!(v.roles["root"].version, 3);
    assert_eq!(
        v.resolve_tag("v3", TagPolicy::Docker).expect("v3").role,
        "targets/releases"
    );
    assert!(v.state.versions["timestamp"] >= 1);

    // Verified again with the state: still trusted, now anchored in the state.
    let mut o = VerifyOptions::new(GUN, now(), RootAnchor::FirstUse);
    o.state = Some(&v.state);
    assert_eq!(
        verify(&files(), &o).expect("trusted").root_trust,
        RootTrust::State
    );
}

#[test]
fn real_repository_offered_after_newer_versions_were_seen_is_a_rollback() {
    let v = verify(
        &files(),
        &VerifyOptions::new(GUN, now(), RootAnchor::FirstUse),
    )
    .expect("trusted");
    for role in ["timestamp", "snapshot", "targets", "targets/releases"] {
        let mut state = v.state.clone();
        let seen = state.versions[role] + 5;
        state.versions.insert(role.to_owned(), seen);
        let mut o = VerifyOptions::new(GUN, now(), RootAnchor::FirstUse);
        o.state = Some(&state);
        let e = verify(&files(), &o).expect_err("rollback");
        assert_eq!(e.reason(), Reason::Rollback, "{role}: {e}");
    }
}

#[test]
fn real_root_key_ids_match_the_ids_notary_wrote() {
    // Every key in every real file is listed under the ID we recompute, or parsing fails.
    let f = files();
    for name in f.names() {
        let bytes = f.get(name).expect("file");
        let parsed = if name.ends_with("root") {
            trust_core::metadata::parse_root(name, bytes).map(|_| ())
        } else if name == "timestamp" || name == "snapshot" {
            Ok(())
        } else {
            trust_core::metadata::parse_targets(name, bytes).map(|_| ())
        };
        parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn ca_issuance_needs_both_the_name_and_the_signature() {
    use base64::Engine as _;
    let dir = fixture().join("ca-pinned");
    let cert = |name: &str| {
        trust_core::keys::parse_pinned_cert(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    let (ca, impostor, other) = (
        cert("ca.crt"),
        cert("impostor-ca.crt"),
        cert("other-ca.crt"),
    );
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata/root.json")).unwrap()).unwrap();
    let id = root["signed"]["roles"]["root"]["keyids"][0]
        .as_str()
        .unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(
            root["signed"]["keys"][id]["keyval"]["public"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let leaf = trust_core::keys::parse_pinned_cert(&pem).unwrap();

    assert!(
        leaf.issued_by(&ca),
        "the real CA issued the root certificate"
    );
    assert!(!leaf.issued_by(&other), "another CA did not");
    assert!(
        !leaf.issued_by(&impostor),
        "same name, other key: the signature decides"
    );
    let mut renamed = leaf.clone();
    renamed.issuer = other.subject.clone();
    assert!(
        !renamed.issued_by(&ca),
        "a valid signature under another issuer name does not chain"
    );
}

/// Every metadata file in the fixtures (the real notary-server's, and the old clients'
/// of notary-compat): what trust-core takes as the signed bytes is the re-encoding of
/// `signed`, whether it was recognised as canonical text and taken as it is (as the
/// notary-server's files are) or encoded again.
#[test]
fn signed_bytes_are_the_reencoding_whether_taken_as_written_or_not() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("notary-real"), root.join("notary-compat")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    let mut taken_as_written = 0;
    let mut checked = 0;
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            signed: &'a serde_json::value::RawValue,
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&bytes) else {
            continue; // not a metadata file (expected verdicts, key lists)
        };
        let kind = serde_json::from_str::<serde_json::Value>(envelope.signed.get()).unwrap()
            ["_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let signed = match kind.as_str() {
            "Root" => trust_core::metadata::parse_root("root", &bytes).map(|s| s.canonical),
            "Targets" => {
                trust_core::metadata::parse_targets("targets", &bytes).map(|s| s.canonical)
            }
            "Snapshot" | "Timestamp" => {
                trust_core::metadata::parse_meta_role("meta", &kind, &bytes).map(|s| s.canonical)
            }
            _ => continue,
        };
        let Ok(signed) = signed else { continue };
        let reencoded =
            trust_core::canonical::canonicalize(envelope.signed.get().as_bytes()).unwrap();
        assert_eq!(signed, reencoded, "{}", path.display());
        checked += 1;
        if trust_core::canonical::is_canonical(envelope.signed.get()) {
            assert_eq!(
                signed,
                envelope.signed.get().as_bytes(),
                "{}",
                path.display()
            );
            taken_as_written += 1;
        }
    }
    assert!(checked >= 20, "only {checked} metadata files read");
    // notary-server stores what its clients signed, as they encoded it.
    assert!(
        taken_as_written * 2 >= checked,
        "{taken_as_written} of {checked} taken as written"
    );
}

/// A key given twice is refused wherever it is in the file: at the top (two `signed`
/// objects, one for the signature and one for the reader), inside `signed` (canonical
/// text otherwise, so the in-place check must see it) and in an object it lists, and
/// inside a signature.
#[test]
fn a_key_given_twice_anywhere_in_a_real_file_is_refused() {
    let real = std::fs::read_to_string(fixture().join("metadata/timestamp.json")).unwrap();
    let parse = |text: &str| {
        trust_core::metadata::parse_meta_role("timestamp", "Timestamp", text.as_bytes())
    };
    parse(&real).expect("the real file parses");
    let signed_at = real.find("{\"_type\"").unwrap();
    let signed_end = real.find(",\"signatures\"").unwrap();
    let signed = &real[signed_at..signed_end];
    for (what, text) in [
        (
            "a second signed object",
            real.replacen(
                ",\"signatures\"",
                &format!(",\"signed\":{signed},\"signatures\""),
                1,
            ),
        ),
        (
            "a key twice inside signed",
            real.replacen("\"version\":", "\"version\":99,\"version\":", 1),
        ),
        (
            // The members of an object the typed reading lists in order, without a map
            // of its own: a file named twice must be refused before it gets there.
            "a file named twice in the meta it lists",
            real.replacen(
                "\"meta\":{\"snapshot\":",
                "\"meta\":{\"snapshot\":{\"hashes\":{},\"length\":1},\"snapshot\":",
                1,
            ),
        ),
        (
            "a key twice inside a signature",
            real.replacen("\"method\":", "\"method\":\"ecdsa\",\"method\":", 1),
        ),
    ] {
        assert_ne!(text, real, "{what}: the edit applies");
        let e = parse(&text).expect_err(what);
        assert!(e.to_string().contains("duplicate"), "{what}: {e}");
    }
}
