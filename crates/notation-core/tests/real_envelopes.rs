//! Envelopes written by the Notary Project's notation-go (tests/notation/peer; see
//! fixtures/README.md), and each way one must fail, from real bytes or from envelopes
//! re-signed here with the same test key after one header changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use notation_core::{envelope, verify, Level, Reason, Target, Trust};
use sigstore_core::certs::Cert;
use time::macros::datetime;
use time::OffsetDateTime;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn cert(name: &str) -> Cert {
    let der = sigstore_core::keys::pem_block(&fixture(name), "CERTIFICATE").unwrap();
    Cert::parse(&der).unwrap()
}

/// The fixtures' leaf has no ST in its subject (the peer that wrote them gave none), so
/// under Notation's rules no `x509.subject` identity can match it, only `*`
/// (`an_x509_identity_cannot_match_a_subject_notation_cannot_parse`).
const SIGNER: &str = "*";
/// Inside the certificates' validity and before the COSE signature's expiry.
const NOW: OffsetDateTime = datetime!(2026-12-02 12:00 UTC);

fn digest() -> String {
    String::from_utf8(fixture("digest"))
        .unwrap()
        .trim()
        .to_owned()
}

fn target(d: &str) -> Target<'_> {
    Target {
        digest: d,
        size: fixture("manifest.json").len() as u64,
        media_type: "application/vnd.oci.image.manifest.v1+json",
    }
}

fn check(
    media: &str,
    bytes: &[u8],
    t: &Target<'_>,
    ca: &[Cert],
    ids: &[String],
    level: Level,
    now: OffsetDateTime,
) -> Result<notation_core::Verified, notation_core::Error> {
    verify(
        media,
        bytes,
        t,
        &Trust {
            ca,
            signing_authority: &[],
            tsa: &[],
            identities: ids,
            level,
            now,
        },
    )
}

#[test]
fn both_envelopes_notation_wrote_verify_for_their_manifest_only() {
    let (d, ca, ids) = (digest(), [cert("ca.crt")], [SIGNER.to_owned()]);
    for (media, file, kind) in [
        (envelope::JWS, "signature.jws", "jws"),
        (envelope::COSE, "signature.cose", "cose"),
    ] {
        let bytes = fixture(file);
        let v = check(media, &bytes, &target(&d), &ca, &ids, Level::Strict, NOW).unwrap();
        assert_eq!(v.envelope, kind);
        assert!(
            v.signer.contains("CN=pullguard signer") && v.logged.is_empty(),
            "{v:?}"
        );

        // Another manifest; the same digest with another size.
        let other = format!("sha256:{}", "0".repeat(64));
        assert_eq!(
            check(
                media,
                &bytes,
                &target(&other),
                &ca,
                &ids,
                Level::Strict,
                NOW
            )
            .unwrap_err()
            .reason,
            Reason::DigestMismatch
        );
        let mut t = target(&d);
        t.size += 1;
        assert_eq!(
            check(media, &bytes, &t, &ca, &ids, Level::Strict, NOW)
                .unwrap_err()
                .reason,
            Reason::DigestMismatch
        );
        // A trust store without the CA; audit only logs it.
        let leaf_only = [cert("chain.pem")];
        let e = check(media, &bytes, &target(&d), &[], &ids, Level::Strict, NOW).unwrap_err();
        assert_eq!(e.reason, Reason::UntrustedSigner, "{e}");
        let _ = leaf_only;
        let v = check(media, &bytes, &target(&d), &[], &ids, Level::Audit, NOW).unwrap();
        assert!(
            v.logged.iter().any(|l| l.reason == Reason::UntrustedSigner),
            "{v:?}"
        );
        // Another identity; `*`.
        let e = check(
            media,
            &bytes,
            &target(&d),
            &ca,
            &["x509.subject: C=US, O=pullguard tests, CN=someone else".to_owned()],
            Level::Strict,
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::IdentityMismatch, "{e}");
        check(
            media,
            &bytes,
            &target(&d),
            &ca,
            &["*".to_owned()],
            Level::Strict,
            NOW,
        )
        .unwrap();
        // The leaf certificate past its validity: strict refuses, permissive logs.
        let later = datetime!(2027-02-01 00:00 UTC);
        let e = check(media, &bytes, &target(&d), &ca, &ids, Level::Strict, later).unwrap_err();
        assert!(
            matches!(e.reason, Reason::CertificateExpired | Reason::Expired),
            "{e}"
        );
        // One byte of the signature changed.
        let mut tampered = bytes.clone();
        let at = if kind == "cose" {
            tampered.len() - 3
        } else {
            tampered.len() - 40
        };
        tampered[at] ^= 1;
        assert!(check(media, &tampered, &target(&d), &ca, &ids, Level::Strict, NOW).is_err());
    }
    // The COSE signature was made with --expiry 24h.
    let cose = fixture("signature.cose");
    let after = datetime!(2026-12-04 00:00 UTC);
    let e = check(
        envelope::COSE,
        &cose,
        &target(&d),
        &ca,
        &ids,
        Level::Strict,
        after,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::Expired, "{e}");
    let v = check(
        envelope::COSE,
        &cose,
        &target(&d),
        &ca,
        &ids,
        Level::Permissive,
        after,
    )
    .unwrap();
    assert!(
        v.logged.iter().any(|l| l.message.contains("expired")),
        "{v:?}"
    );
}

