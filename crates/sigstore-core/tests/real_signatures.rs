//! Signatures written by the real cosign (see fixtures/README.md), and every way one
//! must fail: each rejection reason is triggered here from real bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sigstore_core::{bundle, classic, Expect, PublicKey, Reason};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn digest() -> String {
    String::from_utf8(fixture("digest"))
        .unwrap()
        .trim()
        .to_owned()
}

fn key() -> PublicKey {
    PublicKey::from_pem(&fixture("cosign.pub")).unwrap()
}

fn other_key() -> PublicKey {
    // A P-256 key cosign did not sign with.
    let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    // SubjectPublicKeyInfo of an uncompressed P-256 point: a fixed prefix, then the point.
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.extend_from_slice(sk.verifying_key().to_encoded_point(false).as_bytes());
    PublicKey::from_spki_der(&der).unwrap()
}

fn expect<'a>(digest: &'a str, keys: &'a [PublicKey]) -> Expect<'a> {
    Expect {
        digest,
        same_repository: None,
        keys,
        tlog: false,
        identities: &[],
        root: None,
        now: time::OffsetDateTime::now_utc(),
    }
}

fn classic_layer() -> classic::Layer {
    let layers = classic::layers(&fixture("classic-manifest.json")).unwrap();
    assert_eq!(layers.len(), 1);
    layers.into_iter().next().unwrap()
}

#[test]
fn cosigns_classic_signature_vouches_for_its_digest_only() {
    let (d, keys) = (digest(), [key()]);
    let layer = classic_layer();
    let payload = fixture("classic-payload.json");
    let v = classic::verify(&layer, &payload, &expect(&d, &keys)).unwrap();
    assert_eq!((v.digest.as_str(), v.layout), (d.as_str(), "classic"));
    assert_eq!(v.signer, keys[0].id());

    // Another image: the same signature (re-tagged next to it) signs another digest.
    let other = format!("sha256:{}", "0".repeat(64));
    let e = classic::verify(&layer, &payload, &expect(&other, &keys)).unwrap_err();
    assert_eq!(e.reason, Reason::DigestMismatch, "{e}");

    // Not the rule's key.
    let wrong = [other_key()];
    let e = classic::verify(&layer, &payload, &expect(&d, &wrong)).unwrap_err();
    assert_eq!(e.reason, Reason::BadSignature, "{e}");

    // A payload changed after signing (its descriptor's digest updated to match, as an
    // attacker with push rights would): the signature no longer verifies.
    let tampered = String::from_utf8(payload.clone())
        .unwrap()
        .replace(&d, &other)
        .into_bytes();
    let mut l2 = layer.clone();
    l2.digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tampered))
    );
    let e = classic::verify(&l2, &tampered, &expect(&other, &keys)).unwrap_err();
    assert_eq!(e.reason, Reason::BadSignature, "{e}");
    // ... and bytes that differ from the manifest's digest are refused before anything.
    let e = classic::verify(&layer, &tampered, &expect(&d, &keys)).unwrap_err();
    assert!(e.message.contains("hash to"), "{e}");

    // The rule asks for transparency-log evidence; this signature has none.
    let mut x = expect(&d, &keys);
    x.tlog = true;
    let e = classic::verify(&layer, &payload, &x).unwrap_err();
    assert_eq!(e.reason, Reason::TlogMissing, "{e}");

    // The rule checks the signed repository.
    let elsewhere = |r: &str| r == "registry.test/team/app";
    let mut x = expect(&d, &keys);
    x.same_repository = Some(&elsewhere);
    let e = classic::verify(&layer, &payload, &x).unwrap_err();
    assert_eq!(e.reason, Reason::IdentityMismatch, "{e}");
    let here = |r: &str| r.ends_with("/team/app");
    x.same_repository = Some(&here);
    classic::verify(&layer, &payload, &x).unwrap();
}

#[test]
fn cosigns_bundle_vouches_for_its_digest_only() {
    let (d, keys) = (digest(), [key()]);
    let b = fixture("bundle.json");
    let v = bundle::verify(&b, &expect(&d, &keys)).unwrap();
    assert_eq!((v.layout, v.signer.as_str()), ("bundle", keys[0].id()));

    let other = format!("sha256:{}", "0".repeat(64));
    let e = bundle::verify(&b, &expect(&other, &keys)).unwrap_err();
    assert_eq!(e.reason, Reason::DigestMismatch, "{e}");

    let wrong = [other_key()];
    assert_eq!(
        bundle::verify(&b, &expect(&d, &wrong)).unwrap_err().reason,
        Reason::BadSignature
    );

    // One byte of the signed payload changed.
    let mut json: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let p = json["dsseEnvelope"]["payload"].as_str().unwrap().to_owned();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(&p).unwrap();
    let at = raw.len() - 5;
    raw[at] ^= 1;
    json["dsseEnvelope"]["payload"] = b64.encode(&raw).into();
    let e = bundle::verify(&serde_json::to_vec(&json).unwrap(), &expect(&d, &keys)).unwrap_err();
    assert_eq!(e.reason, Reason::BadSignature, "{e}");

    let mut x = expect(&d, &keys);
    x.tlog = true;
    assert_eq!(
        bundle::verify(&b, &x).unwrap_err().reason,
        Reason::TlogMissing
    );

    // A bundle that is not an image signature.
    let mut json: serde_json::Value = serde_json::from_slice(&b).unwrap();
    json["dsseEnvelope"]["payloadType"] = "text/plain".into();
    let e = bundle::verify(&serde_json::to_vec(&json).unwrap(), &expect(&d, &keys)).unwrap_err();
    assert_eq!(e.reason, Reason::NoSignature, "{e}");
    assert!(bundle::verify(b"{}", &expect(&d, &keys)).is_err());
}

