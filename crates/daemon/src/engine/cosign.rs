//! Sigstore cosign signatures as a kind of proof: read from the image's registry (or the
//! rule's `signature_repository`) in both layouts cosign writes — the classic
//! `sha256-<hex>.sig` tag and Sigstore bundles attached as OCI referrers — and verified
//! by sigstore-core against the rule's keys for exactly the digest being pulled.

use std::sync::atomic::Ordering;
use std::time::Instant;

use api::codes::{EventKind, ReasonCode};
use policy::{ImageRef, OnUnreachable, Proof, Rule};
use sigstore_core::{bundle, classic, Expect, Failures, Reason};

use super::cache::{Flights, TtlCache};
use super::prepare::Loaded;
use super::proof::{ProofKind, Query, Vouch};
use super::{deny, Denial, Engine};

/// Verdicts kept in memory at most.
const CACHE_MAX: usize = 10_000;

/// The cosign proof, with its cache of signatures verified per policy generation, rule,
/// repository and digest.
pub(crate) struct Cosign {
    verified: TtlCache<Vouch>,
    flights: Flights,
}

impl Default for Cosign {
    fn default() -> Cosign {
        Cosign {
            verified: TtlCache::new(CACHE_MAX),
            flights: Flights::default(),
        }
    }
}

/// Why no signature vouched: an answer (a refusal), or no answer from the registry.
enum Miss {
    Refused(Denial),
    Unreachable(registry::Error),
}

impl From<Denial> for Miss {
    fn from(d: Denial) -> Miss {
        Miss::Refused(d)
    }
}

impl From<registry::Error> for Miss {
    fn from(e: registry::Error) -> Miss {
        Miss::Unreachable(e)
    }
}

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

impl ProofKind for Cosign {
    async fn check(&self, engine: &Engine, q: &Query<'_>) -> Result<Vouch, Denial> {
        let (loaded, rule, image) = (q.loaded, q.rule, q.image);
        let hex = match q.sha256 {
            Some(h) => h.to_owned(),
            None => resolve_tag(loaded, image).await?,
        };
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{hex}",
            loaded.generation,
            rule.name,
            image.repository()
        );
        let ttl = loaded.policy.daemon.cache_ttl;
        if let Some(v) = self.verified.fresh(&key, ttl) {
            engine.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        // One lookup per image and rule at a time; the others wait and take its result.
        let _flight = self.flights.enter(&key).await;
        if let Some(v) = self.verified.fresh(&key, ttl) {
            return Ok(v);
        }
        engine.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let found = find(loaded, rule, image, &hex).await;
        tracing::debug!(
            image = %image,
            us = started.elapsed().as_micros(),
            "cosign signatures looked up"
        );
        match found {
            Ok(v) => {
                self.verified.insert(key, v.clone(), ttl);
                Ok(v)
            }
            Err(Miss::Refused(d)) => Err(d),
            Err(Miss::Unreachable(e)) => {
                let mut ev = engine.events.new_event(
                    EventKind::TrustFetchFailed,
                    loaded.generation,
                    e.to_string(),
                );
                ev.gun = Some(image.repository());
                ev.rule = Some(rule.name.clone());
                ev.proof = Some(Proof::Cosign.as_str().to_owned());
                ev.reason = Some(ReasonCode::RegistryUnreachable.as_str().to_owned());
                let _ = engine.emit(ev, false).await;
                engine.note_error(&e.to_string());
                if rule.on_unreachable == OnUnreachable::Cached {
                    // A signature verified earlier under this policy, for this digest.
                    if let Some(v) = self.verified.any_age(&key) {
                        return Ok(v);
                    }
                }
                Err(deny(
                    ReasonCode::RegistryUnreachable,
                    format!(
                        "{e}; rule {} says on_unreachable = {}",
                        rule.name,
                        match rule.on_unreachable {
                            OnUnreachable::Deny => "deny",
                            OnUnreachable::Cached =>
                                "cached, and no signature verified earlier is at hand",
                        }
                    ),
                ))
            }
        }
    }

