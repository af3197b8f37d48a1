//! Sigstore cosign signatures as a kind of proof: read from the image's registry (or the
//! rule's `signature_repository`) in both layouts cosign writes — the classic
//! `sha256-<hex>.sig` tag and Sigstore bundles attached as OCI referrers — and verified
//! by sigstore-core against the rule's keys for exactly the digest being pulled.

use api::codes::ReasonCode;
use std::collections::BTreeMap;
use std::path::PathBuf;

use policy::{ImageRef, Policy, Proof, Rule};
use sigstore_core::{bundle, classic, Expect, Failures, Reason};

use super::prepare::Loaded;
use super::proof::{Query, Slot as _, Vouch};
use super::registry_proof::{
    off_worker, refusal, subject, Miss, RegistryKind, RegistryProof, Skipped,
};

/// The cosign proof, with its cache of signatures verified per policy generation, rule,
/// repository and digest.
pub(crate) type Cosign = RegistryProof<CosignFormat>;

/// cosign's part of its proof: its signers and its `find`.
pub(crate) struct CosignFormat;

fn code(r: Reason) -> ReasonCode {
    match r {
        Reason::NoSignature => ReasonCode::NoSignature,
        Reason::BadSignature => ReasonCode::BadSignature,
        Reason::DigestMismatch => ReasonCode::DigestMismatch,
        Reason::IdentityMismatch => ReasonCode::IdentityMismatch,
        Reason::TlogMissing => ReasonCode::TlogMissing,
        Reason::CertificateExpired => ReasonCode::CertificateExpired,
    }
}

impl RegistryKind for CosignFormat {
    const PROOF: Proof = Proof::Cosign;
    type Prepared = BTreeMap<String, CosignSigners>;

    fn prepare(policy: &Policy, problems: &mut Vec<String>) -> Self::Prepared {
        prepare(policy, problems)
    }

    async fn find(q: &Query<'_>, hex: String) -> Result<Vouch, Miss> {
        find(q.loaded, q.rule, q.image, hex).await
    }
}

/// Largest key or trusted-root file read (Sigstore's public-good root is ~10 KiB).
const MAX_TRUST_FILE: u64 = 4 * 1024 * 1024;

/// What a rule accepts as cosign signers, prepared.
#[derive(Default)]
pub(crate) struct CosignSigners {
    pub keys: Vec<sigstore_core::PublicKey>,
    pub identities: Vec<sigstore_core::certs::Identity>,
    pub root: Option<std::sync::Arc<sigstore_core::trust_root::TrustedRoot>>,
    /// Files the rule names that are gone (a revoked key deleted): the rule refuses
    /// everything until they are back or out of the policy. Refusing the reload instead
    /// would keep the generation that still trusts them.
    pub missing: Vec<String>,
}

