//! Notary Project (Notation) signatures as a kind of proof: signature manifests that refer
//! to the image (OCI 1.1 referrers API, or its tag-schema fallback) in its registry, each
//! an envelope (JWS or COSE) verified by notation-core against the rule's trust stores and
//! identities, for exactly the manifest pulled.

use api::codes::ReasonCode;
use notation_core::{Failures, Level, Reason, Target, Trust};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use policy::{ImageRef, Policy, Proof, Rule};

use super::deny;
use super::prepare::Loaded;
use super::proof::{Query, Slot as _, Vouch};
use super::registry_proof::{
    off_worker, refusal, subject, Miss, RegistryKind, RegistryProof, Skipped,
};

/// The artifact type of a Notary Project signature manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Signatures considered per image at most (Notation's own default is 50).
const MAX_SIGNATURES: usize = 50;

/// The Notation proof.
pub(crate) type Notation = RegistryProof<NotationFormat>;

/// Notation's part of its proof: its signers and its `find`.
pub(crate) struct NotationFormat;

impl RegistryKind for NotationFormat {
    const PROOF: Proof = Proof::Notation;
    type Prepared = BTreeMap<String, NotationTrust>;

    fn prepare(policy: &Policy, problems: &mut Vec<String>) -> Self::Prepared {
        prepare(policy, problems)
    }

    async fn find(q: &Query<'_>, hex: String) -> Result<Vouch, Miss> {
        find(q.loaded, q.rule, q.image, hex).await
    }
}

/// What a rule trusts for Notation signatures, prepared.
#[derive(Default)]
pub(crate) struct NotationTrust {
    pub ca: Vec<sigstore_core::certs::Cert>,
    pub signing_authority: Vec<sigstore_core::certs::Cert>,
    pub tsa: Vec<sigstore_core::certs::Cert>,
    /// Trust stores the rule names that are gone or emptied (a revoked CA deleted): the
    /// rule refuses everything until they are back or out of the policy.
    pub missing: Vec<String>,
}

/// The certificates of one trust store directory: PEM files (one or more certificates
/// each) or DER, named `*.pem`, `*.crt` or `*.cer`, as Notation keeps them.
fn trust_store(dir: &Path) -> Result<Vec<sigstore_core::certs::Cert>, String> {
    let mut out = Vec::new();
    // Whoever can add a file here adds a CA.
    key_store::check_secure(dir).map_err(|e| e.to_string())?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        if !certificate_file(&f) {
            continue;
        }
        let bytes = super::prepare::read_trusted(&f, 1024 * 1024)?;
        let ders = match sigstore_core::keys::pem_blocks(&bytes, "CERTIFICATE") {
            Ok(d) if !d.is_empty() => d,
            _ => vec![bytes],
        };
        for d in ders {
            out.push(
                sigstore_core::certs::Cert::parse(&d)
                    .map_err(|e| format!("{}: {e}", f.display()))?,
            );
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{}: no certificate (*.pem, *.crt, *.cer)",
            dir.display()
        ));
    }
    Ok(out)
}

/// A file a store's certificates are read from, by name, as Notation names them.
fn certificate_file(f: &Path) -> bool {
    matches!(
        f.extension().and_then(|e| e.to_str()),
        Some("pem" | "crt" | "cer")
    )
}

/// Whether a store directory holds no certificate file at all (its last one deleted).
fn empty_store(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        !entries
            .filter_map(Result::ok)
            .any(|e| certificate_file(&e.path()))
    })
}

