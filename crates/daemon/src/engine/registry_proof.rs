//! What every kind of proof stored in the image's registry shares (cosign, Notation):
//! the digest a tag names, a cache of verified signatures per policy generation, rule,
//! repository and digest, one lookup per image at a time, and `on_unreachable` when the
//! registry does not answer. Each kind brings only its `find`.

use std::marker::PhantomData;
use std::time::Instant;

use api::codes::ReasonCode;
use policy::{ImageRef, Policy, Proof};

use super::lookup::{nothing_else, About, Counted, Lookups, Outage};
use super::prepare::Loaded;
use super::proof::{ProofKind, Query, Vouch};
use super::{deny, Denial, Engine};

/// Verdicts kept in memory at most, per kind.
const CACHE_MAX: usize = 10_000;

pub(crate) use super::lookup::Miss;

impl From<registry::Error> for Miss {
    /// Only an outage is `Unreachable` (and so subject to `on_unreachable`); a refusal
    /// of the credentials, hostile content or the node's own broken configuration is an
    /// answer, refused with its own reason and never served from the cache.
    fn from(e: registry::Error) -> Miss {
        match registry_reason(&e) {
            code @ ReasonCode::RegistryUnreachable => Miss::Unreachable(Outage {
                code,
                message: e.to_string(),
            }),
            reason => Miss::Refused(deny(reason, e.to_string())),
        }
    }
}

/// The registries this policy's cold verdicts ask for signatures that its rules name
/// outright (a pattern's registry written without a wildcard; a cosign
/// `signature_repository`), at most 16: those whose connections are opened ahead
/// ([`registry::Client::warm`]).
pub(crate) fn signature_registries(policy: &Policy) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    let host_of = |r: &str| r.split_once('/').map(|(h, _)| h.to_owned());
    for rule in &policy.rules {
        if rule.require != policy::Require::Signed {
            continue;
        }
        let cosign = rule.proofs.contains(&Proof::Cosign);
        let beside_image = rule.proofs.contains(&Proof::Notation)
            || (cosign && rule.cosign.signature_repository.is_none());
        let stored = rule
            .cosign
            .signature_repository
            .as_deref()
            .filter(|_| cosign)
            .and_then(host_of);
        let named =
            host_of(&rule.pattern).filter(|h| beside_image && !h.contains(['*', '?', '[', '{']));
        for h in [stored, named].into_iter().flatten() {
            if hosts.len() < 16 && !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// The reason a registry error refuses with.
pub(crate) fn registry_reason(e: &registry::Error) -> ReasonCode {
    match e.class() {
        registry::ErrorClass::Unavailable => ReasonCode::RegistryUnreachable,
        registry::ErrorClass::Credentials => ReasonCode::RegistryAuthFailed,
        registry::ErrorClass::Content => ReasonCode::RegistryContentInvalid,
        registry::ErrorClass::Config => ReasonCode::RegistryConfigInvalid,
        registry::ErrorClass::Budget => ReasonCode::LookupBudgetExceeded,
    }
}

/// Runs the CPU-bound verification of registry bytes (envelopes, bundles, chains) off
/// the async worker: on pullguardd's multi-threaded runtime the worker hands its other
/// tasks on for the duration (`block_in_place`), so a slow envelope never stalls other
/// verdicts, the NRI gate's deadline or the event stream; inline on a current-thread
/// runtime (unit tests), where that is not possible. The work itself is bounded by the
/// parsers' caps (sizes, counts, nesting) and the per-verdict budget.
pub(crate) fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    };
    // Beside "signatures looked up": what of a cold verdict is the check, not the registry.
    tracing::debug!(
        us = started.elapsed().as_micros(),
        "signature checked off the async workers"
    );
    out
}

/// `repo[:tag]@digest`: the image a signature must vouch for, named once (a pull by
/// digest already carries it).
pub(crate) fn subject(image: &ImageRef, digest: &str) -> String {
    let named = ImageRef {
        digest: None,
        ..image.clone()
    };
    format!("{named}@{digest}")
}

/// Signature candidates passed over because the registry served them broken (a
/// manifest that does not parse or hash right, a blob missing or oversized): one bad
/// entry beside a good signature must not refuse the image, and is named when nothing
/// vouches.
#[derive(Default)]
pub(crate) struct Skipped {
    count: usize,
    first: Option<String>,
}

