//! Real keyless signatures in cosign's classic layout, made against Sigstore's
//! public-good instance (tests/fixtures/public-good-classic/PROVENANCE.md), verified
//! against the public-good trusted root pullguard ships, at their signing time; and each
//! field of them broken on purpose, refused with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::PathBuf;

use sigstore_core::certs::Identity;
use sigstore_core::trust_root::{public_good_bytes, TrustedRoot};
use sigstore_core::{classic, Error, Expect, Reason};
use test_support::differential::cosign_classic_manifest;

const FIXTURES: [&str; 4] = [
    "containers-image-fulcio-rekor",
    "containers-image-rekor-loose",
    "github-actions-go-bazel",
    "google-service-account-cloud-build",
];

struct Fixture {
    payload: Vec<u8>,
    annotations: serde_json::Value,
    digest: String,
    identity: Identity,
}

fn fixture(name: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/public-good-classic")
        .join(name);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let id: serde_json::Value = serde_json::from_slice(&read("identity.json")).unwrap();
    Fixture {
        payload: read("payload"),
        annotations: serde_json::from_slice(&read("annotations.json")).unwrap(),
        digest: String::from_utf8(read("digest")).unwrap().trim().to_owned(),
        identity: Identity::exact(
            id["subject"].as_str().unwrap(),
            id["issuer"].as_str().unwrap(),
        ),
    }
}

fn root() -> TrustedRoot {
    TrustedRoot::parse(public_good_bytes()).unwrap()
}

fn verify_with(
    payload: &[u8],
    annotations: &serde_json::Value,
    digest: &str,
    identity: &Identity,
    tlog: bool,
) -> Result<sigstore_core::Verified, Error> {
    let root = root();
    let identities = [identity.clone()];
    let expect = Expect {
        digest,
        same_repository: None,
        keys: &[],
        tlog,
        identities: &identities,
        root: Some(&root),
        now: time::OffsetDateTime::now_utc(),
    };
    let layers = classic::layers(&cosign_classic_manifest(payload, annotations))?;
    assert_eq!(layers.len(), 1);
    classic::verify(&layers[0], payload, &expect)
}

fn verify(f: &Fixture) -> Result<sigstore_core::Verified, Error> {
    verify_with(&f.payload, &f.annotations, &f.digest, &f.identity, true)
}

fn refused(r: Result<sigstore_core::Verified, Error>, reason: Reason, name: &str) -> String {
    let e = r.expect_err(name);
    assert_eq!(e.reason, reason, "{name}: {}", e.message);
    e.message
}

#[test]
fn real_public_good_classic_keyless_signatures_verify_against_the_shipped_root() {
    for name in FIXTURES {
        let f = fixture(name);
        let v =
            verify(&f).unwrap_or_else(|e| panic!("{name}: {}: {}", e.reason.as_str(), e.message));
        assert_eq!(v.layout, "classic");
        assert_eq!(v.digest, f.digest);
        assert!(
            v.signer.contains(match &f.identity.subject {
                sigstore_core::certs::Subject::Exact(s) => s.as_str(),
                sigstore_core::certs::Subject::Regex(_) => unreachable!(),
            }),
            "{name}: {}",
            v.signer
        );
    }
}

#[test]
fn classic_keyless_another_digest_than_the_signed_one_is_refused() {
    let f = fixture("containers-image-fulcio-rekor");
    let other = format!("sha256:{}", "0".repeat(64));
    refused(
        verify_with(&f.payload, &f.annotations, &other, &f.identity, true),
        Reason::DigestMismatch,
        "other digest",
    );
}

#[test]
fn classic_keyless_another_identity_or_issuer_is_refused() {
    let f = fixture("google-service-account-cloud-build");
    for id in [
        Identity::exact(
            "krel-trust@k8s-releng-prod.iam.gserviceaccount.com",
            "https://accounts.google.com",
        ),
        Identity::exact(
            "cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com",
            "https://token.actions.githubusercontent.com",
        ),
        // A prefix of the real SAN: subject_regex is anchored.
        Identity::regex("cosign-svc-account", "https://accounts.google.com").unwrap(),
        // issuer_regex is anchored too: a part of the real issuer does not match it.
        Identity::regex(".*", "unused")
            .and_then(|id| id.with_issuer_regex("accounts.google.com"))
            .unwrap(),
        Identity::regex(".*", "unused")
            .and_then(|id| id.with_issuer_regex(r"https://token\.actions\..*"))
            .unwrap(),
    ] {
        refused(
            verify_with(&f.payload, &f.annotations, &f.digest, &id, true),
            Reason::IdentityMismatch,
            "other identity",
        );
    }
    Identity::regex(
        r"cosign-svc-account@.*\.iam\.gserviceaccount\.com",
        "https://accounts.google.com",
    )
    .map(|id| verify_with(&f.payload, &f.annotations, &f.digest, &id, true).unwrap())
    .unwrap();
    Identity::regex(r"cosign-svc-account@.*", "unused")
        .and_then(|id| id.with_issuer_regex(r"https://accounts\.google\.com"))
        .map(|id| verify_with(&f.payload, &f.annotations, &f.digest, &id, true).unwrap())
        .unwrap();
}

fn with(f: &Fixture, key: &str, value: Option<String>) -> serde_json::Value {
    let mut a = f.annotations.clone();
    let m = a.as_object_mut().unwrap();
    match value {
        Some(v) => m.insert(key.to_owned(), v.into()),
        None => m.remove(key),
    };
    a
}

