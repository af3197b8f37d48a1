//! The verdict engine: reference → rule → trust data → trust-core → verdict.
//!
//! Format-neutral at the top: a rule lists the kinds of proof it accepts, and each kind
//! has its own checker ([`Engine::notary_v1`] today). Fail closed throughout: anything
//! that cannot be established is a rejection with a reason code and a sentence.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use base64::Engine as _;
use key_store::{StateStore, TrustAnchors};
use policy::{ImageRef, Mode, OnUnreachable, Policy, Proof, Require, Rule};
use time::OffsetDateTime;
use trust_core::{
    Pins, RepoFiles, RootAnchor, TagPolicy, TargetMatch, VerifiedRepo, VerifyOptions,
};

use crate::events::{Event, EventLog};
use crate::fetch::{FetchError, Fetcher};

/// A policy in force, with what was prepared from it.
pub struct Loaded {
    /// The policy.
    pub policy: Policy,
    /// Its generation: 1 at start, +1 per successful reload.
    pub generation: u64,
    /// The file it came from.
    pub file: PathBuf,
    fetchers: BTreeMap<String, Fetcher>,
    anchors: TrustAnchors,
    rule_pins: BTreeMap<String, Pins>,
}

impl Loaded {
    /// Prepares a policy: clients for its trust servers, anchors, per-rule pins.
    /// Problems that would make verdicts impossible are errors (the reload is refused).
    pub fn prepare(policy: Policy, generation: u64, file: &Path) -> Result<Loaded, String> {
        Loaded::prepare_after(policy, generation, file, None)
    }

    /// [`Loaded::prepare`] for a reload: clients of trust servers whose settings did not
    /// change are kept (building one loads the system's CA roots, which dominates a reload).
    pub fn prepare_after(
        policy: Policy,
        generation: u64,
        file: &Path,
        previous: Option<&Loaded>,
    ) -> Result<Loaded, String> {
        let mut fetchers = BTreeMap::new();
        for (name, server) in &policy.trust_servers {
            let kept = previous.and_then(|p| {
                (p.policy.trust_servers.get(name) == Some(server))
                    .then(|| p.fetchers.get(name).cloned())
                    .flatten()
            });
            let fetcher = match kept {
                Some(f) => f,
                None => Fetcher::new(server).map_err(|e| e.to_string())?,
            };
            fetchers.insert(name.clone(), fetcher);
        }
        let keys_dir = &policy.daemon.keys_dir;
        let (anchors, warnings) = TrustAnchors::load(keys_dir).map_err(|e| e.to_string())?;
        for w in warnings {
            tracing::warn!(warning = %w, "trust anchor skipped");
        }
        let mut rule_pins = BTreeMap::new();
        for rule in &policy.rules {
            let mut pins = Pins {
                key_ids: rule.root_key_ids.clone(),
                ..Pins::default()
            };
            for (files, is_ca) in [(&rule.root_certs, false), (&rule.root_cas, true)] {
                for f in files {
                    let path = if f.is_absolute() {
                        f.clone()
                    } else {
                        keys_dir.join(f)
                    };
                    let bytes = std::fs::read(&path)
                        .map_err(|e| format!("rule {}: {}: {e}", rule.name, path.display()))?;
                    let cert = trust_core::keys::parse_pinned_cert(&bytes)
                        .map_err(|e| format!("rule {}: {}: {e}", rule.name, path.display()))?;
                    if is_ca {
                        pins.cas.push(cert);
                    } else {
                        pins.certs.push(cert.der);
                    }
                }
            }
            rule_pins.insert(rule.name.clone(), pins);
        }
        Ok(Loaded {
            policy,
            generation,
            file: file.to_path_buf(),
            fetchers,
            anchors,
            rule_pins,
        })
    }
}

/// A verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// May the pull go on.
    pub allowed: bool,
    /// Reason code when the trust data or policy said no (also set on audited pulls).
    pub reason: String,
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
    /// `enforce` or `audit`.
    pub mode: String,
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
}

