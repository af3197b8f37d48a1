//! A verdict as the engine gives it, its form in the API, and a refusal before it
//! becomes one.

use api::codes::ReasonCode;

use super::decide::Tried;

/// The proofs that counted as the contract writes them: `notary-v1,cosign`.
pub fn proof_list(proofs: &[policy::Proof]) -> String {
    proofs
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// May the pull go on.
    pub allowed: bool,
    /// Reason code when the trust data or policy said no (also set on audited pulls).
    pub reason: Option<ReasonCode>,
    /// One sentence for people.
    pub message: String,
    /// Rule applied.
    pub rule: String,
    /// Digest the trust data signs.
    pub digest: String,
    /// Role that vouched.
    pub role: String,
    /// Keys that signed it.
    pub signers: Vec<String>,
    /// Policy generation.
    pub generation: u64,
    /// The rule's mode (enforce when no rule matched).
    pub mode: policy::Mode,
    /// The event recorded for it.
    pub event_id: String,
    /// Normalised reference.
    pub image: String,
    /// Repository.
    pub gun: String,
    /// The kinds of proof that counted, for signed and allowed pulls.
    pub proof: Vec<policy::Proof>,
    /// Each kind of proof asked and its outcome.
    pub proofs: Vec<ProofResult>,
}

/// One kind of proof's outcome in a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofResult {
    /// Which kind of proof.
    pub proof: policy::Proof,
    /// It vouched.
    pub passed: bool,
    /// Its reason code when it did not.
    pub reason: Option<ReasonCode>,
    /// Who signed, or why not.
    pub message: String,
    /// The server it asked, when the kind names one (Notary v1: the rule's trust
    /// server); registry-backed kinds ask the image's registry.
    pub source: Option<String>,
    /// When what vouched stops being valid (Notary v1: the verified timestamp's
    /// expiry); only when it vouched.
    pub expires: Option<time::OffsetDateTime>,
}

impl ProofResult {
    /// The result of a kind that was tried; `asked` is the server it names.
    pub(super) fn of(t: &Tried, asked: Option<&str>) -> ProofResult {
        let source = asked.map(str::to_owned);
        match &t.outcome {
            // Vouched, but past a failed check the rule's level lets through: shown as
            // not passed, with the check and the level, for alerting.
            Ok(v) if !v.let_through.is_empty() => ProofResult {
                proof: t.proof,
                passed: false,
                reason: v.let_through.first().map(|(r, _)| *r),
                message: format!(
                    "{} signed by {}; failed checks: {}",
                    v.role,
                    v.signers.join(", "),
                    v.let_through
                        .iter()
                        .map(|(r, m)| format!("{m} ({r})"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                source,
                expires: v.expires,
            },
            Ok(v) => ProofResult {
                proof: t.proof,
                passed: true,
                reason: None,
                message: format!("{} signed by {}", v.role, v.signers.join(", ")),
                source,
                expires: v.expires,
            },
            Err((r, m)) => ProofResult {
                proof: t.proof,
                passed: false,
                reason: Some(*r),
                message: m.clone(),
                source,
                expires: None,
            },
        }
    }
}

impl Verdict {
    /// The Notary v1 proof's result, if it was asked: the API's `trust_server` and
    /// `timestamp_expires` come from it, for clients written before `proofs`.
    fn notary_v1(&self) -> Option<&ProofResult> {
        self.proofs
            .iter()
            .find(|p| p.proof == policy::Proof::NotaryV1)
    }
}

impl From<Verdict> for api::VerifyResponse {
    fn from(v: Verdict) -> api::VerifyResponse {
        let notary = v.notary_v1();
        let trust_server = notary.and_then(|p| p.source.clone()).unwrap_or_default();
        // As before `proofs`: the timestamp's expiry when Notary v1 counted.
        let timestamp_expires = notary
            .filter(|_| v.proof.contains(&policy::Proof::NotaryV1))
            .and_then(|p| p.expires)
            .map(trust_core::rfc3339)
            .unwrap_or_default();
        api::VerifyResponse {
            remedy: v
                .reason
                .map(ReasonCode::remedy)
                .unwrap_or_default()
                .to_owned(),
            allowed: v.allowed,
            reason: v.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
            message: v.message,
            rule: v.rule,
            digest: v.digest,
            role: v.role,
            signers: v.signers,
            policy_generation: v.generation,
            mode: v.mode.as_str().to_owned(),
            event_id: v.event_id,
            image: v.image,
            gun: v.gun,
            trust_server,
            timestamp_expires,
            proof: proof_list(&v.proof),
            proofs: v
                .proofs
                .into_iter()
                .map(|p| api::ProofResult {
                    proof: p.proof.as_str().to_owned(),
                    passed: p.passed,
                    reason: p.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                    message: p.message,
                    source: p.source.unwrap_or_default(),
                    expires: p.expires.map(trust_core::rfc3339).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A rejection before it becomes a verdict.
pub(crate) struct Denial {
    pub(super) reason: ReasonCode,
    pub(super) message: String,
}

/// Longest refusal message kept: messages quote registries, trust servers and
/// certificates, and go into answers, events and log lines.
const MAX_MESSAGE: usize = 2000;

pub(crate) fn deny(reason: ReasonCode, message: impl Into<String>) -> Denial {
    Denial {
        reason,
        message: api::capped(&message.into(), MAX_MESSAGE),
    }
}
