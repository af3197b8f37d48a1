//! What a registry hands pullguardd as cosign signatures: a signature manifest, a
//! simple-signing payload, a Sigstore bundle, a public key file; and keyless material: a
//! trusted root, an RFC 3161 timestamp, a bundle over an artifact. Never panics, and a
//! mutated document never vouches under the real key for a digest it does not sign.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sigstore_core::{bundle, classic, payload::Payload, Expect, PublicKey};

const KEY: &[u8] = include_bytes!("../../crates/sigstore-core/tests/fixtures/cosign.pub");

fuzz_target!(|data: &[u8]| {
    let _ = PublicKey::from_pem(data);
    let _ = PublicKey::from_spki_der(data);
    let _ = Payload::parse(data);
    let Ok(key) = PublicKey::from_pem(KEY) else {
        return;
    };
    let keys = [key];
    // A digest nothing real signs: no input may vouch for it.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let expect = Expect {
        digest: &digest,
        same_repository: None,
        keys: &keys,
        tlog: false,
        identities: &[],
        root: None,
        now: time::OffsetDateTime::now_utc(),
    };
    assert!(bundle::verify(data, &expect).is_err());
    // Keyless material: a trusted root, a timestamp, a whole bundle over an artifact.
    let root = sigstore_core::trust_root::TrustedRoot::parse(data).unwrap_or_default();
    let _ = sigstore_core::tsa::verify(data, b"sig", &root);
    let now = time::OffsetDateTime::now_utc();
    let art = sigstore_core::artifact::Artifact::Bytes(b"artifact");
    let signer = sigstore_core::artifact::Signer::Identities(&[]);
    assert!(sigstore_core::artifact::verify_bundle(data, art, signer, &root, now).is_err());
    if let Ok(layers) = classic::layers(data) {
        for l in layers {
            assert!(classic::verify(&l, data, &expect).is_err());
        }
    }
});