/// The JWS notation wrote, its protected header replaced and signed again with the same key.
fn resigned_jws(change: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::DecodePrivateKey as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut env: serde_json::Value = serde_json::from_slice(&fixture("signature.jws")).unwrap();
    let mut protected: serde_json::Value =
        serde_json::from_slice(&b64.decode(env["protected"].as_str().unwrap()).unwrap()).unwrap();
    change(&mut protected);
    let p = b64.encode(serde_json::to_vec(&protected).unwrap());
    let signing_input = format!("{p}.{}", env["payload"].as_str().unwrap());
    let der = sigstore_core::keys::pem_block(&fixture("leaf.key"), "PRIVATE KEY").unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der).unwrap();
    let sig: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    env["protected"] = p.into();
    env["signature"] = b64.encode(sig.to_bytes()).into();
    serde_json::to_vec(&env).unwrap()
}

/// The protected header made a signing authority's: its scheme and an authentic signing
/// time, marked critical when `crit`.
fn as_authority(p: &mut serde_json::Value, crit: bool) {
    p["io.cncf.notary.signingScheme"] = "notary.x509.signingAuthority".into();
    p["io.cncf.notary.authenticSigningTime"] = "2026-12-02T07:28:36Z".into();
    if crit {
        p["crit"]
            .as_array_mut()
            .unwrap()
            .push("io.cncf.notary.authenticSigningTime".into());
    }
}

#[test]
fn headers_the_specification_forbids_refuse_the_signature() {
    let (d, ca, ids) = (digest(), [cert("ca.crt")], [SIGNER.to_owned()]);
    let run = |bytes: &[u8]| {
        check(
            envelope::JWS,
            bytes,
            &target(&d),
            &ca,
            &ids,
            Level::Strict,
            NOW,
        )
    };
    // Re-signed unchanged: verifies (the re-signing itself is sound).
    run(&resigned_jws(|_| {})).unwrap();
    // An unknown critical attribute; a verification plugin.
    let e = run(&resigned_jws(|p| {
        p["crit"]
            .as_array_mut()
            .unwrap()
            .push("com.example.unknown".into());
        p["com.example.unknown"] = "x".into();
    }))
    .unwrap_err();
    assert_eq!(e.reason, Reason::Unsupported, "{e}");
    let e = run(&resigned_jws(|p| {
        p["crit"]
            .as_array_mut()
            .unwrap()
            .push("io.cncf.notary.verificationPlugin".into());
        p["io.cncf.notary.verificationPlugin"] = "com.example.plugin".into();
    }))
    .unwrap_err();
    assert_eq!(e.reason, Reason::Unsupported, "{e}");
    // An unknown attribute that is not critical is allowed (extended attributes).
    run(&resigned_jws(|p| p["com.example.note"] = "x".into())).unwrap();
    // Expired signature; another payload type; an unknown scheme.
    let e = run(&resigned_jws(|p| {
        p["crit"]
            .as_array_mut()
            .unwrap()
            .push("io.cncf.notary.expiry".into());
        p["io.cncf.notary.expiry"] = "2026-12-01T00:00:00Z".into();
    }))
    .unwrap_err();
    assert_eq!(e.reason, Reason::Expired, "{e}");
    assert_eq!(
        run(&resigned_jws(|p| p["cty"] = "application/json".into()))
            .unwrap_err()
            .reason,
        Reason::BadSignature
    );
    assert_eq!(
        run(&resigned_jws(
            |p| p["io.cncf.notary.signingScheme"] = "notary.other".into()
        ))
        .unwrap_err()
        .reason,
        Reason::Unsupported
    );
    // A signing-authority signature needs that store type and an authentic signing time.
    let e = run(&resigned_jws(|p| {
        as_authority(p, true);
        p.as_object_mut()
            .unwrap()
            .remove("io.cncf.notary.signingTime");
    }))
    .unwrap_err();
    assert_eq!(
        e.reason,
        Reason::UntrustedSigner,
        "ca stores do not serve signingAuthority: {e}"
    );
    // A duplicate key in the protected header.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut env: serde_json::Value = serde_json::from_slice(&fixture("signature.jws")).unwrap();
    let p = String::from_utf8(b64.decode(env["protected"].as_str().unwrap()).unwrap()).unwrap();
    env["protected"] = b64.encode(p.replacen("{", "{\"alg\":\"ES256\",", 1)).into();
    assert_eq!(
        run(&serde_json::to_vec(&env).unwrap()).unwrap_err().reason,
        Reason::BadSignature
    );
}

