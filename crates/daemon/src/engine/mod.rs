//! The verdict engine: reference → rule → proofs → verdict → event.
//!
//! Split by job: [`prepare`] (the policy in force), [`decide`] (reference, rule and
//! what it requires, format-neutral), [`proof`] (the seam every kind of proof sits
//! behind; [`notary_v1`] is the first), [`cache`] (bounded caches, single flight), and
//! here the verdict's record: counters, the event, the answer. Fail closed throughout:
//! anything that cannot be established is a rejection with a reason code and a sentence.

mod cache;
mod cosign;
mod decide;
mod lookup;
mod notary_v1;
mod notation;
pub mod prepare;
pub mod proof;
mod registry_proof;
mod verdict;

use cosign::Cosign;
use notary_v1::NotaryV1;
use notation::Notation;

// The kinds of proof, each once: its module above, its line here, its policy value.
proof::kinds! {
    notary_v1: NotaryV1 = policy::Proof::NotaryV1,
    cosign: Cosign = policy::Proof::Cosign,
    notation: Notation = policy::Proof::Notation,
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use api::codes::{EventKind, ReasonCode};
use arc_swap::ArcSwap;
use key_store::StateStore;
use policy::{ImageRef, Mode};

pub(crate) use prepare::{check_policy_file, keys_fingerprint};
pub use prepare::{policy_version, Loaded};
pub(crate) use verdict::{deny, Denial};
pub use verdict::{proof_list, ProofResult, Verdict};

use crate::events::{Event, EventLog};

/// Who asks for a verdict, recorded in its event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask<'a> {
    /// `containerd-bindir`, `containerd-watcher`, `cli`, ...
    pub source: &'a str,
    /// A dry run: recorded as such, nothing enforced.
    pub dry_run: bool,
    /// containerd namespace the image lives in, when known.
    pub namespace: Option<&'a str>,
    /// A verdict given for the same image and digest under the same policy a moment ago
    /// may answer, without a second event: the watcher sees every pull the verifier
    /// already judged, and CRI re-creates records the watcher removed.
    pub reuse_recent: bool,
    /// NRI: the container about to be created from the image; its verdict is a
    /// `container.*` event naming it.
    pub container: Option<&'a ContainerCtx>,
}

/// The container an NRI verdict is about.
#[derive(Debug, Clone, Default)]
pub struct ContainerCtx {
    /// Pod name.
    pub pod: String,
    /// The pod's Kubernetes namespace.
    pub pod_namespace: String,
    /// The pod's Kubernetes UID (empty when containerd did not say).
    pub pod_uid: String,
    /// Container name in the pod.
    pub container: String,
}

/// How long a verdict may stand in for a later ask about the same image and digest
/// ([`Ask::reuse_recent`]): the time between the verifier's check (before the first
/// byte) and the image record (after the last) of a large pull.
const RECENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
const RECENT_MAX: usize = 4096;

/// Characters of an unparsed image name kept in a verdict (a longer name is refused as
/// `invalid_reference` anyway).
const MAX_IMAGE_TEXT: usize = 4096;

/// The contract's code for a trust-core reason (trust-core knows nothing of the daemon's
/// codes). Exhaustive: a reason added there must be given its code here.
pub(crate) fn reason_of(r: trust_core::Reason) -> ReasonCode {
    use trust_core::Reason;
    match r {
        Reason::NoTrustData => ReasonCode::NoTrustData,
        Reason::BadSignature => ReasonCode::BadSignature,
        Reason::ThresholdNotMet => ReasonCode::ThresholdNotMet,
        Reason::RootNotPinned => ReasonCode::RootNotPinned,
        Reason::RootRotationBroken => ReasonCode::RootRotationBroken,
        Reason::CertificateExpired => ReasonCode::CertificateExpired,
        Reason::Expired => ReasonCode::Expired,
        Reason::StaleTimestamp => ReasonCode::StaleTimestamp,
        Reason::Rollback => ReasonCode::Rollback,
        Reason::HashMismatch => ReasonCode::HashMismatch,
        Reason::LengthMismatch => ReasonCode::LengthMismatch,
        Reason::UnknownTag => ReasonCode::UnknownTag,
        Reason::DigestMismatch => ReasonCode::DigestMismatch,
        Reason::MalformedMetadata => ReasonCode::MalformedMetadata,
        Reason::Oversized => ReasonCode::Oversized,
    }
}

