//! The Sigstore bundle layout (cosign 3 by default, cosign 2.4+ with
//! `--new-bundle-format`): a bundle document attached to the image through the OCI 1.1
//! referrers API (or its tag-schema fallback). For an image, cosign signs a DSSE envelope
//! holding an in-toto statement whose subject is the image's digest and whose predicate
//! type is `https://sigstore.dev/cosign/sign/v1`.

use crate::intoto::Statement;
use serde::Deserialize;

use crate::artifact::Envelope;
use crate::base64_any;
use crate::payload::shown;
use crate::{Error, Expect, Reason, Verified};

/// The artifact type of a Sigstore bundle v0.3 referrer.
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The predicate type cosign gives an image signature (as opposed to an attestation).
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// DSSE payload type of in-toto statements.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    #[serde(default)]
    verification_material: Option<Material>,
    dsse_envelope: Option<Envelope>,
    #[serde(default)]
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Does this bundle vouch for `expect.digest`? With a trusted root and either keyless
/// identities or transparency-log evidence required, the whole of Sigstore's bundle
/// verification applies ([`crate::artifact::verify_bundle`]), then the image checks.
pub fn verify(bundle: &[u8], expect: &Expect<'_>) -> Result<Verified, Error> {
    match expect.root {
        Some(root) if expect.tlog || !expect.identities.is_empty() => {
            // A rule with keys and identities but no log requirement: a key's signature
            // needs no log entry, only a keyless one does.
            if !expect.tlog && !expect.keys.is_empty() {
                if let Ok(v) = verify_key_only(bundle, expect) {
                    return Ok(v);
                }
            }
            verify_full(bundle, expect, root)
        }
        _ => verify_key_only(bundle, expect),
    }
}

fn verify_full(
    bundle: &[u8],
    expect: &Expect<'_>,
    root: &crate::trust_root::TrustedRoot,
) -> Result<Verified, Error> {
    use crate::artifact::{Artifact, ParsedBundle, Signer};
    let digest: [u8; 32] = expect
        .digest
        .strip_prefix("sha256:")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| {
            Error::new(
                Reason::DigestMismatch,
                format!("{} is not a sha256 digest", expect.digest),
            )
        })?;
    // Keys for a key's signature, identities for a certificate's: trying the other only
    // adds a failure that says less.
    let parsed = ParsedBundle::parse(bundle)?;
    let by_key = parsed.signed_by_key();
    let keys: &[crate::PublicKey] = if by_key { expect.keys } else { &[] };
    let identities =
        (!by_key && !expect.identities.is_empty()).then_some(Signer::Identities(expect.identities));
    if keys.is_empty() && identities.is_none() {
        let (was, wants) = if by_key {
            ("a key", "keyless identities")
        } else {
            ("a certificate", "keys")
        };
        return Err(Error::new(
            Reason::IdentityMismatch,
            format!("the bundle is signed by {was}, and the rule accepts only {wants}"),
        ));
    }
    let signers = keys.iter().map(Signer::Key).chain(identities);
    let mut failures = crate::Failures::default();
    for signer in signers {
        let v = match parsed.verify(
            Artifact::Sha256(digest),
            signer,
            root,
            expect.now,
            expect.tlog,
        ) {
            Ok(v) => v,
            Err(e) => {
                failures.add(e);
                continue;
            }
        };
        let payload = v.payload.ok_or_else(|| {
            Error::new(Reason::NoSignature, "a Sigstore bundle attached to the image signs a blob, not the image (no DSSE envelope)")
        })?;
        check_statement(&payload, expect)?;
        if expect.same_repository.is_some() {
            return Err(Error::new(
                Reason::IdentityMismatch,
                "a bundle signature names no repository, and the rule checks the signed docker-reference (cosign_check_reference)",
            ));
        }
        return Ok(Verified {
            digest: expect.digest.to_owned(),
            signer: v.signer,
            layout: "bundle",
        });
    }
    Err(failures.into_error(expect.digest))
}

