//! The decision: reference → digest checks → rule → what the rule requires → the kinds
//! of proof it accepts. Format-neutral: every kind of proof sits behind
//! [`super::proof::ProofKind`].

use api::codes::ReasonCode;
use policy::{ImageRef, Require};

use super::prepare::Loaded;
use super::proof::Query;
use super::{deny, Denial, Engine, Verdict};

impl Engine {
    /// Fills `v` with what was established; `Err` says why the image may not be pulled.
    pub(super) async fn decide(
        &self,
        loaded: &Loaded,
        image: &str,
        digest: Option<&str>,
        v: &mut Verdict,
    ) -> Result<(), Denial> {
        let reference = ImageRef::parse(image)
            .map_err(|e| deny(ReasonCode::InvalidReference, e.to_string()))?;
        v.image = reference.to_string();
        v.gun = reference.repository();
        let want = wanted_digest(digest, &reference)?;
        let rule = loaded.policy.rule_for(&reference).ok_or_else(|| {
            deny(
                ReasonCode::NoMatchingRule,
                format!("no policy rule matches {reference}; add a rule for it, or a catch-all rule with match = \"**\" (policy {})", loaded.file.display()),
            )
        })?;
        v.rule = rule.name.clone();
        match rule.require {
            Require::Any => Ok(()),
            Require::Reject => Err(deny(
                ReasonCode::RejectedByPolicy,
                format!("rule {} rejects every image it matches", rule.name),
            )),
            Require::Signed => {
                v.trust_server = rule.trust_server.clone().unwrap_or_default();
                let query = Query {
                    engine: self,
                    loaded,
                    rule,
                    image: &reference,
                    sha256: want.as_deref(),
                };
                let mut last = deny(
                    ReasonCode::NoTrustData,
                    format!("rule {} accepts no kind of proof", rule.name),
                );
                // The first kind that vouches counts; otherwise the last refusal is said.
                for kind in &rule.proofs {
                    match self.proofs.check(*kind, &query).await {
                        Ok(vouch) => {
                            v.timestamp_expires = vouch
                                .expires
                                .and_then(|t| {
                                    t.format(&time::format_description::well_known::Rfc3339)
                                        .ok()
                                })
                                .unwrap_or_default();
                            v.digest = vouch.digest;
                            v.role = vouch.role;
                            v.signers = vouch.signers;
                            v.proof = vouch.proof.as_str().to_owned();
                            return Ok(());
                        }
                        Err(d) => last = d,
                    }
                }
                Err(last)
            }
        }
    }
}

/// The digest to check, lowercase hex: the one containerd resolved, which must equal
/// the one the reference names when both are there.
fn wanted_digest(digest: Option<&str>, reference: &ImageRef) -> Result<Option<String>, Denial> {
    Ok(match (digest, &reference.digest) {
        (Some(d), Some(r)) => {
            let d = d
                .strip_prefix("sha256:")
                .ok_or_else(|| unsupported_digest(d))?;
            if d != r {
                return Err(deny(
                    ReasonCode::DigestMismatch,
                    format!("the reference names sha256:{r} but containerd resolved sha256:{d}"),
                ));
            }
            Some(d.to_owned())
        }
        (Some(d), None) => Some(
            d.strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| unsupported_digest(d))?
                .to_ascii_lowercase(),
        ),
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