/// Counters for status and metrics.
#[derive(Default)]
pub struct Counters {
    /// Verdicts given.
    pub verdicts: AtomicU64,
    /// By reason code (and "allowed").
    pub by_reason: Mutex<BTreeMap<String, u64>>,
    /// Fetches from trust servers.
    pub fetches: AtomicU64,
    /// Cache hits.
    pub cache_hits: AtomicU64,
    /// Time spent fetching, microseconds.
    pub fetch_micros: AtomicU64,
    /// Successful reloads.
    pub reloads_ok: AtomicU64,
    /// Refused reloads.
    pub reloads_invalid: AtomicU64,
    /// The last reload attempt failed (1) or loaded (0): a gauge to alert on.
    pub last_reload_failed: AtomicU64,
    /// When the last reload was attempted (Unix seconds; 0: none since start).
    pub last_reload_at: AtomicU64,
    /// Images in containerd checked by the watcher.
    pub images_checked: AtomicU64,
    /// Images the watcher removed from containerd.
    pub images_removed: AtomicU64,
}

/// One line saying how a background part (watcher, NRI gate, a sink) stands, for
/// `pullguard status`; "off" until the part starts.
pub struct StateLine(Mutex<String>);

impl Default for StateLine {
    fn default() -> StateLine {
        StateLine(Mutex::new("off".to_owned()))
    }
}

impl StateLine {
    /// Replaces the line.
    pub fn set(&self, text: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    /// The line now.
    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The engine shared by every request.
pub struct Engine {
    loaded: ArcSwap<Loaded>,
    pub(crate) state: StateStore,
    /// The durable events file and fan-out.
    pub events: Arc<EventLog>,
    proofs: Proofs,
    recent: cache::TtlCache<Verdict>,
    /// Recent errors, newest last.
    pub last_errors: Mutex<Vec<String>>,
    /// Outcome of the last reload.
    pub last_reload: Mutex<String>,
    /// Figures.
    pub counters: Counters,
    /// The containerd watcher's state, for status ("off" when not configured).
    pub watcher_state: StateLine,
    /// The NRI gate's state, for status ("off" when not configured).
    pub nri_state: StateLine,
    /// The Kubernetes Events sink's state, for status ("off" when not configured).
    pub kube_events_state: StateLine,
    /// The OTLP export's state, for status ("off" when not configured).
    pub otlp_state: StateLine,
    installs: tokio::sync::watch::Sender<u64>,
}

impl Engine {
    /// An engine over a prepared policy.
    pub fn new(loaded: Loaded, state: StateStore, events: Arc<EventLog>) -> Engine {
        let loaded_generation = loaded.generation;
        Engine {
            loaded: ArcSwap::from_pointee(loaded),
            state,
            events,
            proofs: Proofs::default(),
            recent: cache::TtlCache::new(RECENT_MAX),
            last_errors: Mutex::new(Vec::new()),
            last_reload: Mutex::new(format!(
                "ok at {} (generation {}, start)",
                trust_core::rfc3339(time::OffsetDateTime::now_utc()),
                loaded_generation
            )),
            counters: Counters::default(),
            watcher_state: StateLine::default(),
            nri_state: StateLine::default(),
            kube_events_state: StateLine::default(),
            otlp_state: StateLine::default(),
            installs: tokio::sync::watch::channel(0).0,
        }
    }

    /// Notified with the generation each time a policy is installed.
    pub fn installs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.installs.subscribe()
    }

    /// The policy in force.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded.load_full()
    }

    /// Swaps in a new policy; verified results of the old one are dropped.
    pub fn install(&self, loaded: Loaded) {
        let generation = loaded.generation;
        self.loaded.store(Arc::new(loaded));
        self.proofs.policy_changed();
        self.installs.send_replace(generation);
    }

    /// Opens connections to every trust server of the policy in force, and to the
    /// registries its rules ask for signatures by name, in the background: the tasks,
    /// for a caller that waits for them.
    pub fn warm_connections(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let loaded = self.loaded();
        let mut tasks = Vec::new();
        for fetcher in loaded.kinds.notary_v1.fetchers.values() {
            let fetcher = fetcher.clone();
            tasks.push(tokio::spawn(async move { fetcher.warm().await }));
        }
        for host in registry_proof::signature_registries(&loaded.policy) {
            let registry = loaded.registry.clone();
            tasks.push(tokio::spawn(async move { registry.warm(&host).await }));
        }
        tasks
    }

    /// Repositories with trust data in memory.
    pub fn cached_repositories(&self) -> usize {
        self.proofs.cached()
    }