#[test]
fn distinguished_names_match_by_their_attributes() {
    let subject = vec![
        ("C".to_owned(), "US".to_owned()),
        ("ST".to_owned(), "WA".to_owned()),
        ("O".to_owned(), "A, Inc.".to_owned()),
        ("CN".to_owned(), "s".to_owned()),
    ];
    assert!(notation_core::identity_matches(
        "x509.subject: C=US, ST=WA, O=A\\, Inc., CN=s",
        &subject
    ));
    assert!(notation_core::identity_matches(
        "x509.subject: CN=s, C=US, S=WA, O=A\\2C Inc.",
        &subject
    ));
    assert!(!notation_core::identity_matches(
        "x509.subject: C=US, ST=WA, O=A\\, Inc., CN=t",
        &subject
    ));
    assert!(!notation_core::identity_matches("x509.subject:", &subject));
    assert!(
        !notation_core::identity_matches("CN=s", &subject),
        "the prefix is required"
    );
}

#[test]
fn an_x509_identity_cannot_match_a_subject_notation_cannot_parse() {
    // The fixtures' leaf: C, O, CN and no ST. notation-go parses the leaf's subject with
    // the rules of a trusted identity, and refuses it.
    let (d, ca) = (digest(), [cert("ca.crt")]);
    let ids = ["x509.subject: C=US, ST=WA, O=pullguard tests, CN=pullguard signer".to_owned()];
    let e = check(
        envelope::JWS,
        &fixture("signature.jws"),
        &target(&d),
        &ca,
        &ids,
        Level::Strict,
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::IdentityMismatch, "{e:?}");
    assert!(e.message.contains("no ST"), "{}", e.message);
}

/// `check` against the fixtures' digest, CA and `*`, at `level`.
fn judged(
    media: &str,
    bytes: &[u8],
    level: Level,
) -> Result<notation_core::Verified, notation_core::Error> {
    let (d, ca, ids) = (digest(), [cert("ca.crt")], [SIGNER.to_owned()]);
    check(media, bytes, &target(&d), &ca, &ids, level, NOW)
}

/// The attack: an expiry written as a number (and marked critical) was read as no
/// expiry at all, so a signature its signer meant to end went on counting; notation-go
/// cannot decode such an envelope and refuses it.
#[test]
fn a_jws_expiry_that_is_not_a_string_is_refused_not_ignored() {
    for value in [
        serde_json::json!(1_600_000_000),
        serde_json::json!(null),
        serde_json::json!({}),
    ] {
        let bytes = resigned_jws(|p| {
            p["crit"]
                .as_array_mut()
                .unwrap()
                .push("io.cncf.notary.expiry".into());
            p["io.cncf.notary.expiry"] = value.clone();
        });
        let e = judged(envelope::JWS, &bytes, Level::Strict).unwrap_err();
        assert!(
            e.reason == Reason::BadSignature && e.message.contains("not an RFC 3339 time"),
            "{value}: {e}"
        );
    }
    // The same for the signing time.
    let bytes = resigned_jws(|p| p["io.cncf.notary.signingTime"] = 1_600_000_000.into());
    assert!(judged(envelope::JWS, &bytes, Level::Strict).is_err());
}