    fn policy_changed(&self) {
        self.verified.clear();
    }

    fn cached(&self) -> usize {
        self.verified.len()
    }
}

/// The digest a tag names now, read from the registry (a verdict asked for by tag
/// alone, as `pullguard verify IMAGE:TAG` does; pulls always come with their digest).
async fn resolve_tag(loaded: &Loaded, image: &ImageRef) -> Result<String, Denial> {
    let tag = image.tag.as_deref().unwrap_or("latest");
    let unreachable = |e: registry::Error| deny(ReasonCode::RegistryUnreachable, e.to_string());
    let m = loaded
        .registry
        .manifest(&image.domain, &image.path, tag)
        .await
        .map_err(unreachable)?
        .ok_or_else(|| {
            deny(
                ReasonCode::NoSignature,
                format!("{image} does not exist in its registry, so nothing can be signed for it"),
            )
        })?;
    Ok(m.digest.trim_start_matches("sha256:").to_owned())
}

/// Looks for a signature that vouches for `sha256:hex`: the classic tag first, then
/// bundles among the referrers. The most telling failure is reported when none does.
async fn find(loaded: &Loaded, rule: &Rule, image: &ImageRef, hex: &str) -> Result<Vouch, Miss> {
    let digest = format!("sha256:{hex}");
    let none = super::prepare::CosignSigners::default();
    let signers = loaded.cosign.get(&rule.name).unwrap_or(&none);
    let repository = image.repository();
    let same = |signed: &str| {
        ImageRef::parse(&format!("{signed}:x")).is_ok_and(|r| r.repository() == repository)
    };
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
    let mut failures = Failures::default();
    let vouch = |v: sigstore_core::Verified| Vouch {
        proof: Proof::Cosign,
        digest: v.digest,
        role: format!("cosign {}", v.layout),
        signers: vec![v.signer],
        expires: None,
    };

    if let Some(m) = reg
        .manifest(host, path, &classic::signature_tag(hex))
        .await?
    {
        match classic::layers(&m.bytes) {
            Ok(layers) => {
                for layer in layers {
                    if layer.size > sigstore_core::MAX_DOCUMENT as u64 {
                        continue;
                    }
                    let payload = reg
                        .blob(host, path, &layer.digest, sigstore_core::MAX_DOCUMENT)
                        .await?;
                    match classic::verify(&layer, &payload, &expect) {
                        Ok(v) => return Ok(vouch(v)),
                        Err(e) => failures.add(e),
                    }
                }
            }
            Err(e) => failures.add(e),
        }
    }
    for r in reg
        .referrers(host, path, &digest, bundle::ARTIFACT_TYPE)
        .await?
    {
        let Some(m) = reg.manifest(host, path, &r.digest).await? else {
            continue;
        };
        for layer in bundle_layers(&m.bytes) {
            let b = reg
                .blob(host, path, &layer, sigstore_core::MAX_DOCUMENT)
                .await?;
            match bundle::verify(&b, &expect) {
                Ok(v) => return Ok(vouch(v)),
                Err(e) => failures.add(e),
            }
        }
    }
    let e = failures.into_error(&format!("{image}@{digest} in {host}/{path}"));
    Err(Miss::Refused(deny(code(e.reason), e.message)))
}

/// The bundle blobs a referrer manifest lists (small ones only; the rest is skipped).
fn bundle_layers(manifest: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct M {
        #[serde(default)]
        layers: Vec<L>,
    }
    #[derive(serde::Deserialize)]
    struct L {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        digest: String,
        size: u64,
    }
    serde_json::from_slice::<M>(manifest)
        .map(|m| {
            m.layers
                .into_iter()
                .filter(|l| {
                    l.media_type == bundle::ARTIFACT_TYPE
                        && l.size <= sigstore_core::MAX_DOCUMENT as u64
                })
                .take(classic::MAX_LAYERS)
                .map(|l| l.digest)
                .collect()
        })
        .unwrap_or_default()
}