impl Skipped {
    /// A fetch's result: the value, or `None` for content that is passed over (and
    /// recorded); an outage, refused credentials or an exhausted budget end the lookup.
    pub(crate) fn keep<T>(
        &mut self,
        r: Result<T, registry::Error>,
    ) -> Result<Option<T>, registry::Error> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.class() == registry::ErrorClass::Content => {
                self.pass_over(e.to_string());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Records a candidate passed over for its content (`why`).
    pub(crate) fn pass_over(&mut self, why: String) {
        self.count += 1;
        self.first.get_or_insert(why);
    }

    /// A signature manifest, read strictly; one that is not a manifest is passed over
    /// (and recorded).
    pub(crate) fn manifest(&mut self, m: &registry::Fetched) -> Option<proof_kit::oci::Manifest> {
        proof_kit::oci::Manifest::parse(&m.bytes)
            .map_err(|e| self.pass_over(format!("signature manifest {}: {e}", m.digest)))
            .ok()
    }

    /// What was passed over, for the refusal's message ("" when nothing was).
    pub(crate) fn note(&self, referrers: &registry::Referrers) -> String {
        let mut parts = Vec::new();
        if self.count > 0 {
            parts.push(format!(
                "{} signature candidate(s) the registry served broken, the first: {}",
                self.count,
                self.first.as_deref().unwrap_or_default()
            ));
        }
        if referrers.broken > 0 {
            parts.push(format!("{} unreadable referrer entries", referrers.broken));
        }
        if referrers.other > 0 {
            parts.push(format!(
                "{} referrers of other artifact types",
                referrers.other
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" (passed over: {})", parts.join("; "))
        }
    }
}

/// The refusal when no signature vouched: the most telling failure with what was passed
/// over, or `lookup_budget_exceeded` when the registry listed more referrers than are
/// read (a signature may be among them: piling referrers in front of one must not make
/// a signed image pass for unsigned).
pub(crate) fn refusal(
    reason: ReasonCode,
    message: &str,
    referrers: &registry::Referrers,
    unread: bool,
    skipped: &Skipped,
) -> Miss {
    let note = skipped.note(referrers);
    if unread {
        return Miss::Refused(deny(
            ReasonCode::LookupBudgetExceeded,
            format!(
                "{message}{note}; the registry lists more referrers than pullguard reads ({} pages, {} signatures): a signature may be among those not read. Remove stale referrers (old signatures, SBOMs) from the repository, or sign again",
                registry::MAX_PAGES,
                registry::MAX_REFERRERS
            ),
        ));
    }
    Miss::Refused(deny(reason, format!("{message}{note}")))
}

/// A kind of proof stored in the image's registry: its policy value, what it prepares
/// once per policy, and how it finds and verifies the signatures of one digest.
pub(crate) trait RegistryKind {
    /// Its policy value.
    const PROOF: Proof;
    /// What it prepares once per policy ([`ProofKind::Prepared`]).
    type Prepared: Send + Sync;
    /// [`ProofKind::prepare`] (nothing is kept across a reload).
    fn prepare(policy: &Policy, problems: &mut Vec<String>) -> Self::Prepared;
    /// The signatures vouching for the digest `hex` (lowercase hex), or why none does.
    async fn find(q: &Query<'_>, hex: String) -> Result<Vouch, Miss>;
}

/// A registry-backed kind of proof: its format `K`, with the verified signatures'
/// lookups.
pub(crate) struct RegistryProof<K> {
    verified: Lookups<Vouch>,
    format: PhantomData<K>,
}

impl<K> Default for RegistryProof<K> {
    fn default() -> RegistryProof<K> {
        RegistryProof {
            verified: Lookups::new(
                CACHE_MAX,
                Counted {
                    hits: true,
                    fetches: true,
                },
            ),
            format: PhantomData,
        }
    }
}

impl<K: RegistryKind> ProofKind for RegistryProof<K> {
    type Prepared = K::Prepared;

    fn prepare(
        policy: &Policy,
        _previous: Option<&K::Prepared>,
        problems: &mut Vec<String>,
    ) -> K::Prepared {
        // A rule that asks registries for this kind: the TLS client is made now, not by
        // the first verdict, from the node's root store as it is now.
        if policy
            .rules
            .iter()
            .any(|r| r.require == policy::Require::Signed && r.proofs.contains(&K::PROOF))
        {
            registry::refresh_system_roots(policy.daemon.registry_timeout);
        }
        K::prepare(policy, problems)
    }

    /// A cached verdict, or `K::find(hex digest)` once per image at a time.
    async fn check(&self, engine: &Engine, q: &Query<'_>) -> Result<Vouch, Denial> {
        let (loaded, rule, image) = (q.loaded, q.rule, q.image);
        let proof = K::PROOF;
        let hex = match q.sha256 {
            Some(h) => h.to_owned(),
            None => resolve_tag(loaded, image, proof).await?,
        };
        let repository = image.repository();
        let key = format!(
            "{}\u{0}{}\u{0}{repository}\u{0}{hex}",
            loaded.generation, rule.name
        );
        let about = About {
            proof,
            rule,
            generation: loaded.generation,
            repository: &repository,
            nothing_kept: "no signature verified earlier is at hand",
        };
        let ttl = loaded.policy.daemon.cache_ttl;
        let started = Instant::now();
        let found = self
            .verified
            .get(engine, &about, key, ttl, || K::find(q, hex), nothing_else)
            .await;
        tracing::debug!(image = %image, proof = proof.as_str(), us = started.elapsed().as_micros(), "signatures looked up");
        // A verdict kept from earlier (fresh, or any age under on_unreachable = "cached")
        // holds only until what it rests on stops counting.
        match found {
            Ok(Vouch {
                expires: Some(t), ..
            }) if t <= time::OffsetDateTime::now_utc() => Err(deny(
                ReasonCode::Expired,
                format!(
                    "the {} signature verified earlier for {image} stopped counting at {}; none newer was read",
                    proof.as_str(),
                    trust_core::rfc3339(t)
                ),
            )),
            other => other,
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
async fn resolve_tag(loaded: &Loaded, image: &ImageRef, proof: Proof) -> Result<String, Denial> {
    let tag = image.tag.as_deref().unwrap_or("latest");
    let m = loaded
        .registry
        .manifest(&image.domain, &image.path, tag, &registry::Budget::per_verdict())
        .await
        .map_err(|e| deny(registry_reason(&e), e.to_string()))?
        .ok_or_else(|| {
            deny(
                ReasonCode::NoSignature,
                format!("{image} does not exist in its registry, so no {} signature can be found for it", proof.as_str()),
            )
        })?;
    Ok(m.digest.trim_start_matches("sha256:").to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_refusal_names_the_digest_once() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for (asked, shown) in [
            (
                format!("registry.example.com/app:v1@{d}"),
                format!("registry.example.com/app:v1@{d}"),
            ),
            (
                format!("registry.example.com/app@{d}"),
                format!("registry.example.com/app@{d}"),
            ),
            (
                "registry.example.com/app:v1".to_owned(),
                format!("registry.example.com/app:v1@{d}"),
            ),
        ] {
            let image = policy::ImageRef::parse(&asked).unwrap();
            assert_eq!(super::subject(&image, &d), shown, "{asked}");
        }
    }

    /// A signature manifest a lax reader would take (the last of two annotations
    /// wins) is passed over, and the refusal names it; a good one is read.
    #[test]
    fn a_signature_manifest_that_is_not_strictly_one_is_passed_over_and_named() {
        let fetched = |text: &str| registry::Fetched {
            bytes: text.as_bytes().to_vec(),
            media_type: String::new(),
            digest: "sha256:feed".to_owned(),
        };
        let d = format!("sha256:{}", "0".repeat(64));
        let mut skipped = super::Skipped::default();
        let twice = format!(
            r#"{{"layers":[{{"mediaType":"t","digest":"{d}","size":1,"annotations":{{"a":"1","a":"2"}}}}]}}"#
        );
        assert!(skipped.manifest(&fetched(&twice)).is_none());
        let good = format!(r#"{{"layers":[{{"mediaType":"t","digest":"{d}","size":1}}]}}"#);
        assert_eq!(skipped.manifest(&fetched(&good)).unwrap().layers.len(), 1);
        let note = skipped.note(&registry::Referrers::default());
        assert!(note.contains("1 signature candidate(s)"), "{note}");
        assert!(
            note.contains("sha256:feed") && note.contains("given twice"),
            "{note}"
        );
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod warm_tests {
    use std::path::Path;

    /// Only registries a rule names outright are warmed: a wildcard in a pattern's host
    /// names none (it would be an attacker's pick), a rule without registry proofs or
    /// not requiring signatures asks none, and cosign's signature_repository replaces
    /// the image's registry for cosign alone.
    #[test]
    fn registries_warmed_are_those_rules_name_outright() {
        let text = "[trust_server.n]\nurl = \"https://notary.example.com\"\n\n[defaults]\ncosign_tlog = false\n\n\
            [[rule]]\nname = \"a\"\nmatch = \"reg.example.com/app/**\"\nproofs = [\"cosign\"]\ncosign_keys = [\"k.pub\"]\n\n\
            [[rule]]\nname = \"b\"\nmatch = \"mirror.example.com/b/**\"\nproofs = [\"cosign\"]\ncosign_keys = [\"k.pub\"]\nsignature_repository = \"sigs.example.com/b/sigs\"\n\n\
            [[rule]]\nname = \"c\"\nmatch = \"notation.example.com/c/**\"\nproofs = [\"notation\", \"cosign\"]\ncosign_keys = [\"k.pub\"]\nsignature_repository = \"sigs.example.com/c\"\nnotation_trust_stores = [\"ca:c\"]\nnotation_identities = [\"*\"]\n\n\
            [[rule]]\nname = \"d\"\nmatch = \"*.example.org/d/**\"\nany_registry = true\nproofs = [\"cosign\"]\ncosign_keys = [\"k.pub\"]\n\n\
            [[rule]]\nname = \"e\"\nmatch = \"notary.example.com/e/**\"\ntrust_server = \"n\"\n\n\
            [[rule]]\nname = \"f\"\nmatch = \"open.example.com/f/**\"\nrequire = \"any\"\nproofs = [\"cosign\"]\n";
        let policy = policy::Policy::parse(Path::new("p.toml"), text).expect("valid");
        assert_eq!(
            super::signature_registries(&policy),
            [
                "reg.example.com",
                "sigs.example.com",
                "notation.example.com"
            ]
        );
    }
}