/// Each rule's cosign signers, prepared once per policy: keys read, identities compiled,
/// trusted roots parsed (one parse per file, shared by the rules naming it).
fn prepare(policy: &Policy, problems: &mut Vec<String>) -> BTreeMap<String, CosignSigners> {
    let mut cosign = BTreeMap::new();
    // One parse per trusted-root file, shared by the rules naming it.
    let mut roots: BTreeMap<PathBuf, std::sync::Arc<sigstore_core::trust_root::TrustedRoot>> =
        BTreeMap::new();
    let under_keys = |f: &PathBuf| {
        if f.is_absolute() {
            f.clone()
        } else {
            policy.daemon.keys_dir.join(f)
        }
    };
    for rule in &policy.rules {
        let mut signers = CosignSigners::default();
        for f in &rule.cosign.keys {
            let path = under_keys(f);
            if super::prepare::gone(&path) {
                signers
                    .missing
                    .push(format!("cosign_keys {}", path.display()));
                continue;
            }
            match super::prepare::read_trusted(&path, MAX_TRUST_FILE)
                .and_then(|b| sigstore_core::PublicKey::from_pem(&b))
            {
                Ok(k) => signers.keys.push(k),
                Err(e) => problems.push(format!(
                    "rule {}: cosign_keys {}: {e}",
                    rule.name,
                    path.display()
                )),
            }
        }
        for i in &rule.cosign.identities {
            let issuer = i.issuer.as_deref().unwrap_or_default();
            let id = match (&i.subject, &i.subject_regex) {
                (Some(s), _) => Ok(sigstore_core::certs::Identity::exact(s, issuer)),
                (None, Some(r)) => sigstore_core::certs::Identity::regex(r, issuer),
                (None, None) => Err("no subject".to_owned()),
            };
            let id = match (id, &i.issuer_regex) {
                (Ok(id), Some(r)) => id.with_issuer_regex(r),
                (id, _) => id,
            };
            match id {
                Ok(id) => signers.identities.push(id),
                Err(e) => problems.push(format!("rule {}: cosign_identities: {e}", rule.name)),
            }
        }
        if let Some(f) = &rule.cosign.trusted_root {
            // The public-good root shipped inside pullguard, or a file.
            let shipped = f.as_os_str() == sigstore_core::trust_root::PUBLIC_GOOD;
            let path = if shipped { f.clone() } else { under_keys(f) };
            if !shipped && super::prepare::gone(&path) {
                signers
                    .missing
                    .push(format!("trusted_root {}", path.display()));
                cosign.insert(rule.name.clone(), signers);
                continue;
            }
            let root = match roots.get(&path) {
                Some(r) => Ok(r.clone()),
                // A copy a TUF update verified (state_dir/sigstore-tuf), else the
                // one shipped inside pullguard.
                None if shipped => crate::sigstore_root::current(&policy.daemon.state_dir)
                    .and_then(|(bytes, _)| sigstore_core::trust_root::TrustedRoot::parse(&bytes))
                    .map(std::sync::Arc::new),
                None => super::prepare::read_trusted(&path, MAX_TRUST_FILE)
                    .and_then(|b| sigstore_core::trust_root::TrustedRoot::parse(&b))
                    .map(std::sync::Arc::new),
            };
            match root {
                Ok(r) => {
                    roots.insert(path, r.clone());
                    signers.root = Some(r);
                }
                Err(e) => problems.push(format!(
                    "rule {}: trusted_root {}: {e}",
                    rule.name,
                    path.display()
                )),
            }
        }
        cosign.insert(rule.name.clone(), signers);
    }
    cosign
}

