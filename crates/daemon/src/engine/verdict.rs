//! A verdict as the engine gives it, its form in the API, and a refusal before it
//! becomes one.

use api::codes::ReasonCode;

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
    /// Trust server asked (signed rules).
    pub trust_server: String,
    /// Expiry of the verified timestamp, RFC 3339 (signed and allowed).
    pub timestamp_expires: String,
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
}

impl From<Verdict> for api::VerifyResponse {
    fn from(v: Verdict) -> api::VerifyResponse {
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
            trust_server: v.trust_server,
            timestamp_expires: v.timestamp_expires,
            proof: proof_list(&v.proof),
            proofs: v
                .proofs
                .into_iter()
                .map(|p| api::ProofResult {
                    proof: p.proof.as_str().to_owned(),
                    passed: p.passed,
                    reason: p.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                    message: p.message,
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
