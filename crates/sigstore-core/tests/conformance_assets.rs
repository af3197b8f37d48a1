//! The Sigstore conformance suite's bundle cases (../shared/peers/sigstore-conformance,
//! real Fulcio certificates, Rekor entries and timestamps) through the library directly:
//! every case (with its own trusted root, or Sigstore's public-good root shipped with
//! pullguard) verifies or is refused as its name says, and the refusals name the check
//! that failed. scripts/sigstore-conformance runs the suite itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use sigstore_core::artifact::{verify_bundle, Artifact, Signer};
use sigstore_core::certs::Identity;
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
    // Without a root of its own, a case is for Sigstore's public-good instance: the
    // root shipped with pullguard.
    let root_bytes = if root_file.exists() {
        std::fs::read(root_file).unwrap()
    } else {
        sigstore_core::trust_root::public_good_bytes().to_vec()
    };
    let read = |n: &str| std::fs::read(dir.join(n)).ok();
    let root = match TrustedRoot::parse(&root_bytes) {
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
    // A key that does not parse refuses the case (managed-key-wrong-key_fail's is not
    // even base64), as the command line does.
    let key = match read("key.pub").map(|k| PublicKey::from_pem(&k)) {
        Some(Err(e)) => {
            return Some(Err(sigstore_core::Error {
                reason: Reason::BadSignature,
                message: e,
            }))
        }
        other => other.map(|k| k.unwrap()),
    };
    let accepted = [Identity::exact(&identity, &issuer)];
    let signer = match &key {
        Some(k) => Signer::Key(k),
        None => Signer::Identities(&accepted),
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
    assert!(ran >= 70, "only {ran} cases ran");
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
    let other = [Identity::exact("https://github.com/someone/else", ISSUER)];
    let e = verify_bundle(
        &bundle,
        Artifact::Bytes(&artifact),
        Signer::Identities(&other),
        &root,
        now,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::IdentityMismatch, "{e}");
    let other_issuer = [Identity::exact(IDENTITY, "https://accounts.example")];
    let e = verify_bundle(
        &bundle,
        Artifact::Bytes(&artifact),
        Signer::Identities(&other_issuer),
        &root,
        now,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::IdentityMismatch, "{e}");
    // An anchored expression: the organisation's workflows match, a prefix alone does not.
    let org = [Identity::regex("https://github.com/sigstore-conformance/.*", ISSUER).unwrap()];
    verify_bundle(
        &bundle,
        Artifact::Bytes(&artifact),
        Signer::Identities(&org),
        &root,
        now,
    )
    .unwrap();
    let prefix = [Identity::regex("https://github.com/sigstore-conformance", ISSUER).unwrap()];
    let e = verify_bundle(
        &bundle,
        Artifact::Bytes(&artifact),
        Signer::Identities(&prefix),
        &root,
        now,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::IdentityMismatch, "{e}");
    // Another artifact.
    let exact = [Identity::exact(IDENTITY, ISSUER)];
    assert!(verify_bundle(
        &bundle,
        Artifact::Bytes(b"other"),
        Signer::Identities(&exact),
        &root,
        now
    )
    .is_err());
}

#[test]
fn an_attestation_in_a_bundle_is_no_image_signature() {
    let Some(dir) = cases() else { return };
    let d = dir.join("rekor2-dsse-happy-path");
    let root = TrustedRoot::parse(&std::fs::read(d.join("trusted_root.json")).unwrap()).unwrap();
    let bundle = std::fs::read(d.join("bundle.sigstore.json")).unwrap();
    // The digest the in-toto statement names, taken as the image pulled: everything
    // verifies (certificate, identity, log, timestamp), but the predicate is not cosign's
    // image signature.
    let a = std::fs::read(dir.join("a.txt")).unwrap();
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&a))
    );
    let ids = [Identity::exact(IDENTITY, ISSUER)];
    let expect = sigstore_core::Expect {
        digest: &digest,
        same_repository: None,
        keys: &[],
        tlog: true,
        identities: &ids,
        root: Some(&root),
        now: time::OffsetDateTime::now_utc(),
    };
    let e = sigstore_core::bundle::verify(&bundle, &expect).unwrap_err();
    assert_eq!(e.reason, Reason::NoSignature, "{e}");
    assert!(e.message.contains("not a cosign image signature"), "{e}");
}