#[test]
fn classic_keyless_a_signature_not_over_the_payload_is_refused() {
    let f = fixture("github-actions-go-bazel");
    let other = fixture("google-service-account-cloud-build");
    let sig = other.annotations[classic::SIGNATURE]
        .as_str()
        .unwrap()
        .to_owned();
    refused(
        verify_with(
            &f.payload,
            &with(&f, classic::SIGNATURE, Some(sig)),
            &f.digest,
            &f.identity,
            true,
        ),
        Reason::BadSignature,
        "other signature",
    );
    // The payload changed (its layer digest follows, as someone with push rights could).
    let mut payload = f.payload.clone();
    let at = payload.len() - 3;
    payload[at] ^= 1;
    refused(
        verify_with(&payload, &f.annotations, &f.digest, &f.identity, true),
        Reason::BadSignature,
        "changed payload",
    );
}

#[test]
fn classic_keyless_another_certificate_than_the_signing_one_is_refused() {
    let f = fixture("containers-image-fulcio-rekor");
    let other = fixture("containers-image-rekor-loose");
    let cert = other.annotations[classic::CERTIFICATE]
        .as_str()
        .unwrap()
        .to_owned();
    refused(
        verify_with(
            &f.payload,
            &with(&f, classic::CERTIFICATE, Some(cert)),
            &f.digest,
            &f.identity,
            true,
        ),
        Reason::BadSignature,
        "other certificate",
    );
}

#[test]
fn classic_keyless_without_its_rekor_entry_is_refused() {
    let f = fixture("containers-image-fulcio-rekor");
    let msg = refused(
        verify_with(
            &f.payload,
            &with(&f, classic::REKOR_BUNDLE, None),
            &f.digest,
            &f.identity,
            true,
        ),
        Reason::TlogMissing,
        "no rekor bundle",
    );
    assert!(msg.contains("no transparency-log entry"), "{msg}");
    // Without a log requirement, nothing else proves when the certificate signed.
    let msg = refused(
        verify_with(
            &f.payload,
            &with(&f, classic::REKOR_BUNDLE, None),
            &f.digest,
            &f.identity,
            false,
        ),
        Reason::TlogMissing,
        "no time",
    );
    assert!(msg.contains("nothing proves when"), "{msg}");
}

#[test]
fn classic_keyless_a_rekor_entry_altered_or_of_another_signature_is_refused() {
    let f = fixture("containers-image-fulcio-rekor");
    let bundle: serde_json::Value =
        serde_json::from_str(f.annotations[classic::REKOR_BUNDLE].as_str().unwrap()).unwrap();
    let alter = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut b = bundle.clone();
        edit(&mut b);
        with(&f, classic::REKOR_BUNDLE, Some(b.to_string()))
    };
    // A later integration time (inside the certificate's ten minutes or not), a SET of
    // another entry, a log the root does not know: the SET no longer verifies.
    for (what, a) in [
        (
            "time",
            alter(&|b| {
                b["Payload"]["integratedTime"] =
                    (b["Payload"]["integratedTime"].as_i64().unwrap() + 60).into()
            }),
        ),
        (
            "index",
            alter(&|b| {
                b["Payload"]["logIndex"] = (b["Payload"]["logIndex"].as_i64().unwrap() + 1).into()
            }),
        ),
        (
            "set",
            alter(&|b| {
                let other = fixture("containers-image-rekor-loose");
                let o: serde_json::Value = serde_json::from_str(
                    other.annotations[classic::REKOR_BUNDLE].as_str().unwrap(),
                )
                .unwrap();
                b["SignedEntryTimestamp"] = o["SignedEntryTimestamp"].clone();
            }),
        ),
        (
            "log",
            alter(&|b| b["Payload"]["logID"] = "00".repeat(32).into()),
        ),
    ] {
        refused(
            verify_with(&f.payload, &a, &f.digest, &f.identity, true),
            Reason::TlogMissing,
            what,
        );
    }
    // A valid entry with its SET, of another signature: its body records another one.
    let other = fixture("containers-image-rekor-loose");
    let entry = other.annotations[classic::REKOR_BUNDLE]
        .as_str()
        .unwrap()
        .to_owned();
    let msg = refused(
        verify_with(
            &f.payload,
            &with(&f, classic::REKOR_BUNDLE, Some(entry)),
            &f.digest,
            &f.identity,
            true,
        ),
        Reason::TlogMissing,
        "other entry",
    );
    assert!(msg.contains("records another"), "{msg}");
}

#[test]
fn classic_keyless_without_a_trusted_root_or_identities_is_not_verified() {
    let f = fixture("containers-image-fulcio-rekor");
    let layers = classic::layers(&cosign_classic_manifest(&f.payload, &f.annotations)).unwrap();
    let identities = [f.identity.clone()];
    let expect = Expect {
        digest: &f.digest,
        same_repository: None,
        keys: &[],
        tlog: true,
        identities: &identities,
        root: None,
        now: time::OffsetDateTime::now_utc(),
    };
    refused(
        classic::verify(&layers[0], &f.payload, &expect),
        Reason::TlogMissing,
        "no root",
    );
    let root = root();
    let expect = Expect {
        identities: &[],
        root: Some(&root),
        ..expect
    };
    refused(
        classic::verify(&layers[0], &f.payload, &expect),
        Reason::IdentityMismatch,
        "no identities",
    );
}