fn verify_key_only(bundle: &[u8], expect: &Expect<'_>) -> Result<Verified, Error> {
    let bad = |m: String| Error::new(Reason::BadSignature, m);
    if bundle.len() > crate::MAX_DOCUMENT {
        return Err(bad(format!(
            "Sigstore bundle of {} bytes is over the limit",
            bundle.len()
        )));
    }
    let b: Bundle =
        serde_json::from_slice(bundle).map_err(|e| bad(format!("not a Sigstore bundle: {e}")))?;
    if !b
        .media_type
        .starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(bad(format!(
            "bundle media type {} is not a Sigstore bundle's",
            shown(&b.media_type)
        )));
    }
    let Some(env) = b.dsse_envelope else {
        let what = if b.message_signature.is_some() {
            "a message signature over a blob"
        } else {
            "no DSSE envelope"
        };
        return Err(Error::new(
            Reason::NoSignature,
            format!("a Sigstore bundle attached to the image holds {what}, not a cosign image signature"),
        ));
    };
    if env.payload_type != IN_TOTO {
        return Err(Error::new(
            Reason::NoSignature,
            format!(
                "a bundle's envelope holds {}, not an in-toto statement",
                shown(&env.payload_type)
            ),
        ));
    }
    // One signature, as cosign writes and sigstore-go requires: every further one
    // would cost a hash of the whole payload per key before anything is known.
    let [one] = env.signatures.as_slice() else {
        return Err(bad(format!(
            "a Sigstore bundle's DSSE envelope carries {} signatures; an image signature's carries exactly one",
            env.signatures.len()
        )));
    };
    let payload = proof_kit::b64::padded(env.payload.trim())
        .map_err(|e| bad(format!("bundle payload is not base64: {e}")))?;
    let signed = pae(&env.payload_type, &payload);
    let sig = base64_any(&one.sig)?;
    let signer = expect
        .keys
        .iter()
        .find(|k| k.verify(&signed, &sig))
        .ok_or_else(|| {
            bad(format!(
                "a Sigstore bundle's signature does not verify under any of the rule's {} key(s)",
                expect.keys.len()
            ))
        })?;
    check_statement(&payload, expect)?;
    if expect.same_repository.is_some() {
        return Err(Error::new(
            Reason::IdentityMismatch,
            "a bundle signature names no repository, and the rule checks the signed docker-reference (cosign_check_reference)",
        ));
    }
    if expect.tlog {
        let evidence = match b.verification_material {
            Some(m) if !m.tlog_entries.is_empty() => "its transparency-log entry cannot be verified: the rule names no trusted_root with the log's keys",
            _ if !expect.identities.is_empty() => "the rule names no trusted_root",
            _ => "it carries no transparency-log entry (signed with --tlog-upload=false?)",
        };
        return Err(Error::new(
            Reason::TlogMissing,
            format!("a bundle signature by key {} is valid, but the rule requires transparency-log evidence and {evidence}", signer.id()),
        ));
    }
    Ok(Verified {
        digest: expect.digest.to_owned(),
        signer: signer.id().to_owned(),
        layout: "bundle",
    })
}

/// The signed statement must be a cosign image signature whose subject is the digest.
fn check_statement(payload: &[u8], expect: &Expect<'_>) -> Result<(), Error> {
    let bad = |m: String| Error::new(Reason::BadSignature, m);
    let st = Statement::parse(payload)
        .map_err(|e| bad(format!("signed statement is not an in-toto statement: {e}")))?;
    match st.type_.as_deref() {
        Some("https://in-toto.io/Statement/v1" | "https://in-toto.io/Statement/v0.1") => {}
        other => {
            return Err(bad(format!(
                "signed statement type {} is not in-toto's",
                shown(other.unwrap_or(""))
            )))
        }
    }
    let predicate = st.predicate_type.as_deref().unwrap_or_default();
    if predicate != SIGN_PREDICATE {
        return Err(Error::new(
            Reason::NoSignature,
            format!(
                "a valid attestation of type {} is not a cosign image signature ({SIGN_PREDICATE})",
                shown(predicate)
            ),
        ));
    }
    let want = expect
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(expect.digest);
    if st.subject.is_none() {
        return Err(bad("signed statement has no subject list".to_owned()));
    }
    let named: Vec<&str> = st.sha256s().collect();
    if named.contains(&want) {
        return Ok(());
    }
    Err(Error::new(
        Reason::DigestMismatch,
        format!(
            "a valid bundle signature signs {} but the image pulled is {}",
            named
                .first()
                .map(|d| shown(&format!("sha256:{d}")))
                .unwrap_or_else(|| "no sha256 digest".to_owned()),
            expect.digest
        ),
    ))
}