/// cosign_tlog = false with an RFC 3161 timestamp: a keyless signature whose time only
/// a timestamp proves verifies (cosign's --insecure-ignore-tlog --use-signed-timestamps),
/// as docs/policy.md says; with a log required, or with nothing proving the time, it
/// does not.
#[test]
fn a_timestamp_alone_proves_the_signing_time_when_no_log_is_required() {
    use sigstore_core::artifact::verify_bundle_with;
    let Some(dir) = cases() else { return };
    let d = dir.join("rekor2-happy-path");
    let root = TrustedRoot::parse(&std::fs::read(d.join("trusted_root.json")).unwrap()).unwrap();
    let artifact = std::fs::read(dir.join("a.txt")).unwrap();
    let mut b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("bundle.sigstore.json")).unwrap()).unwrap();
    assert!(
        !b["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    b["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    let stamped_only = serde_json::to_vec(&b).unwrap();
    let exact = [Identity::exact(IDENTITY, ISSUER)];
    let check = |bundle: &[u8], required: bool| {
        verify_bundle_with(
            bundle,
            Artifact::Bytes(&artifact),
            Signer::Identities(&exact),
            &root,
            time::OffsetDateTime::now_utc(),
            required,
        )
    };
    check(&stamped_only, false).unwrap();
    assert_eq!(
        check(&stamped_only, true).unwrap_err().reason,
        Reason::TlogMissing
    );
    b["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] =
        serde_json::json!([]);
    let e = check(&serde_json::to_vec(&b).unwrap(), false).unwrap_err();
    assert!(
        e.reason == Reason::TlogMissing && e.message.contains("nothing proves when"),
        "{e}"
    );
}

/// The attack: a bundle signed by the attacker's own identity, its one genuine
/// timestamp (or log entry) copied a thousand times; each copy cost signature checks
/// before the identity was found not to be the accepted one. At most 32 of each are
/// read, as sigstore-go reads, and the same log entry twice is refused as it refuses it.
#[test]
fn a_bundle_with_more_than_32_log_entries_or_timestamps_is_refused_before_verifying_them() {
    use sigstore_core::artifact::verify_bundle_with;
    let Some(dir) = cases() else { return };
    let d = dir.join("rekor2-happy-path");
    let root = TrustedRoot::parse(&std::fs::read(d.join("trusted_root.json")).unwrap()).unwrap();
    let artifact = std::fs::read(dir.join("a.txt")).unwrap();
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("bundle.sigstore.json")).unwrap()).unwrap();
    let exact = [Identity::exact(IDENTITY, ISSUER)];
    let check = |b: &serde_json::Value| {
        verify_bundle_with(
            &serde_json::to_vec(b).unwrap(),
            Artifact::Bytes(&artifact),
            Signer::Identities(&exact),
            &root,
            time::OffsetDateTime::now_utc(),
            false,
        )
    };
    check(&b).unwrap();
    let stamps = "/verificationMaterial/timestampVerificationData/rfc3161Timestamps";
    let entries = "/verificationMaterial/tlogEntries";
    let repeated = |path: &str, n: usize| {
        let mut x = b.clone();
        let one = x.pointer(path).unwrap()[0].clone();
        *x.pointer_mut(path).unwrap() = serde_json::Value::Array(vec![one; n]);
        x
    };
    // 32 copies of a genuine timestamp still verify: the limit is sigstore-go's.
    check(&repeated(stamps, 32)).unwrap();
    let e = check(&repeated(stamps, 33)).unwrap_err();
    assert!(e.message.contains("33 timestamps"), "{e}");
    let e = check(&repeated(entries, 33)).unwrap_err();
    assert!(e.message.contains("33 transparency-log entries"), "{e}");
    let e = check(&repeated(entries, 2)).unwrap_err();
    assert!(e.message.contains("twice"), "{e}");
    // The same index written otherwise is the same entry, as sigstore-go compares them.
    let mut padded = repeated(entries, 2);
    let index = padded.pointer(entries).unwrap()[1]["logIndex"]
        .as_str()
        .unwrap()
        .to_owned();
    padded.pointer_mut(entries).unwrap()[1]["logIndex"] = format!("0{index}").into();
    let e = check(&padded).unwrap_err();
    assert!(e.message.contains("twice"), "{e}");
}
