//! The Sigstore conformance suite's bundle cases (../shared/peers/sigstore-conformance,
//! real Fulcio certificates, Rekor entries and timestamps) through the library directly:
//! every case with its own trusted root verifies or is refused as its name says, and the
//! refusals name the check that failed. scripts/sigstore-conformance runs the suite itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use sigstore_core::artifact::{verify_bundle, Artifact, Signer};
use sigstore_core::trust_root::TrustedRoot;
use sigstore_core::{PublicKey, Reason};

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn cases() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/peers/sigstore-conformance/test/assets/bundle-verify");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("skipped: {} is not here", d.display());
        None
    }
}

/// Verifies one case as the suite would (path input); `Err` carries the refusal.
fn run(dir: &Path) -> Option<Result<(), sigstore_core::Error>> {
    let root_file = dir.join("trusted_root.json");
    if !root_file.exists() {
        return None; // public-good root: needs the internet
    }
    let read = |n: &str| std::fs::read(dir.join(n)).ok();
    let root = match TrustedRoot::parse(&std::fs::read(root_file).unwrap()) {
        Ok(r) => r,
        Err(e) => {
            return Some(Err(sigstore_core::Error {
                reason: Reason::BadSignature,
                message: e,
            }))
        }
    };
    let artifact = read("artifact").unwrap_or_else(|| std::fs::read(dir.join("../a.txt")).unwrap());
    let text = |n: &str, d: &str| {
        read(n)
            .map(|b| String::from_utf8(b).unwrap().trim().to_owned())
            .unwrap_or_else(|| d.to_owned())
    };
    let (identity, issuer) = (text("identity", IDENTITY), text("issuer", ISSUER));
    let key = read("key.pub").map(|k| PublicKey::from_pem(&k).unwrap());
    let signer = match &key {
        Some(k) => Signer::Key(k),
        None => Signer::Identity {
            san: &identity,
            issuer: &issuer,
        },
    };
    let bundle = std::fs::read(dir.join("bundle.sigstore.json")).unwrap();
    Some(
        verify_bundle(
            &bundle,
            Artifact::Bytes(&artifact),
            signer,
            &root,
            time::OffsetDateTime::now_utc(),
        )
        .map(|_| ()),
    )
}

#[test]
fn every_offline_case_is_verified_or_refused_as_named() {
    let Some(dir) = cases() else { return };
    let mut ran = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let d = e.unwrap().path();
        if !d.is_dir() {
            continue;
        }
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        let Some(result) = run(&d) else { continue };
        ran += 1;
        match (name.ends_with("_fail"), result) {
            (false, Err(e)) => panic!("{name} must verify: {e}"),
            (true, Ok(())) => panic!("{name} must be refused"),
            _ => {}
        }
    }
    assert!(ran >= 30, "only {ran} cases have their own trusted root");
}

#[test]
fn refusals_name_the_check_that_failed() {
    let Some(dir) = cases() else { return };
    for (case, reason, words) in [
        (
            "intoto-expired-certificate_fail",
            Reason::CertificateExpired,
            "not at the signing time",
        ),
        (
            "intoto-missing-inclusion-proof_fail",
            Reason::TlogMissing,
            "no inclusion proof",
        ),
        ("invalid-ct-key_fail", Reason::BadSignature, "SCT"),
        (
            "rekor2-checkpoint-no-matching-signature_fail",
            Reason::TlogMissing,
            "checkpoint",
        ),
        (
            "rekor2-dsse-mismatch-sig_fail",
            Reason::TlogMissing,
            "another signature",
        ),
        (
            "rekor2-timestamp-payload-mismatch_fail",
            Reason::TlogMissing,
            "covers other bytes",
        ),
        (
            "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail",
            Reason::TlogMissing,
            "no timestamp authority",
        ),
        (
            "rekor2-timestamp-with-incorrect-time_fail",
            Reason::CertificateExpired,
            "not at the signing time",
        ),
        (
            "rekor2-no-timestamp_fail",
            Reason::TlogMissing,
            "nothing proves when",
        ),
        (
            "rekor2-dsse-invalid-sig_fail",
            Reason::BadSignature,
            "DSSE signature",
        ),
    ] {
        let e = run(&dir.join(case)).unwrap().unwrap_err();
        assert_eq!(e.reason, reason, "{case}: {e}");
        assert!(e.message.contains(words), "{case}: {e}");
    }
    // The right key, and the wrong identity.
    let d = dir.join("rekor2-happy-path");
    let root = TrustedRoot::parse(&std::fs::read(d.join("trusted_root.json")).unwrap()).unwrap();
    let artifact = std::fs::read(dir.join("a.txt")).unwrap();
    let bundle = std::fs::read(d.join("bundle.sigstore.json")).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let signer = Signer::Identity {
        san: "https://github.com/someone/else",
        issuer: ISSUER,
    };
    let e = verify_bundle(&bundle, Artifact::Bytes(&artifact), signer, &root, now).unwrap_err();
    assert_eq!(e.reason, Reason::IdentityMismatch, "{e}");
    let signer = Signer::Identity {
        san: IDENTITY,
        issuer: "https://accounts.example",
    };
    let e = verify_bundle(&bundle, Artifact::Bytes(&artifact), signer, &root, now).unwrap_err();
    assert_eq!(e.reason, Reason::IdentityMismatch, "{e}");
    // Another artifact.
    let signer = Signer::Identity {
        san: IDENTITY,
        issuer: ISSUER,
    };
    assert!(verify_bundle(&bundle, Artifact::Bytes(b"other"), signer, &root, now).is_err());
}