impl From<Verdict> for api::VerifyResponse {
    fn from(v: Verdict) -> api::VerifyResponse {
        api::VerifyResponse {
            remedy: crate::remedy::remedy(&v.reason).to_owned(),
            allowed: v.allowed,
            reason: v.reason,
            message: v.message,
            rule: v.rule,
            digest: v.digest,
            role: v.role,
            signers: v.signers,
            policy_generation: v.generation,
            mode: v.mode,
            event_id: v.event_id,
            image: v.image,
            gun: v.gun,
            trust_server: v.trust_server,
            timestamp_expires: v.timestamp_expires,
        }
    }
}

/// A rejection before it becomes a verdict.
struct Denial {
    reason: &'static str,
    message: String,
}

fn deny(reason: &'static str, message: impl Into<String>) -> Denial {
    Denial {
        reason,
        message: message.into(),
    }
}

struct CachedFiles {
    files: Arc<RepoFiles>,
    fetched: Instant,
}

struct CachedVerdict {
    repo: Arc<VerifiedRepo>,
    verified: Instant,
}

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
}

/// How long a verdict may stand in for a later ask about the same image and digest
/// ([`Ask::reuse_recent`]): the time between the verifier's check (before the first
/// byte) and the image record (after the last) of a large pull.
const RECENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
const RECENT_MAX: usize = 4096;

/// Reasons that say "could not check now", not "the trust data says no".
pub const TRANSIENT: &[&str] = &[
    "trust_server_unreachable",
    "internal_error",
    "state_corrupt",
    "state_unreadable",
    "state_unwritable",
    "clock_went_backwards",
    "events_unwritable",
];

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
    /// Images in containerd checked by the watcher.
    pub images_checked: AtomicU64,
    /// Images the watcher removed from containerd.
    pub images_removed: AtomicU64,
}

/// The engine shared by every request.
pub struct Engine {
    loaded: ArcSwap<Loaded>,
    state: StateStore,
    /// The durable events file and fan-out.
    pub events: Arc<EventLog>,
    files: Mutex<HashMap<String, CachedFiles>>,
    verified: Mutex<HashMap<String, CachedVerdict>>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    recent: Mutex<HashMap<(String, String), (Verdict, Instant)>>,
    /// Recent errors, newest last.
    pub last_errors: Mutex<Vec<String>>,
    /// Outcome of the last reload.
    pub last_reload: Mutex<String>,
    /// Figures.
    pub counters: Counters,
    /// The containerd watcher's state, for status ("off" when not configured).
    pub watcher_state: Mutex<String>,
    installs: tokio::sync::watch::Sender<u64>,
}

const MAX_CACHE_BLOB: u64 = 200 * 1024 * 1024;