/// The attack: an envelope under 1 MiB carrying thousands of linked CA certificates,
/// each costing a signature check before the chain met the trust store (seconds of a
/// core per envelope, up to the budget's envelopes per verdict, on every retry).
#[test]
fn a_long_certificate_chain_is_refused_before_its_signatures_are_checked() {
    let env: serde_json::Value = serde_json::from_slice(&fixture("signature.jws")).unwrap();
    let leaf = env["header"]["x5c"][0].clone();
    let with = |n: usize| {
        let mut e = env.clone();
        e["header"]["x5c"] = serde_json::Value::Array(vec![leaf.clone(); n]);
        serde_json::to_vec(&e).unwrap()
    };
    assert!(envelope::parse(envelope::JWS, &with(envelope::MAX_CHAIN)).is_ok());
    let e = envelope::parse(envelope::JWS, &with(envelope::MAX_CHAIN + 1)).unwrap_err();
    assert!(
        e.reason == Reason::BadSignature && e.message.contains("chain of 11 certificates"),
        "{e}"
    );
    let e = envelope::parse(envelope::JWS, &with(1_500)).unwrap_err();
    assert!(e.message.contains("chain of 1500"), "{e}");
}

/// A verdict says until when it holds (a cached one must not be served past it): the
/// signature's expiry, or its chain's end when the chain was checked at `now`; under
/// the levels that only log time checks, nothing.
#[test]
fn a_verdict_says_when_it_stops_holding() {
    let chain_end = sigstore_core::keys::pem_blocks(&fixture("chain.pem"), "CERTIFICATE")
        .unwrap()
        .iter()
        .map(|der| Cert::parse(der).unwrap().validity().1)
        .min()
        .unwrap();
    let jws = judged(envelope::JWS, &fixture("signature.jws"), Level::Strict).unwrap();
    assert_eq!(
        jws.expires,
        Some(chain_end),
        "no expiry in it: the chain's end"
    );
    let cose_bytes = fixture("signature.cose");
    let cose = judged(envelope::COSE, &cose_bytes, Level::Strict).unwrap();
    let expiry = envelope::parse(envelope::COSE, &cose_bytes)
        .unwrap()
        .expiry
        .unwrap();
    assert_eq!(cose.expires, Some(expiry.min(chain_end)));
    let lax = judged(envelope::COSE, &cose_bytes, Level::Permissive).unwrap();
    assert_eq!(lax.expires, None);
}

/// Envelope shapes the specification forbids and notation-core-go refuses, each made by
/// re-signing the real JWS with one change: the signing scheme not marked critical (an
/// empty `crit`), an expiry or a signing authority's time not marked critical, a name
/// twice in `crit`, the other scheme's time beside this one's.
#[test]
fn signed_attributes_the_specification_requires_are_checked_as_notation_checks_them() {
    let refused = |change: &dyn Fn(&mut serde_json::Value), why: &str| {
        let e = judged(envelope::JWS, &resigned_jws(change), Level::Strict).unwrap_err();
        assert!(
            e.reason == Reason::BadSignature && e.message.contains(why),
            "{why}: {e}"
        );
    };
    refused(
        &|p| p["crit"] = serde_json::json!([]),
        "signingScheme is not marked critical",
    );
    refused(
        &|p| p["io.cncf.notary.expiry"] = "2030-01-01T00:00:00Z".into(),
        "expiry is not marked critical",
    );
    refused(
        &|p| {
            p["crit"]
                .as_array_mut()
                .unwrap()
                .push("io.cncf.notary.signingScheme".into())
        },
        "listed twice",
    );
    refused(
        &|p| p["io.cncf.notary.authenticSigningTime"] = "2026-12-02T07:28:36Z".into(),
        "authenticSigningTime must not be present",
    );
    refused(
        &|p| as_authority(p, false),
        "authenticSigningTime is not marked critical",
    );
    refused(
        &|p| as_authority(p, true),
        "signingTime must not be present",
    );
    // The real envelopes, as notation-go wrote them, pass these checks.
    judged(envelope::JWS, &fixture("signature.jws"), Level::Strict).unwrap();
    judged(envelope::COSE, &fixture("signature.cose"), Level::Strict).unwrap();
}

/// Encodings notation-go's readers refuse, refused here too: a COSE_Sign1 without its
/// tag (go-cose reads the tagged form only), a JWS segment with base64 padding (Go's
/// RawURLEncoding).
#[test]
fn encodings_notations_readers_refuse_are_refused() {
    let cose = fixture("signature.cose");
    assert_eq!(cose[0], 0xd2, "the fixture is tagged 18");
    let e = judged(envelope::COSE, &cose[1..], Level::Strict).unwrap_err();
    assert!(e.message.contains("not a tagged COSE_Sign1"), "{e}");
    let mut env: serde_json::Value = serde_json::from_slice(&fixture("signature.jws")).unwrap();
    let sig = env["signature"].as_str().unwrap().to_owned();
    env["signature"] = format!("{sig}==").into();
    let e = judged(
        envelope::JWS,
        &serde_json::to_vec(&env).unwrap(),
        Level::Strict,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::BadSignature, "{e}");
}
