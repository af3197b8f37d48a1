//! The decision: reference → digest checks → rule → what the rule requires → the kinds
//! of proof it accepts. Format-neutral: every kind of proof sits behind
//! [`super::proof::ProofKind`].

use api::codes::ReasonCode;
use policy::{ImageRef, Proof, ProofsRequired, ReferenceError, Require, Rule};

use super::prepare::Loaded;
use super::proof::{Query, Vouch, Vouchers};
use super::{deny, Denial};

/// What the decision established, whatever its outcome: the verdict, its event and the
/// answer are made from it (and the rule's mode from `rule` itself, never looked up
/// again by name).
pub(crate) struct Decision<'p> {
    /// The normalised reference, when it parsed.
    pub reference: Option<ImageRef>,
    /// The rule that applies, when one does.
    pub rule: Option<&'p Rule>,
    /// `Ok(None)`: the rule requires nothing; `Ok(Some)`: the proofs the rule requires
    /// vouched (under `all`, the first one's vouch with every signer); `Err`: why the
    /// image may not be pulled.
    pub outcome: Result<Option<Vouch>, Denial>,
    /// Each kind of proof asked, in the rule's order, and what it said.
    pub tried: Vec<Tried>,
}

/// One kind of proof's answer.
pub(crate) struct Tried {
    pub proof: Proof,
    /// It vouched (and for what), or its reason and message.
    pub outcome: Result<Vouch, (ReasonCode, String)>,
}

/// Reference → digest checks → rule → what it requires → the kinds of proof it accepts,
/// in the rule's order; the first that vouches counts, else the last refusal is said.
pub(crate) async fn decide<'p>(
    loaded: &'p Loaded,
    reference: Result<ImageRef, ReferenceError>,
    digest: Option<&str>,
    vouchers: &impl Vouchers,
) -> Decision<'p> {
    let mut d = Decision {
        reference: None,
        rule: None,
        outcome: Ok(None),
        tried: Vec::new(),
    };
    let reference = match reference {
        Ok(r) => d.reference.insert(r),
        Err(e) => {
            d.outcome = Err(deny(ReasonCode::InvalidReference, e.to_string()));
            return d;
        }
    };
    let want = match wanted_digest(digest, reference) {
        Ok(w) => w,
        Err(e) => {
            d.outcome = Err(e);
            return d;
        }
    };
    let Some(rule) = loaded.policy.rule_for(reference) else {
        d.outcome = Err(deny(
            ReasonCode::NoMatchingRule,
            format!("no policy rule matches {reference}; add a rule for it, or a catch-all rule with match = \"**\" (policy {})", loaded.file.display()),
        ));
        return d;
    };
    d.rule = Some(rule);
    d.outcome = match rule.require {
        Require::Any => Ok(None),
        Require::Reject => Err(deny(
            ReasonCode::RejectedByPolicy,
            format!("rule {} rejects every image it matches", rule.name),
        )),
        Require::Signed => {
            let (outcome, tried) = proofs(loaded, rule, reference, want, vouchers).await;
            d.tried = tried;
            outcome.map(Some)
        }
    };
    d
}