    /// Keeps `e` among the recent errors shown by status.
    pub fn note_error(&self, e: &str) {
        let mut errs = self.last_errors.lock().unwrap_or_else(|p| p.into_inner());
        // When, so that an operator can tell an old error from a current one.
        errs.push(format!(
            "{} {e}",
            trust_core::rfc3339(time::OffsetDateTime::now_utc())
        ));
        let excess = errs.len().saturating_sub(10);
        errs.drain(..excess);
    }

    /// Records an event; durable ones are on disk when this returns. A failure to write
    /// is itself reported on the other sinks and in the status.
    pub async fn emit(&self, event: Event, durable: bool) -> Result<(), String> {
        // A write to the page cache: cheaper inline than a hop to the blocking pool,
        // which cost more than the rest of a cached verdict; but only when the file is
        // free, never waiting on an async worker for another write's sync.
        let inline = if durable {
            None
        } else {
            self.events.try_record(&event)
        };
        let res = match inline {
            Some(res) => res.map_err(|e| e.to_string()),
            None => {
                let (log, ev) = (self.events.clone(), event.clone());
                tokio::task::spawn_blocking(move || log.record(&ev, durable))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
        };
        if let Err(e) = &res {
            let msg = format!("cannot write the events file: {e}");
            tracing::error!(cause = %e, event_id = %event.event_id, "cannot write the events file");
            self.note_error(&msg);
        }
        res
    }

    /// Records an event about a part of the daemon itself (the watcher, the NRI gate),
    /// from `source`.
    pub async fn note(&self, kind: EventKind, source: &str, message: String, durable: bool) {
        let mut ev = self
            .events
            .new_event(kind, self.loaded().generation, message);
        ev.source = Some(source.to_owned());
        let _ = self.emit(ev, durable).await;
    }

    /// May `image` (with the digest containerd resolved, if known) be pulled?
    pub async fn verify(&self, image: &str, digest: Option<&str>, ask: &Ask<'_>) -> Verdict {
        let loaded = self.loaded();
        let parsed = ImageRef::parse(image);
        let key = parsed
            .as_ref()
            .ok()
            .zip(digest)
            .map(|(r, d)| format!("{r}\u{0}{d}"));
        if ask.reuse_recent {
            if let Some(v) = key.as_ref().and_then(|k| self.recent(k, loaded.generation)) {
                return v;
            }
        }
        let decision = decide::decide(&loaded, parsed, digest, self).await;
        let verdict = self.conclude(&loaded, image, decision, digest, ask).await;
        if let Some(key) = key.filter(|_| !ask.dry_run) {
            self.remember(key, &verdict);
        }
        verdict
    }

    /// A verdict given for `key` under policy `generation` within the window, unless it
    /// was a "could not check now".
    fn recent(&self, key: &str, generation: u64) -> Option<Verdict> {
        self.recent.fresh(key, RECENT_WINDOW).filter(|v| {
            v.generation == generation && !v.reason.is_some_and(ReasonCode::is_transient)
        })
    }

    fn remember(&self, key: String, verdict: &Verdict) {
        self.recent.insert(key, verdict.clone());
    }

    /// A request that cannot be judged (a name or digest over the limits): refused with
    /// `reason` and recorded like any verdict, so that callers always get a verdict and
    /// never a transport error they might take for "daemon down". `image` is what may
    /// be recorded of the name (shortened by the caller).
    pub async fn refuse(
        &self,
        image: &str,
        reason: ReasonCode,
        message: String,
        ask: &Ask<'_>,
    ) -> Verdict {
        let loaded = self.loaded();
        let decision = decide::Decision {
            reference: None,
            rule: None,
            outcome: Err(deny(reason, message)),
            tried: Vec::new(),
        };
        self.conclude(&loaded, image, decision, None, ask).await
    }

    /// The verdict made of a decision: counted, recorded as an event (durably when it
    /// refuses), answered. `image` is the name as asked, kept when it did not parse.
    async fn conclude(
        &self,
        loaded: &Loaded,
        image: &str,
        decision: decide::Decision<'_>,
        digest: Option<&str>,
        ask: &Ask<'_>,
    ) -> Verdict {
        self.counters.verdicts.fetch_add(1, Ordering::Relaxed);
        let mut verdict = Verdict {
            generation: loaded.generation,
            // What a caller sent, until it parses: containerd accepts any image name
            // (`ctr import` of a stranger's archive), and it goes into answers, events
            // and log lines, whose lines a newline in it would forge.
            image: api::capped(image, MAX_IMAGE_TEXT),
            ..Verdict::default()
        };
        if let Some(r) = &decision.reference {
            verdict.image = r.to_string();
            verdict.gun = r.repository();
        }
        // The mode is the deciding rule's own; no rule (nothing matched, or the request
        // could not be judged) enforces.
        let mode = decision.rule.map_or(Mode::Enforce, |r| r.mode);
        if let Some(rule) = decision.rule {
            verdict.rule = rule.name.clone();
        }
        verdict.mode = mode;
        verdict.proofs = decision
            .tried
            .iter()
            .map(|t| {
                let asked = decision.rule.and_then(|rule| Proofs::asks(t.proof, rule));
                ProofResult::of(t, asked)
            })
            .collect();
        // The proofs that counted (vouched), whatever their level let through.
        let passed: Vec<policy::Proof> = decision
            .tried
            .iter()
            .filter(|t| t.outcome.is_ok())
            .map(|t| t.proof)
            .collect();
        let outcome = decision.outcome.map(|vouched| {
            if let Some(vouch) = vouched {
                verdict.digest = vouch.digest;
                verdict.role = vouch.role;
                verdict.signers = vouch.signers;
                verdict.proof = passed;
            }
        });
        // A dry run (`pullguard verify`) enforces nothing, so it is no `pull.*` event that
        // alerting on rejections would fire on.
        let kind = match (&outcome, mode, ask.container.is_some()) {
            _ if ask.dry_run => EventKind::VerifyDryRun,
            (Ok(()), _, false) => EventKind::PullAllowed,
            (Err(_), Mode::Audit, false) => EventKind::PullAudited,
            (Err(_), Mode::Enforce, false) => EventKind::PullRejected,
            (Ok(()), _, true) => EventKind::ContainerAllowed,
            (Err(_), Mode::Audit, true) => EventKind::ContainerAudited,
            (Err(_), Mode::Enforce, true) => EventKind::ContainerRefused,
        };
        match &outcome {
            Ok(()) => verdict.allowed = true,
            Err(d) => {
                verdict.allowed = mode == Mode::Audit;
                verdict.reason = Some(d.reason);
                verdict.message = d.message.clone();
            }
        }
        *self
            .counters
            .by_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(
                verdict
                    .reason
                    .map_or("allowed", ReasonCode::as_str)
                    .to_owned(),
            )
            .or_default() += 1;

        let mut ev = self
            .events
            .new_event(kind, loaded.generation, verdict.message.clone());
        ev.image = Some(verdict.image.clone());
        ev.digest = digest
            .map(str::to_owned)
            .or_else(|| (!verdict.digest.is_empty()).then(|| verdict.digest.clone()));
        ev.gun = (!verdict.gun.is_empty()).then(|| verdict.gun.clone());
        ev.rule = (!verdict.rule.is_empty()).then(|| verdict.rule.clone());
        ev.mode = Some(verdict.mode);
        ev.reason = verdict.reason;
        ev.dry_run = ask.dry_run;
        ev.source = Some(ask.source.to_owned());
        ev.namespace = ask.namespace.map(str::to_owned);
        ev.proof = verdict.proof.clone();
        if verdict.proofs.len() > 1 || verdict.proofs.iter().any(|p| !p.passed) {
            ev.proofs = verdict
                .proofs
                .iter()
                .map(|p| crate::events::ProofOutcome {
                    proof: p.proof,
                    passed: p.passed,
                    reason: p.reason,
                })
                .collect();
        }
        if let Some(c) = ask.container {
            ev.pod = Some(c.pod.clone());
            ev.pod_namespace = Some(c.pod_namespace.clone());
            ev.pod_uid = (!c.pod_uid.is_empty()).then(|| c.pod_uid.clone());
            ev.container = Some(c.container.clone());
        }
        verdict.event_id = ev.event_id.clone();
        // A rejection is on disk before it is answered; if it cannot be, the pull is
        // still refused (fail closed), and the failure is reported.
        let durable = matches!(
            kind,
            EventKind::PullRejected
                | EventKind::PullAudited
                | EventKind::ContainerRefused
                | EventKind::ContainerAudited
        );
        if let Err(e) = self.emit(ev, durable).await {
            if !verdict.allowed || mode == Mode::Enforce {
                verdict.allowed = false;
                if verdict.reason.is_none() {
                    verdict.reason = Some(ReasonCode::EventsUnwritable);
                    verdict.message = format!("the verdict could not be recorded: {e}");
                }
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    /// trust-core's reasons keep their text as contract codes (`trust verify --json` and
    /// the daemon's verdicts say the same word).
    #[test]
    fn every_trust_core_reason_is_the_contract_code_of_the_same_name() {
        for r in trust_core::Reason::ALL {
            assert_eq!(super::reason_of(r).as_str(), r.as_str());
        }
    }
}