/// Looks for a signature that vouches for `sha256:hex`: the classic tag first, then
/// bundles among the referrers. The most telling failure is reported when none does.
async fn find(loaded: &Loaded, rule: &Rule, image: &ImageRef, hex: String) -> Result<Vouch, Miss> {
    let digest = format!("sha256:{hex}");
    let none = CosignSigners::default();
    let signers = Cosign::prepared(loaded).get(&rule.name).unwrap_or(&none);
    if !signers.missing.is_empty() {
        return Err(super::prepare::unusable(&rule.name, &signers.missing).into());
    }
    let repository = image.repository();
    let same = |signed: &str| same_repository(signed, &repository);
    let expect = Expect {
        digest: &digest,
        same_repository: rule
            .cosign
            .check_reference
            .then_some(&same as &(dyn Fn(&str) -> bool + Sync)),
        keys: &signers.keys,
        tlog: rule.cosign.tlog,
        identities: &signers.identities,
        root: signers.root.as_deref(),
        now: time::OffsetDateTime::now_utc(),
    };
    // Where signatures are stored: beside the image, or where the rule says.
    let (host, path) = match &rule.cosign.signature_repository {
        Some(r) => r.split_once('/').map_or((r.as_str(), ""), |(h, p)| (h, p)),
        None => (image.domain.as_str(), image.path.as_str()),
    };
    let reg = &loaded.registry;
    let budget = registry::Budget::per_verdict();
    let mut skipped = Skipped::default();
    let mut failures = Failures::default();
    let vouch = |v: sigstore_core::Verified| Vouch {
        proof: Proof::Cosign,
        digest: v.digest,
        role: format!("cosign {}", v.layout),
        signers: vec![v.signer],
        expires: None,
        let_through: Vec::new(),
    };

    // The classic tag and the referrers are asked together (one round trip instead of
    // two on a cold verdict); the classic signatures are still judged first, and the
    // referrers only when none of them vouches.
    let classic_tag = classic::signature_tag(&hex);
    // cosign writes the referrer's index entry with the bundle type, or (v2.6's
    // --new-bundle-format) with the empty type and the bundle type in the manifest.
    let types = [bundle::ARTIFACT_TYPE, registry::EMPTY_ARTIFACT_TYPE];
    let (sig, referrers) = tokio::join!(
        reg.manifest(host, path, &classic_tag, &budget),
        reg.referrers(host, path, &digest, &types, &budget),
    );
    let sig = skipped.keep(sig)?;
    if let Some(m) = sig.flatten() {
        match classic::layers(&m.bytes) {
            Ok(layers) => {
                for layer in layers {
                    if layer.size > sigstore_core::MAX_DOCUMENT as u64 {
                        continue;
                    }
                    let blob = reg
                        .blob(
                            host,
                            path,
                            &layer.digest,
                            sigstore_core::MAX_DOCUMENT,
                            &budget,
                        )
                        .await;
                    let Some(payload) = skipped.keep(blob)? else {
                        continue;
                    };
                    match off_worker(|| classic::verify(&layer, &payload, &expect)) {
                        Ok(v) => return Ok(vouch(v)),
                        Err(e) => failures.add(e),
                    }
                }
            }
            Err(e) => failures.add(e),
        }
    }
    let referrers = skipped.keep(referrers)?.unwrap_or_default();
    for r in &referrers.matching {
        let Some(Some(m)) = skipped.keep(reg.manifest(host, path, &r.digest, &budget).await)?
        else {
            continue;
        };
        let Some(m) = skipped.manifest(&m) else {
            continue;
        };
        for layer in bundle_layers(&m) {
            let blob = reg
                .blob(host, path, &layer, sigstore_core::MAX_DOCUMENT, &budget)
                .await;
            let Some(b) = skipped.keep(blob)? else {
                continue;
            };
            match off_worker(|| bundle::verify(&b, &expect)) {
                Ok(v) => return Ok(vouch(v)),
                Err(e) => failures.add(e),
            }
        }
    }
    let e = failures.into_error(&format!("{} in {host}/{path}", subject(image, &digest)));
    Err(refusal(
        code(e.reason),
        &e.message,
        &referrers,
        referrers.unread,
        &skipped,
    ))
}

/// cosign's rule for a simple-signing payload's `docker-reference`: it names the same
/// repository as the image pulled; a tag or digest it also carries does not matter.
fn same_repository(signed: &str, repository: &str) -> bool {
    ImageRef::parse(signed).is_ok_and(|r| r.repository() == repository)
}

/// The bundle blobs a referrer manifest lists (small ones only; the rest is skipped).
fn bundle_layers(m: &proof_kit::oci::Manifest) -> Vec<String> {
    m.layers
        .iter()
        .filter(|l| {
            l.media_type == bundle::ARTIFACT_TYPE && l.size <= sigstore_core::MAX_DOCUMENT as u64
        })
        .map(|l| l.digest.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signed_reference_is_compared_by_repository_as_cosign_does() {
        let repo = "registry.example.com/team/app";
        for signed in [
            "registry.example.com/team/app",
            "registry.example.com/team/app:v1",
            "registry.example.com/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(super::same_repository(signed, repo), "{signed}");
        }
        for signed in [
            "registry.example.com/team/other:v1",
            "registry.example.com.attacker.net/team/app:v1",
            "registry.example.com/team/app/x",
        ] {
            assert!(!super::same_repository(signed, repo), "{signed}");
        }
        assert!(super::same_repository(
            "alpine:3",
            "docker.io/library/alpine"
        ));
    }
}
