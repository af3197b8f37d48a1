//! The seam for kinds of proof. A rule lists the kinds it accepts (`proofs = [...]`);
//! each kind is one [`ProofKind`]: it fetches what it needs, verifies it, and says who
//! vouched for which digest, caching and single-flighting its own work. The decision
//! ([`super::decide`]) knows nothing of any kind's format.
//!
//! Adding a kind: a module with a type implementing [`ProofKind`], a field of
//! [`Proofs`] and its arm in [`Proofs::check`], and a `policy::Proof` value.

use api::codes::ReasonCode;
use policy::{ImageRef, Proof, Rule};
use time::OffsetDateTime;

use super::cosign::Cosign;
use super::notary_v1::NotaryV1;
use super::notation::Notation;
use super::prepare::Loaded;
use super::{Denial, Engine};

/// What a proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouch {
    /// The kind of proof that counted.
    pub proof: Proof,
    /// The digest vouched for, `sha256:HEX`.
    pub digest: String,
    /// Who vouched: a role, an identity.
    pub role: String,
    /// Keys that signed.
    pub signers: Vec<String>,
    /// When what vouched stops being valid (Notary: the timestamp's expiry).
    pub expires: Option<OffsetDateTime>,
    /// Checks that failed but that the rule's level lets through (Notation's
    /// permissive and audit levels): the verdict shows this proof as not passed, with
    /// the level, so that logging can alert on it.
    pub let_through: Vec<(ReasonCode, String)>,
}

/// What a proof is asked about.
pub struct Query<'a> {
    /// The policy in force.
    pub loaded: &'a Loaded,
    /// The rule that applies.
    pub rule: &'a Rule,
    /// The normalised reference.
    pub image: &'a ImageRef,
    /// The digest to vouch for, lowercase hex, when known (from the reference or from
    /// containerd).
    pub sha256: Option<&'a str>,
}

/// Whatever answers for the kinds of proof a rule accepts: the engine's [`Proofs`], or a
/// unit test's stand-in, so that the decision can be tested without servers.
pub(crate) trait Vouchers {
    /// Does `kind` vouch for the image in `q`?
    async fn vouch(&self, kind: Proof, q: &Query<'_>) -> Result<Vouch, Denial>;
}

impl Vouchers for Engine {
    async fn vouch(&self, kind: Proof, q: &Query<'_>) -> Result<Vouch, Denial> {
        self.proofs.check(kind, self, q).await
    }
}

/// One kind of proof.
pub(crate) trait ProofKind {
    /// Verifies that the image is vouched for, or says why not. `engine` gives its state
    /// store, figures and events.
    async fn check(&self, engine: &Engine, q: &Query<'_>) -> Result<Vouch, Denial>;
    /// A new policy is in force: drop results that depended on the old one.
    fn policy_changed(&self);
    /// Repositories (or other subjects) this kind holds data for, for status.
    fn cached(&self) -> usize;
}

/// Every kind of proof the engine knows.
#[derive(Default)]
pub(crate) struct Proofs {
    notary_v1: NotaryV1,
    cosign: Cosign,
    notation: Notation,
}

impl Proofs {
    pub(crate) async fn check(
        &self,
        kind: Proof,
        engine: &Engine,
        q: &Query<'_>,
    ) -> Result<Vouch, Denial> {
        match kind {
            Proof::NotaryV1 => self.notary_v1.check(engine, q).await,
            Proof::Cosign => self.cosign.check(engine, q).await,
            Proof::Notation => self.notation.check(engine, q).await,
        }
    }

    fn all(&self) -> [&dyn Forget; 3] {
        [&self.notary_v1, &self.cosign, &self.notation]
    }

    pub(crate) fn policy_changed(&self) {
        self.all().iter().for_each(|p| p.forget());
    }

    pub(crate) fn cached(&self) -> usize {
        self.all().iter().map(|p| p.count()).sum()
    }
}

/// The non-async part of [`ProofKind`], object-safe, so that every kind can be walked.
trait Forget {
    fn forget(&self);
    fn count(&self) -> usize;
}

impl<T: ProofKind> Forget for T {
    fn forget(&self) {
        self.policy_changed();
    }
    fn count(&self) -> usize {
        self.cached()
    }
}