impl Engine {
    /// An engine over a prepared policy.
    pub fn new(loaded: Loaded, state: StateStore, events: Arc<EventLog>) -> Engine {
        Engine {
            loaded: ArcSwap::from_pointee(loaded),
            state,
            events,
            files: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            last_errors: Mutex::new(Vec::new()),
            last_reload: Mutex::new("ok".to_owned()),
            counters: Counters::default(),
            watcher_state: Mutex::new("off".to_owned()),
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
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.installs.send_replace(generation);
    }

    /// Opens connections to every trust server of the policy in force, in the background.
    pub fn warm_trust_servers(&self) {
        for fetcher in self.loaded().fetchers.values() {
            let fetcher = fetcher.clone();
            tokio::spawn(async move { fetcher.warm().await });
        }
    }

    /// A verified repository younger than `ttl`, if any.
    fn fresh_verified(&self, key: &str, ttl: std::time::Duration) -> Option<Arc<VerifiedRepo>> {
        let map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|c| c.verified.elapsed() < ttl)
            .map(|c| c.repo.clone())
    }

    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    }

    /// Repositories with trust data in memory.
    pub fn cached_repositories(&self) -> usize {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Keeps `e` among the recent errors shown by status.
    pub fn note_error(&self, e: &str) {
        let mut errs = self.last_errors.lock().unwrap_or_else(|p| p.into_inner());
        errs.push(e.to_owned());
        let excess = errs.len().saturating_sub(10);
        errs.drain(..excess);
    }

    /// Records an event; durable ones are on disk when this returns. A failure to write
    /// is itself reported on the other sinks and in the status.
    pub async fn emit(&self, event: Event, durable: bool) -> Result<(), String> {
        let res = if durable {
            let log = self.events.clone();
            let ev = event.clone();
            tokio::task::spawn_blocking(move || log.record(&ev, true))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        } else {
            // A write to the page cache: cheaper inline than a hop to the blocking pool,
            // which cost more than the rest of a cached verdict.
            self.events.record(&event, false).map_err(|e| e.to_string())
        };
        if let Err(e) = &res {
            let msg = format!("cannot write the events file: {e}");
            tracing::error!(cause = %e, event_id = %event.event_id, "cannot write the events file");
            self.note_error(&msg);
        }
        res
    }

    /// May `image` (with the digest containerd resolved, if known) be pulled?
    pub async fn verify(&self, image: &str, digest: Option<&str>, ask: &Ask<'_>) -> Verdict {
        let loaded = self.loaded();
        let key = ImageRef::parse(image)
            .ok()
            .zip(digest)
            .map(|(r, d)| (r.to_string(), d.to_owned()));
        if ask.reuse_recent {
            if let Some(v) = key.as_ref().and_then(|k| self.recent(k, loaded.generation)) {
                return v;
            }
        }
        let mut verdict = Verdict {
            generation: loaded.generation,
            image: image.to_owned(),
            ..Verdict::default()
        };
        let outcome = self.decide(&loaded, image, digest, &mut verdict).await;
        let verdict = self.conclude(&loaded, verdict, outcome, digest, ask).await;
        if let Some(key) = key.filter(|_| !ask.dry_run) {
            self.remember(key, &verdict);
        }
        verdict
    }

    /// A verdict given for `key` under policy `generation` within the window, unless it
    /// was a "could not check now".
    fn recent(&self, key: &(String, String), generation: u64) -> Option<Verdict> {
        let map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(v, at)| {
                v.generation == generation
                    && at.elapsed() < RECENT_WINDOW
                    && !TRANSIENT.contains(&v.reason.as_str())
            })
            .map(|(v, _)| v.clone())
    }

    fn remember(&self, key: (String, String), verdict: &Verdict) {
        let mut map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= RECENT_MAX {
            map.retain(|_, (_, at)| at.elapsed() < RECENT_WINDOW);
            if map.len() >= RECENT_MAX {
                map.clear();
            }
        }
        map.insert(key, (verdict.clone(), Instant::now()));
    }

    /// A request that cannot be judged (a name or digest over the limits): refused with
    /// `reason` and recorded like any verdict, so that callers always get a verdict and
    /// never a transport error they might take for "daemon down". `image` is what may
    /// be recorded of the name (shortened by the caller).
    pub async fn refuse(
        &self,
        image: &str,
        reason: &'static str,
        message: String,
        ask: &Ask<'_>,
    ) -> Verdict {
        let loaded = self.loaded();
        let verdict = Verdict {
            generation: loaded.generation,
            image: image.to_owned(),
            ..Verdict::default()
        };
        self.conclude(&loaded, verdict, Err(deny(reason, message)), None, ask)
            .await
    }

    async fn conclude(
        &self,
        loaded: &Loaded,
        mut verdict: Verdict,
        outcome: Result<(), Denial>,
        digest: Option<&str>,
        ask: &Ask<'_>,
    ) -> Verdict {
        self.counters.verdicts.fetch_add(1, Ordering::Relaxed);
        let mode = loaded
            .policy
            .rules
            .iter()
            .find(|r| r.name == verdict.rule)
            .map_or(Mode::Enforce, |r| r.mode);
        verdict.mode = mode.as_str().to_owned();
        // A dry run (`pullguard verify`) enforces nothing, so it is no `pull.*` event that
        // alerting on rejections would fire on.
        let kind = match (&outcome, mode) {
            _ if ask.dry_run => "verify.dry_run",
            (Ok(()), _) => "pull.allowed",
            (Err(_), Mode::Audit) => "pull.audited",
            (Err(_), Mode::Enforce) => "pull.rejected",
        };
        match &outcome {
            Ok(()) => verdict.allowed = true,
            Err(d) => {
                verdict.allowed = mode == Mode::Audit;
                verdict.reason = d.reason.to_owned();
                verdict.message = d.message.clone();
            }
        }
        *self
            .counters
            .by_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(if verdict.reason.is_empty() {
                "allowed".to_owned()
            } else {
                verdict.reason.clone()
            })
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
        ev.mode = Some(verdict.mode.clone());
        ev.reason = (!verdict.reason.is_empty()).then(|| verdict.reason.clone());
        ev.dry_run = ask.dry_run;
        ev.source = Some(ask.source.to_owned());
        ev.namespace = ask.namespace.map(str::to_owned);
        verdict.event_id = ev.event_id.clone();
        // A rejection is on disk before it is answered; if it cannot be, the pull is
        // still refused (fail closed), and the failure is reported.
        let durable = matches!(kind, "pull.rejected" | "pull.audited");
        if let Err(e) = self.emit(ev, durable).await {
            if !verdict.allowed || mode == Mode::Enforce {
                verdict.allowed = false;
                if verdict.reason.is_empty() {
                    verdict.reason = "events_unwritable".to_owned();
                    verdict.message = format!("the verdict could not be recorded: {e}");
                }
            }
        }
        verdict
    }

    async fn decide(
        &self,
        loaded: &Loaded,
        image: &str,
        digest: Option<&str>,
        v: &mut Verdict,
    ) -> Result<(), Denial> {
        let reference =
            ImageRef::parse(image).map_err(|e| deny("invalid_reference", e.to_string()))?;
        v.image = reference.to_string();
        v.gun = reference.repository();
        let want = match (digest, &reference.digest) {
            (Some(d), Some(r)) => {
                let d = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| unsupported_digest(d))?;
                if d != r {
                    return Err(deny(
                        "digest_mismatch",
                        format!(
                            "the reference names sha256:{r} but containerd resolved sha256:{d}"
                        ),
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
        };
        let rule = loaded.policy.rule_for(&reference).ok_or_else(|| {
            deny(
                "no_matching_rule",
                format!("no policy rule matches {reference}; add a rule for it, or a catch-all rule with match = \"**\" (policy {})", loaded.file.display()),
            )
        })?;
        v.rule = rule.name.clone();
        match rule.require {
            Require::Any => Ok(()),
            Require::Reject => Err(deny(
                "rejected_by_policy",
                format!("rule {} rejects every image it matches", rule.name),
            )),
            Require::Signed => {
                v.trust_server = rule.trust_server.clone().unwrap_or_default();
                let mut last = deny(
                    "no_trust_data",
                    format!("rule {} accepts no kind of proof", rule.name),
                );
                for proof in &rule.proofs {
                    match proof {
                        Proof::NotaryV1 => match self
                            .notary_v1(loaded, rule, &reference, want.as_deref())
                            .await
                        {
                            Ok((m, timestamp_expires)) => {
                                v.timestamp_expires = timestamp_expires
                                    .and_then(|t| {
                                        t.format(&time::format_description::well_known::Rfc3339)
                                            .ok()
                                    })
                                    .unwrap_or_default();
                                v.digest = format!("sha256:{}", m.sha256);
                                v.role = m.role;
                                v.signers = m.signers;
                                return Ok(());
                            }
                            Err(d) => last = d,
                        },
                    }
                }
                Err(last)
            }
        }
    }

    fn pins_for(&self, loaded: &Loaded, rule: &Rule, gun: &str) -> (Pins, bool) {
        let mut pins = loaded
            .rule_pins
            .get(&rule.name)
            .cloned()
            .unwrap_or_default();
        let mut tofu = rule.tofu;
        if let Some(anchor) = loaded.anchors.for_gun(gun) {
            pins.certs.extend(anchor.pins.certs.iter().cloned());
            pins.key_ids.extend(anchor.pins.key_ids.iter().cloned());
            pins.cas.extend(anchor.pins.cas.iter().cloned());
            tofu |= anchor.tofu;
        }
        (pins, tofu)
    }

    async fn notary_v1(
        &self,
        loaded: &Loaded,
        rule: &Rule,
        image: &ImageRef,
        digest: Option<&str>,
    ) -> Result<(TargetMatch, Option<OffsetDateTime>), Denial> {
        let gun = image.repository();
        let server = rule.trust_server.as_deref().unwrap_or_default();
        let fetcher = loaded.fetchers.get(server).ok_or_else(|| {
            deny(
                "no_trust_data",
                format!(
                    "rule {} names trust server {server:?}, which is not configured",
                    rule.name
                ),
            )
        })?;
        let vkey = format!(
            "{}\u{0}{}\u{0}{server}\u{0}{gun}",
            loaded.generation, rule.name
        );
        let ttl = loaded.policy.daemon.cache_ttl;
        let cached = self.fresh_verified(&vkey, ttl);
        let repo = match cached {
            Some(r) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                r
            }
            None => {
                // One verification per repository and rule at a time; the others wait and
                // take its result.
                let flight = self.flight(&vkey);
                let _guard = flight.lock().await;
                let again = self.fresh_verified(&vkey, ttl);
                if let Some(r) = again {
                    return resolve(&r, rule, image, digest).map(|m| (m, timestamp_expiry(&r)));
                }
                let repo = Arc::new(
                    self.verify_repository(loaded, rule, server, fetcher, &gun)
                        .await?,
                );
                self.verified
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        vkey,
                        CachedVerdict {
                            repo: repo.clone(),
                            verified: Instant::now(),
                        },
                    );
                repo
            }
        };
        resolve(&repo, rule, image, digest).map(|m| (m, timestamp_expiry(&repo)))
    }

    async fn verify_repository(
        &self,
        loaded: &Loaded,
        rule: &Rule,
        server: &str,
        fetcher: &Fetcher,
        gun: &str,
    ) -> Result<VerifiedRepo, Denial> {
        let now = OffsetDateTime::now_utc();
        let phase = Instant::now();
        let state = self.state.clone();
        let g = gun.to_owned();
        let record = tokio::task::spawn_blocking(move || {
            state.check_clock(now).and_then(|()| state.load(&g))
        })
        .await
        .map_err(|e| deny("internal_error", e.to_string()))?
        .map_err(|e| deny(e.reason_code().unwrap_or("state_unreadable"), e.to_string()))?;
        let (pins, tofu) = self.pins_for(loaded, rule, gun);
        let pinned = !pins.certs.is_empty() || !pins.key_ids.is_empty() || !pins.cas.is_empty();
        if !pinned && !tofu && record.is_none() {
            return Err(deny(
                "root_not_pinned",
                key_store::Error::NotPinned {
                    gun: gun.to_owned(),
                }
                .to_string(),
            ));
        }
        let files = self
            .trust_files(
                loaded,
                rule,
                server,
                fetcher,
                gun,
                record.as_ref().map(|r| &r.trusted),
            )
            .await?;
        let loaded_and_fetched = phase.elapsed();
        // Verification is CPU work (a large targets.json takes tens of milliseconds):
        // off the async workers, so that other verdicts keep flowing meanwhile.
        let trusted = record.as_ref().map(|r| r.trusted.clone());
        let (g, max_age) = (gun.to_owned(), rule.max_timestamp_age);
        let repo = tokio::task::spawn_blocking(move || {
            let anchor = if pinned {
                RootAnchor::Pinned(&pins)
            } else {
                RootAnchor::FirstUse
            };
            let mut opts = VerifyOptions::new(&g, now, anchor);
            opts.state = trusted.as_ref();
            opts.max_timestamp_age = max_age;
            trust_core::verify(&files, &opts)
        })
        .await
        .map_err(|e| deny("internal_error", e.to_string()))?
        .map_err(|e| deny(reason_str(e.reason()), e.to_string()))?;
        let verified = phase.elapsed();
        if record.as_ref().map(|r| &r.trusted) != Some(&repo.state) {
            let tofu_rec = key_store::TofuRecord::if_first_use(&repo, now);
            let state = self.state.clone();
            let new_state = repo.state.clone();
            tokio::task::spawn_blocking(move || state.record_verified(new_state, now, tofu_rec))
                .await
                .map_err(|e| deny("internal_error", e.to_string()))?
                .map_err(|e| {
                    deny(
                        "state_unwritable",
                        format!("verified, but the trusted state cannot be saved: {e}"),
                    )
                })?;
        }
        // Where a cold verdict's time goes (PULLGUARD_LOG=debug), for slow-pull reports.
        tracing::debug!(
            gun,
            state_and_fetch_us = loaded_and_fetched.as_micros(),
            verify_us = (verified - loaded_and_fetched).as_micros(),
            record_us = (phase.elapsed() - verified).as_micros(),
            "repository verified"
        );
        Ok(repo)
    }

    /// Fresh trust data, one fetch per repository at a time; on failure, what the rule's
    /// `on_unreachable` allows.
    async fn trust_files(
        &self,
        loaded: &Loaded,
        rule: &Rule,
        server: &str,
        fetcher: &Fetcher,
        gun: &str,
        trusted: Option<&trust_core::TrustedState>,
    ) -> Result<Arc<RepoFiles>, Denial> {
        let key = format!("{server}\u{0}{gun}");
        let ttl = loaded.policy.daemon.cache_ttl;
        let fresh = |map: &HashMap<String, CachedFiles>| {
            map.get(&key)
                .filter(|c| c.fetched.elapsed() < ttl)
                .map(|c| c.files.clone())
        };
        if let Some(f) = fresh(&self.files.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(f);
        }
        let flight = self.flight(&key);
        let _guard = flight.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(f) = fresh(&self.files.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(f);
        }
        let trusted_root = trusted.and_then(|t| t.versions.get("root").copied());
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let fetched = fetcher.fetch(gun, trusted_root).await;
        let took = started.elapsed();
        tracing::debug!(gun, fetch_us = took.as_micros(), "trust data fetched");
        self.counters.fetch_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match fetched {
            Ok(files) => {
                let files = Arc::new(files);
                self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    key.clone(),
                    CachedFiles {
                        files: files.clone(),
                        fetched: Instant::now(),
                    },
                );
                self.persist(&key, &files);
                Ok(files)
            }
            Err(FetchError::NotFound { .. }) => Err(deny(
                "no_trust_data",
                format!("remote trust data does not exist for {gun} on {server}: the repository is not signed (sign it with `notary` or `docker trust sign`)"),
            )),
            Err(e) => {
                let mut ev = self.events.new_event("trust.fetch_failed", loaded.generation, e.to_string());
                ev.gun = Some(gun.to_owned());
                ev.rule = Some(rule.name.clone());
                ev.reason = Some("trust_server_unreachable".to_owned());
                let _ = self.emit(ev, false).await;
                self.note_error(&e.to_string());
                if rule.on_unreachable == OnUnreachable::Cached {
                    let mem = self.files.lock().unwrap_or_else(|p| p.into_inner()).get(&key).map(|c| c.files.clone());
                    let cached = match mem {
                        Some(f) => Some(f),
                        None => self.restore(&key).await,
                    };
                    if let Some(files) = cached {
                        // trust-core re-checks expiry and maximum age against the clock.
                        return Ok(files);
                    }
                }
                // Endless data is refused as `oversized` (the trust data code); every
                // other failure to get an answer is `trust_server_unreachable`.
                let code = if matches!(e, FetchError::TooLarge { .. }) {
                    "oversized"
                } else {
                    "trust_server_unreachable"
                };
                Err(deny(
                    code,
                    format!("{e}; rule {} says on_unreachable = {}", rule.name, match rule.on_unreachable {
                        OnUnreachable::Deny => "deny",
                        OnUnreachable::Cached => "cached, and no cached trust data is available",
                    }),
                ))
            }
        }
    }

    /// Keeps trust data on disk for `on_unreachable = "cached"` after a restart. In the
    /// background: it is not needed for this verdict, and losing it in a crash only
    /// means a refetch.
    fn persist(&self, key: &str, files: &RepoFiles) {
        let map: BTreeMap<&str, String> = files
            .names()
            .filter_map(|n| {
                files
                    .get(n)
                    .map(|b| (n, base64::engine::general_purpose::STANDARD.encode(b)))
            })
            .collect();
        let bytes = serde_json::to_vec(&map).unwrap_or_default();
        let state = self.state.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = state.save_cache(&key, &bytes) {
                tracing::warn!(cause = %e, "cannot keep trust data for restarts");
            }
        });
    }

    async fn restore(&self, key: &str) -> Option<Arc<RepoFiles>> {
        let state = self.state.clone();
        let k = key.to_owned();
        let bytes = tokio::task::spawn_blocking(move || state.load_cache(&k, MAX_CACHE_BLOB))
            .await
            .ok()?
            .ok()??;
        let map: BTreeMap<String, String> = serde_json::from_slice(&bytes).ok()?;
        let mut files = RepoFiles::new();
        for (name, b64) in map {
            files.insert(
                name,
                base64::engine::general_purpose::STANDARD.decode(b64).ok()?,
            );
        }
        Some(Arc::new(files))
    }
}