#[test]
fn keys_of_each_kind_cosign_makes_parse_and_others_do_not() {
    assert_eq!(key().algorithm(), "ecdsa-p256");
    assert_eq!(key().id().len(), 64);
    let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let der = ed.verifying_key().to_public_key_der().unwrap();
    let k = PublicKey::from_spki_der(der.as_bytes()).unwrap();
    assert_eq!(k.algorithm(), "ed25519");
    use ed25519_dalek::Signer as _;
    let sig = ed.sign(b"msg").to_bytes();
    assert!(k.verify(b"msg", &sig) && !k.verify(b"msh", &sig));
    assert!(
        PublicKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .is_err()
    );
    assert!(PublicKey::from_pem(b"not pem").is_err());
}

#[test]
fn a_payload_with_a_key_twice_is_refused() {
    // Two readers of one document must not see two digests: Go's decoder keeps the last
    // value, others the first.
    let d = digest();
    let other = format!("sha256:{}", "0".repeat(64));
    let text = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"r.test/a"}},"image":{{"docker-manifest-digest":"{other}","docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let e = sigstore_core::payload::Payload::parse(text.as_bytes()).unwrap_err();
    assert_eq!(e.reason, Reason::BadSignature, "{e}");
    let ok = text.replace(&format!(r#""docker-manifest-digest":"{other}","#), "");
    assert_eq!(
        sigstore_core::payload::Payload::parse(ok.as_bytes())
            .unwrap()
            .digest,
        d
    );
}

#[test]
fn a_rule_with_keys_and_identities_but_no_log_requirement_takes_a_keys_signature() {
    let (d, keys) = (digest(), [key()]);
    let root = sigstore_core::trust_root::TrustedRoot::parse(
        br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
    )
    .unwrap();
    let ids = [sigstore_core::certs::Identity::exact(
        "https://ci.example/release",
        "https://issuer.example",
    )];
    let mut x = expect(&d, &keys);
    x.identities = &ids;
    x.root = Some(&root);
    bundle::verify(&fixture("bundle.json"), &x).unwrap();
    // With the log required, the same signature is refused: it has no entry.
    x.tlog = true;
    assert_eq!(
        bundle::verify(&fixture("bundle.json"), &x)
            .unwrap_err()
            .reason,
        Reason::TlogMissing
    );
}

/// The attack: one bundle under 1 MiB, no signing material needed, whose envelope
/// carries tens of thousands of junk signatures over a large payload; each was checked
/// against each key, a hash of the whole payload every time (seconds of a core per
/// bundle, verdict after verdict). cosign writes one, sigstore-go requires one.
#[test]
fn quadratic_dsse_signatures_a_bundle_of_many_signatures_is_refused_by_its_count() {
    let (d, keys) = (digest(), [key()]);
    let b = fixture("bundle.json");
    let mut json: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let good = json["dsseEnvelope"]["signatures"][0].clone();
    let junk = serde_json::json!({"sig": "QQ=="});
    // The good signature second, after one junk entry: two signatures are refused
    // whichever of them verifies.
    json["dsseEnvelope"]["signatures"] = serde_json::json!([junk.clone(), good.clone()]);
    let e = bundle::verify(&serde_json::to_vec(&json).unwrap(), &expect(&d, &keys)).unwrap_err();
    assert!(
        e.reason == Reason::BadSignature && e.message.contains("carries 2 signatures"),
        "{e}"
    );
    json["dsseEnvelope"]["signatures"] = serde_json::Value::Array(vec![junk; 30_000]);
    let started = std::time::Instant::now();
    let e = bundle::verify(&serde_json::to_vec(&json).unwrap(), &expect(&d, &keys)).unwrap_err();
    assert!(e.message.contains("carries 30000 signatures"), "{e}");
    // Not a timing assertion of speed: the refusal comes before any signature check,
    // so it cannot take the 30,000 checks the attack asked for (seconds); a generous
    // bound that only the unbounded loop could exceed.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    json["dsseEnvelope"]["signatures"] = serde_json::json!([]);
    let e = bundle::verify(&serde_json::to_vec(&json).unwrap(), &expect(&d, &keys)).unwrap_err();
    assert!(e.message.contains("carries 0 signatures"), "{e}");
    json["dsseEnvelope"]["signatures"] = serde_json::json!([good]);
    bundle::verify(&serde_json::to_vec(&json).unwrap(), &expect(&d, &keys)).unwrap();
}