/// Each rule's Notation trust stores, read and checked once per policy as notation-go
/// checks them, and its identities checked as Notation reads them.
fn prepare(policy: &Policy, problems: &mut Vec<String>) -> BTreeMap<String, NotationTrust> {
    let mut notation = BTreeMap::new();
    for rule in &policy.rules {
        let mut trust = NotationTrust::default();
        for (kind, name) in &rule.notation.trust_stores {
            let dir = policy
                .daemon
                .keys_dir
                .join("notation/truststore/x509")
                .join(kind)
                .join(name);
            // Each certificate as notation-go accepts it in a store of this type: a
            // store holding only a leaf is refused, as Notation refuses it.
            let store_kind = if kind == "tsa" {
                notation_core::profile::StoreKind::Tsa
            } else {
                notation_core::profile::StoreKind::Signing
            };
            if super::prepare::gone(&dir) || empty_store(&dir) {
                trust.missing.push(format!(
                    "notation_trust_stores {kind}:{name} ({})",
                    dir.display()
                ));
                continue;
            }
            let loaded = trust_store(&dir).and_then(|certs| {
                certs
                    .iter()
                    .try_for_each(|c| {
                        notation_core::profile::check_store_certificate(c, store_kind)
                    })
                    .map(|()| certs)
            });
            match (loaded, kind.as_str()) {
                (Ok(certs), "ca") => trust.ca.extend(certs),
                (Ok(certs), "signingAuthority") => trust.signing_authority.extend(certs),
                (Ok(certs), _) => trust.tsa.extend(certs),
                (Err(e), _) => problems.push(format!(
                    "rule {}: notation_trust_stores {kind}:{name}: {e}",
                    rule.name
                )),
            }
        }
        // Identities as Notation reads them: C, ST and O, each attribute once, one
        // per RDN, none overlapping another.
        if let Err(e) = notation_core::dn::check_identities(&rule.notation.identities) {
            problems.push(format!("rule {}: notation_identities: {e}", rule.name));
        }
        notation.insert(rule.name.clone(), trust);
    }
    notation
}

fn code(r: Reason) -> ReasonCode {
    match r {
        Reason::NoSignature => ReasonCode::NoSignature,
        Reason::BadSignature => ReasonCode::BadSignature,
        Reason::DigestMismatch => ReasonCode::DigestMismatch,
        Reason::UntrustedSigner => ReasonCode::UntrustedSigner,
        Reason::IdentityMismatch => ReasonCode::IdentityMismatch,
        Reason::CertificateExpired => ReasonCode::CertificateExpired,
        Reason::Expired => ReasonCode::Expired,
        Reason::Unsupported => ReasonCode::UnsupportedSignature,
        Reason::UntrustedTimestamp => ReasonCode::UntrustedTimestamp,
    }
}

async fn find(loaded: &Loaded, rule: &Rule, image: &ImageRef, hex: String) -> Result<Vouch, Miss> {
    let none = NotationTrust::default();
    let stores = Notation::prepared(loaded).get(&rule.name).unwrap_or(&none);
    if !stores.missing.is_empty() {
        return Err(super::prepare::unusable(&rule.name, &stores.missing).into());
    }
    let digest = format!("sha256:{hex}");
    let (host, path) = (image.domain.as_str(), image.path.as_str());
    let reg = &loaded.registry;
    let budget = registry::Budget::per_verdict();
    let named = subject(image, &digest);
    // The payload names the manifest's digest, size and media type: read it (by digest,
    // checked) to know the last two. Asked beside the referrers, which do not depend on
    // it: one round trip to the registry instead of two in a row.
    let (manifest, referrers) = tokio::join!(
        reg.manifest(host, path, &digest, &budget),
        reg.referrers(host, path, &digest, &[ARTIFACT_TYPE], &budget)
    );
    let manifest = manifest?.ok_or_else(|| {
        deny(
            ReasonCode::NoSignature,
            format!("{named} is not in its registry, so nothing can be signed for it"),
        )
    })?;
    let target = Target {
        digest: &digest,
        size: manifest.bytes.len() as u64,
        media_type: &manifest.media_type,
    };
    let n = &rule.notation;
    let trust = Trust {
        ca: &stores.ca,
        signing_authority: &stores.signing_authority,
        tsa: &stores.tsa,
        identities: &n.identities,
        level: match n.level {
            policy::NotationLevel::Strict => Level::Strict,
            policy::NotationLevel::Permissive => Level::Permissive,
            policy::NotationLevel::Audit => Level::Audit,
        },
        now: time::OffsetDateTime::now_utc(),
    };
    let mut failures = Failures::default();
    let mut skipped = Skipped::default();
    let referrers = skipped.keep(referrers)?.unwrap_or_default();
    for r in referrers.matching.iter().take(MAX_SIGNATURES) {
        let Some(Some(sig_manifest)) =
            skipped.keep(reg.manifest(host, path, &r.digest, &budget).await)?
        else {
            continue;
        };
        let Some(m) = skipped.manifest(&sig_manifest) else {
            continue;
        };
        let (media_type, blob) = match envelope_layer(&m) {
            Ok(layer) => layer,
            Err(why) => {
                skipped.pass_over(format!("signature manifest {}: {why}", sig_manifest.digest));
                continue;
            }
        };
        let blob = reg
            .blob(host, path, &blob, notation_core::MAX_ENVELOPE, &budget)
            .await;
        let Some(bytes) = skipped.keep(blob)? else {
            continue;
        };
        match off_worker(|| notation_core::verify(&media_type, &bytes, &target, &trust)) {
            Ok(v) => {
                if n.revocation == policy::Revocation::Refuse {
                    return Err(Miss::Refused(deny(
                        ReasonCode::RevocationUnknown,
                        format!("a Notation signature by {:?} is valid, but its certificates' revocation cannot be checked offline and rule {} says notation_revocation = \"refuse\"", v.signer, rule.name),
                    )));
                }
                let logged = if v.logged.is_empty() {
                    String::new()
                } else {
                    let each: Vec<&str> = v.logged.iter().map(|e| e.message.as_str()).collect();
                    format!(" ({} level; logged: {})", n.level, each.join("; "))
                };
                let let_through = v
                    .logged
                    .iter()
                    .map(|e| {
                        (
                            code(e.reason),
                            format!(
                                "{} [let through by notation_verification = \"{}\"]",
                                e.message, n.level
                            ),
                        )
                    })
                    .collect();
                return Ok(Vouch {
                    proof: Proof::Notation,
                    digest: digest.clone(),
                    role: format!("notation {}{logged}", v.envelope),
                    signers: vec![v.signer],
                    expires: v.expires,
                    let_through,
                });
            }
            Err(e) => failures.add(e),
        }
    }
    let e = failures.into_error(&named);
    Err(refusal(
        code(e.reason),
        &e.message,
        &referrers,
        referrers.unread || referrers.matching.len() > MAX_SIGNATURES,
        &skipped,
    ))
}