/// A digest pullguard cannot check: Notary signs SHA-256 only.
fn unsupported_digest(d: &str) -> Denial {
    let shown: String = d.chars().take(80).collect();
    deny(
        "invalid_reference",
        format!("digest {shown:?} is not sha256:<64 hex digits>; Notary trust data signs SHA-256 digests only, so nothing else can be checked"),
    )
}

fn timestamp_expiry(repo: &VerifiedRepo) -> Option<OffsetDateTime> {
    repo.roles.get("timestamp").map(|r| r.expires)
}

fn reason_str(r: trust_core::Reason) -> &'static str {
    r.as_str()
}

fn resolve(
    repo: &VerifiedRepo,
    rule: &Rule,
    image: &ImageRef,
    digest: Option<&str>,
) -> Result<TargetMatch, Denial> {
    let from_core = |e: trust_core::Error| deny(reason_str(e.reason()), e.to_string());
    if rule.roles.is_empty() {
        return match (&image.tag, digest) {
            (Some(tag), Some(d)) => repo
                .verify_tag_digest(tag, d, TagPolicy::Docker)
                .map_err(from_core),
            (Some(tag), None) => repo.resolve_tag(tag, TagPolicy::Docker).map_err(from_core),
            (None, Some(d)) => repo.find_digest(d, TagPolicy::Docker).map_err(from_core),
            (None, None) => Err(deny(
                "invalid_reference",
                "neither a tag nor a digest to check",
            )),
        };
    }
    // Rule-required signer roles: at least `roles_required` of them must sign the same digest.
    let mut matches: Vec<TargetMatch> = Vec::new();
    let mut misses = Vec::new();
    for role in &rule.roles {
        let one = std::slice::from_ref(role);
        let found = match (&image.tag, digest) {
            (Some(tag), Some(d)) => repo.verify_tag_digest(tag, d, TagPolicy::RequireRoles(one)),
            (Some(tag), None) => repo.resolve_tag(tag, TagPolicy::RequireRoles(one)),
            (None, Some(d)) => repo.find_digest(d, TagPolicy::RequireRoles(one)),
            (None, None) => {
                return Err(deny(
                    "invalid_reference",
                    "neither a tag nor a digest to check",
                ))
            }
        };
        match found {
            Ok(m) if matches.first().is_none_or(|f| f.sha256 == m.sha256) => matches.push(m),
            Ok(m) => misses.push(format!(
                "{role} signs a different digest (sha256:{})",
                m.sha256
            )),
            Err(e) => misses.push(e.to_string()),
        }
    }
    if matches.len() >= rule.roles_required {
        let mut m = matches.remove(0);
        for other in matches {
            m.role = format!("{}+{}", m.role, other.role);
            m.signers.extend(other.signers);
        }
        Ok(m)
    } else {
        Err(deny(
            "unknown_tag",
            format!(
                "rule {} needs {} of {} to sign it; {} did: {}",
                rule.name,
                rule.roles_required,
                rule.roles.join(", "),
                matches.len(),
                misses.join("; ")
            ),
        ))
    }
}