/// The kinds of proof the rule accepts, in its order. `any`: the first that vouches
/// counts, the others are not asked. `all`: each must vouch, for one digest (a tag is
/// resolved by the first; the rest are asked about that digest), and the first refusal
/// settles it.
async fn proofs(
    loaded: &Loaded,
    rule: &Rule,
    image: &ImageRef,
    want: Option<String>,
    vouchers: &impl Vouchers,
) -> (Result<Vouch, Denial>, Vec<Tried>) {
    let all = rule.proofs_required == ProofsRequired::All && rule.proofs.len() > 1;
    let mut tried: Vec<Tried> = Vec::new();
    let mut vouched: Option<Vouch> = None;
    for kind in &rule.proofs {
        let digest = vouched
            .as_ref()
            .map(|v| v.digest.trim_start_matches("sha256:").to_owned())
            .or_else(|| want.clone());
        let query = Query {
            loaded,
            rule,
            image,
            sha256: digest.as_deref(),
        };
        let answer = vouchers.vouch(*kind, &query).await;
        let answer = match (answer, &vouched) {
            (Ok(v), Some(first)) if v.digest != first.digest => Err(deny(
                ReasonCode::DigestMismatch,
                format!(
                    "{} vouches for {} but {} for {}",
                    kind.as_str(),
                    v.digest,
                    first.proof.as_str(),
                    first.digest
                ),
            )),
            (a, _) => a,
        };
        match answer {
            Ok(v) => {
                tried.push(Tried {
                    proof: *kind,
                    outcome: Ok(v.clone()),
                });
                match &mut vouched {
                    Some(first) => {
                        first.signers.extend(v.signers);
                        first.role = format!("{}; {}", first.role, v.role);
                        first.expires = match (first.expires, v.expires) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    None => vouched = Some(v),
                }
                if !all {
                    break;
                }
            }
            Err(e) => {
                tried.push(Tried {
                    proof: *kind,
                    outcome: Err((e.reason, e.message.clone())),
                });
                if all {
                    let message = if rule.proofs.len() > 1 {
                        format!("rule {} requires every one of its proofs (proofs_required = \"all\"), and {} refused: {}", rule.name, kind.as_str(), e.message)
                    } else {
                        e.message
                    };
                    return (Err(deny(e.reason, message)), tried);
                }
            }
        }
    }
    match vouched {
        Some(v) => (Ok(v), tried),
        None => {
            let last = tried
                .last()
                .and_then(|t| t.outcome.as_ref().err())
                .map(|(r, _)| *r);
            let Some(reason) = last else {
                return (
                    Err(deny(
                        ReasonCode::NoTrustData,
                        format!("rule {} accepts no kind of proof", rule.name),
                    )),
                    tried,
                );
            };
            let message = if tried.len() > 1 {
                let each: Vec<String> = tried
                    .iter()
                    .filter_map(|t| {
                        t.outcome
                            .as_ref()
                            .err()
                            .map(|(r, m)| format!("{}: {m} [{r}]", t.proof.as_str()))
                    })
                    .collect();
                format!("no proof rule {} accepts vouches for the image (proofs_required = \"any\"): {}", rule.name, each.join("; "))
            } else {
                tried
                    .last()
                    .and_then(|t| t.outcome.as_ref().err())
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default()
            };
            (Err(deny(reason, message)), tried)
        }
    }
}

/// The digest to check, lowercase hex: the one containerd resolved, which must equal
/// the one the reference names when both are there.
fn wanted_digest(digest: Option<&str>, reference: &ImageRef) -> Result<Option<String>, Denial> {
    let resolved = digest
        .map(|d| trust_core::Sha256::from_prefixed(d).ok_or_else(|| unsupported_digest(d)))
        .transpose()?;
    Ok(match (resolved, &reference.digest) {
        (Some(d), Some(r)) if d.hex() != r => {
            return Err(deny(
                ReasonCode::DigestMismatch,
                format!("the reference names sha256:{r} but containerd resolved {d}"),
            ))
        }
        (Some(d), _) => Some(d.hex().to_owned()),
        (None, r) => r.clone(),
    })
}

/// A digest pullguard cannot check: Notary signs SHA-256 only.
fn unsupported_digest(d: &str) -> Denial {
    let shown: String = d.chars().take(80).collect();
    deny(
        ReasonCode::InvalidReference,
        format!("digest {shown:?} is not sha256:<64 hex digits>; Notary trust data signs SHA-256 digests only, so nothing else can be checked"),
    )
}

/// The decision alone, without servers: a stand-in for the kinds of proof that verifies
/// test-support repositories in memory with trust-core. The same paths against a real
/// notary-server are in `tests/verdicts.rs` and `tests/bypasses.rs`.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use policy::{Mode, Policy, Proof};
    use test_support::{manifest, sha256_hex, Repo};
    use time::macros::datetime;
    use trust_core::{RepoFiles, RootAnchor, TagPolicy, VerifyOptions};

    use super::*;
    use crate::engine::reason_of;

    const NOW: time::OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

    struct InMemory(BTreeMap<String, RepoFiles>);

    impl Vouchers for InMemory {
        async fn vouch(&self, kind: Proof, q: &Query<'_>) -> Result<Vouch, Denial> {
            let gun = q.image.repository();
            let files = self
                .0
                .get(&gun)
                .ok_or_else(|| deny(ReasonCode::NoTrustData, format!("no trust data for {gun}")))?;
            let err = |e: trust_core::Error| deny(reason_of(e.reason()), e.to_string());
            let repo =
                trust_core::verify(files, &VerifyOptions::new(&gun, NOW, RootAnchor::FirstUse))
                    .map_err(err)?;
            let tag = q.image.tag.as_deref().unwrap_or("latest");
            let m = repo.resolve_tag(tag, TagPolicy::Docker).map_err(err)?;
            Ok(Vouch {
                proof: kind,
                digest: format!("sha256:{}", m.sha256),
                role: m.role,
                signers: m.signers,
                expires: None,
                let_through: Vec::new(),
            })
        }
    }

    fn loaded(rules: &str) -> Loaded {
        let text = format!(
            "[trust_server.notary]\nurl = \"https://127.0.0.1:9\"\n\n[defaults]\ntrust_server = \"notary\"\ntofu = true\n\n{rules}"
        );
        let file = Path::new("/etc/pullguard/pullguard.toml");
        let policy = Policy::parse(file, &text).expect("policy");
        Loaded::prepare(policy, 1, file).expect("prepared")
    }

    fn signed_repos() -> InMemory {
        let gun = "registry.test/team/app";
        InMemory([(gun.to_owned(), Repo::new(gun, NOW).files())].into())
    }

    async fn run<'p>(loaded: &'p Loaded, image: &str, digest: Option<&str>) -> Decision<'p> {
        decide(loaded, ImageRef::parse(image), digest, &signed_repos()).await
    }

    fn refused(d: &Decision<'_>) -> ReasonCode {
        match &d.outcome {
            Err(e) => e.reason,
            Ok(v) => panic!("expected a refusal, got {v:?}"),
        }
    }

    const RULES: &str = "[[rule]]\nname = \"team\"\nmatch = \"registry.test/team/**\"\nrequire = \"signed\"\n\n[[rule]]\nname = \"app-exact\"\nmatch = \"registry.test/other/app:v1\"\nrequire = \"any\"\n\n[[rule]]\nname = \"other\"\nmatch = \"registry.test/other/**\"\nrequire = \"reject\"\nmode = \"audit\"\n";

    #[tokio::test]
    async fn refusals_each_with_their_reason() {
        let l = loaded(RULES);
        let d = run(&l, "registry.test/Team/app:v1", None).await;
        assert_eq!(refused(&d), ReasonCode::InvalidReference);
        assert!(d.rule.is_none() && d.reference.is_none());

        let a = format!("registry.test/team/app@sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let d = run(&l, &a, Some(&b)).await;
        assert_eq!(refused(&d), ReasonCode::DigestMismatch);

        let sha512 = format!("sha512:{}", "c".repeat(128));
        let d = run(&l, "registry.test/team/app:v1", Some(&sha512)).await;
        assert_eq!(refused(&d), ReasonCode::InvalidReference);

        let d = run(&l, "elsewhere.test/app:v1", None).await;
        assert_eq!(refused(&d), ReasonCode::NoMatchingRule);
        assert!(d.rule.is_none());

        let d = run(&l, "registry.test/other/app:v2", None).await;
        assert_eq!(refused(&d), ReasonCode::RejectedByPolicy);
        assert_eq!(
            d.rule.map(|r| (r.name.as_str(), r.mode)),
            Some(("other", Mode::Audit))
        );

        // Signed, but the tag is not in the trust data; and a repository with none.
        let d = run(&l, "registry.test/team/app:v9", None).await;
        assert_eq!(refused(&d).as_str(), "unknown_tag");
        let d = run(&l, "registry.test/team/unsigned:v1", None).await;
        assert_eq!(refused(&d), ReasonCode::NoTrustData);
        assert_eq!(d.rule.map(|r| r.name.as_str()), Some("team"));
    }

    #[tokio::test]
    async fn a_signed_tag_is_vouched_for_by_its_role_and_the_exact_rule_wins() {
        let l = loaded(RULES);
        let d = run(&l, "registry.test/team/app:v1", None).await;
        let vouch = d.outcome.as_ref().ok().cloned().flatten().expect("vouched");
        assert_eq!(vouch.proof, Proof::NotaryV1);
        assert_eq!(vouch.role, "targets");
        assert_eq!(
            vouch.digest,
            format!("sha256:{}", sha256_hex(&manifest("v1")))
        );
        assert_eq!(
            d.reference.map(|r| r.to_string()).as_deref(),
            Some("registry.test/team/app:v1")
        );

        // The exact rule beats the catch-all of its registry path, whatever their order.
        let d = run(&l, "registry.test/other/app:v1", None).await;
        assert_eq!(d.rule.map(|r| r.name.as_str()), Some("app-exact"));
        assert!(
            matches!(d.outcome, Ok(None)),
            "require = any vouches nothing"
        );
    }

    /// Two kinds of proof that each vouch, for different digests.
    struct Split;

    impl Vouchers for Split {
        async fn vouch(&self, kind: Proof, q: &Query<'_>) -> Result<Vouch, Denial> {
            let _ = q;
            let digest = match kind {
                Proof::NotaryV1 => "1".repeat(64),
                // Asked about the first proof's digest, the others find another.
                Proof::Cosign | Proof::Notation => "2".repeat(64),
            };
            Ok(Vouch {
                proof: kind,
                digest: format!("sha256:{digest}"),
                role: kind.as_str().to_owned(),
                signers: vec![kind.as_str().to_owned()],
                expires: None,
                let_through: Vec::new(),
            })
        }
    }

    #[tokio::test]
    async fn all_proofs_must_vouch_for_one_digest() {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sigstore-core/tests/fixtures/cosign.pub"
        );
        let both = format!("[[rule]]\nname = \"both\"\nmatch = \"**\"\nproofs = [\"notary-v1\", \"cosign\"]\ncosign_keys = [\"{key}\"]\ncosign_tlog = false\n");
        let l = loaded(&both);
        let d = decide(
            &l,
            ImageRef::parse("registry.test/team/app:v1"),
            None,
            &Split,
        )
        .await;
        assert_eq!(refused(&d), ReasonCode::DigestMismatch);
        assert_eq!(d.tried.len(), 2);
        // Under "any" the first that vouches counts, and the second is not asked.
        let l = loaded(&both.replace("cosign_tlog", "proofs_required = \"any\"\ncosign_tlog"));
        let d = decide(
            &l,
            ImageRef::parse("registry.test/team/app:v1"),
            None,
            &Split,
        )
        .await;
        assert_eq!(
            d.outcome.ok().flatten().map(|v| v.proof),
            Some(Proof::NotaryV1)
        );
        assert_eq!(d.tried.len(), 1);
    }
}