/// The envelope a signature manifest carries (its media type and digest): its one layer,
/// a JWS or COSE envelope of a sensible size. notation-go refuses a manifest of any other
/// number of layers; so does pullguard, rather than read the first.
fn envelope_layer(m: &proof_kit::oci::Manifest) -> Result<(String, String), String> {
    let [l] = m.layers.as_slice() else {
        return Err(format!(
            "it holds {} layers; a Notation signature manifest holds exactly one envelope",
            m.layers.len()
        ));
    };
    if ![notation_core::envelope::JWS, notation_core::envelope::COSE]
        .contains(&l.media_type.as_str())
    {
        return Err("its layer is neither a JWS nor a COSE envelope".to_owned());
    }
    if l.size > notation_core::MAX_ENVELOPE as u64 {
        return Err(format!(
            "its envelope of {} bytes is over the limit",
            l.size
        ));
    }
    Ok((l.media_type.clone(), l.digest.clone()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_signature_manifest_of_other_than_one_envelope_is_passed_over_as_notation_refuses_it() {
        let layer = |t: &str, size: u64| {
            format!(
                r#"{{"mediaType":"{t}","digest":"sha256:{}","size":{size}}}"#,
                "a".repeat(64)
            )
        };
        let manifest = |layers: &[String]| {
            proof_kit::oci::Manifest::parse(
                format!(r#"{{"layers":[{}]}}"#, layers.join(",")).as_bytes(),
            )
            .unwrap()
        };
        let jws = layer(notation_core::envelope::JWS, 100);
        assert!(super::envelope_layer(&manifest(std::slice::from_ref(&jws))).is_ok());
        let two = super::envelope_layer(&manifest(&[
            jws.clone(),
            layer(notation_core::envelope::COSE, 100),
        ]));
        assert!(two.unwrap_err().contains("holds 2 layers"));
        assert!(super::envelope_layer(&manifest(&[]))
            .unwrap_err()
            .contains("holds 0 layers"));
        assert!(super::envelope_layer(&manifest(&[layer("text/plain", 1)])).is_err());
        assert!(
            super::envelope_layer(&manifest(&[layer(notation_core::envelope::JWS, 2 << 20)]))
                .is_err()
        );
    }
}
