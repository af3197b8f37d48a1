//! Notary v1 (Docker Content Trust) as a kind of proof: the repository's TUF metadata
//! from the rule's notary-server, verified by trust-core against the node's pins and
//! trusted state, then the tag or digest resolved under the rule's roles.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use api::codes::ReasonCode;
use base64::Engine as _;
use policy::{OnUnreachable, Proof, Rule};
use time::OffsetDateTime;
use trust_core::{Pins, RepoFiles, RootAnchor, VerifiedRepo, VerifyOptions};

use super::cache::{Flights, TtlCache};
use super::prepare::Loaded;
use super::proof::{ProofKind, Query, Vouch};
use super::{deny, reason_of, Denial, Engine};
use notary_client::{FetchError, Fetcher};

/// Repositories kept in memory at most, for each of the two caches.
const CACHE_MAX: usize = 10_000;
/// The largest trust-data record read back from disk.
const MAX_CACHE_BLOB: u64 = 200 * 1024 * 1024;

/// The Notary v1 proof, with its caches: fetched files per trust server and repository,
/// verified repositories per policy generation, rule and repository.
pub(crate) struct NotaryV1 {
    files: TtlCache<Arc<RepoFiles>>,
    verified: TtlCache<Arc<VerifiedRepo>>,
    flights: Flights,
}

impl Default for NotaryV1 {
    fn default() -> NotaryV1 {
        NotaryV1 {
            files: TtlCache::new(CACHE_MAX),
            verified: TtlCache::new(CACHE_MAX),
            flights: Flights::default(),
        }
    }
}

impl ProofKind for NotaryV1 {
    async fn check(&self, engine: &Engine, q: &Query<'_>) -> Result<Vouch, Denial> {
        let (loaded, rule) = (q.loaded, q.rule);
        let gun = q.image.repository();
        let server = rule.trust_server.as_deref().unwrap_or_default();
        let fetcher = loaded.fetchers.get(server).ok_or_else(|| {
            deny(
                ReasonCode::NoTrustData,
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
        let repo = match self.verified.fresh(&vkey, ttl) {
            Some(r) => {
                engine.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                r
            }
            None => {
                // One verification per repository and rule at a time; the others wait and
                // take its result.
                let _flight = self.flights.enter(&vkey).await;
                match self.verified.fresh(&vkey, ttl) {
                    Some(r) => r,
                    None => {
                        let at = Repository {
                            engine,
                            loaded,
                            rule,
                            server,
                            fetcher,
                            gun: &gun,
                        };
                        let repo = Arc::new(self.verify_repository(&at).await?);
                        self.verified.insert(vkey, repo.clone());
                        repo
                    }
                }
            }
        };
        let m = repo
            .resolve_pull(
                q.image.tag.as_deref(),
                q.sha256,
                &rule.roles,
                rule.roles_required,
            )
            .map_err(|e| deny(reason_of(e.reason()), e.to_string()))?;
        Ok(Vouch {
            proof: Proof::NotaryV1,
            digest: format!("sha256:{}", m.sha256),
            role: m.role,
            signers: m.signers,
            expires: repo.roles.get("timestamp").map(|r| r.expires),
            let_through: Vec::new(),
        })
    }

    fn policy_changed(&self) {
        self.verified.clear();
    }

    fn cached(&self) -> usize {
        self.files.len()
    }
}

/// One repository as one rule sees it: what a verification and its fetch work from.
struct Repository<'a> {
    engine: &'a Engine,
    loaded: &'a Loaded,
    rule: &'a Rule,
    server: &'a str,
    fetcher: &'a Fetcher,
    gun: &'a str,
}

impl NotaryV1 {
    fn pins_for(loaded: &Loaded, rule: &Rule, gun: &str) -> (Pins, bool) {
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

    async fn verify_repository(&self, at: &Repository<'_>) -> Result<VerifiedRepo, Denial> {
        let (engine, loaded, rule, gun) = (at.engine, at.loaded, at.rule, at.gun);
        let now = OffsetDateTime::now_utc();
        let phase = Instant::now();
        let state = engine.state.clone();
        let g = gun.to_owned();
        let prior = tokio::task::spawn_blocking(move || state.prior(&g, now))
            .await
            .map_err(|e| deny(ReasonCode::InternalError, e.to_string()))?
            .map_err(|e| {
                deny(
                    e.reason_code().unwrap_or(ReasonCode::StateUnreadable),
                    e.to_string(),
                )
            })?;
        let (pins, tofu) = NotaryV1::pins_for(loaded, rule, gun);
        let pinned = !pins.certs.is_empty() || !pins.key_ids.is_empty() || !pins.cas.is_empty();
        if !pinned && !tofu && prior.record.is_none() {
            return Err(deny(
                ReasonCode::RootNotPinned,
                key_store::Error::NotPinned {
                    gun: gun.to_owned(),
                }
                .to_string(),
            ));
        }
        let files = self.trust_files(at, prior.trusted_root()).await?;
        let fetched = phase.elapsed();
        // Verification is CPU work (a large targets.json takes tens of milliseconds) and
        // recording is disk work: off the async workers, so that other verdicts flow.
        let state = engine.state.clone();
        let (g, max_age) = (gun.to_owned(), rule.max_timestamp_age);
        let verified = tokio::task::spawn_blocking(move || {
            let anchor = if pinned {
                RootAnchor::Pinned(&pins)
            } else {
                RootAnchor::FirstUse
            };
            let mut opts = VerifyOptions::new(&g, prior.now, anchor);
            opts.max_timestamp_age = max_age;
            state.verify_and_record(&prior, &files, opts)
        })
        .await
        .map_err(|e| deny(ReasonCode::InternalError, e.to_string()))?
        .map_err(|e| match e {
            key_store::Error::Untrusted(e) => deny(reason_of(e.reason()), e.to_string()),
            e => deny(
                ReasonCode::StateUnwritable,
                format!("verified, but the trusted state cannot be saved: {e}"),
            ),
        })?;
        let record = verified.recorded_in.unwrap_or_default();
        let repo = verified.repo;
        // Where a cold verdict's time goes (PULLGUARD_LOG=debug), for slow-pull reports.
        tracing::debug!(
            gun,
            state_and_fetch_us = fetched.as_micros(),
            verify_us = (phase.elapsed() - fetched - record).as_micros(),
            record_us = record.as_micros(),
            "repository verified"
        );
        Ok(repo)
    }

    /// Fresh trust data, one fetch per repository at a time; on failure, what the rule's
    /// `on_unreachable` allows.
    async fn trust_files(
        &self,
        at: &Repository<'_>,
        trusted_root: Option<u64>,
    ) -> Result<Arc<RepoFiles>, Denial> {
        let (engine, loaded, rule, server, gun) =
            (at.engine, at.loaded, at.rule, at.server, at.gun);
        let key = format!("{server}\u{0}{gun}");
        let ttl = loaded.policy.daemon.cache_ttl;
        if let Some(f) = self.files.fresh(&key, ttl) {
            return Ok(f);
        }
        let _flight = self.flights.enter(&key).await;
        // Someone else may have fetched while we waited.
        if let Some(f) = self.files.fresh(&key, ttl) {
            return Ok(f);
        }
        engine.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let fetched = at.fetcher.fetch(gun, trusted_root).await;
        let took = started.elapsed();
        tracing::debug!(gun, fetch_us = took.as_micros(), "trust data fetched");
        engine.counters.fetch_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match fetched {
            Ok(files) => {
                let files = Arc::new(files);
                self.files.insert(key.clone(), files.clone());
                persist(engine, &key, &files);
                Ok(files)
            }
            Err(FetchError::NotFound { .. }) => Err(deny(
                ReasonCode::NoTrustData,
                format!("remote trust data does not exist for {gun} on {server}: the repository is not signed (sign it with `notary` or `docker trust sign`)"),
            )),
            Err(e) => {
                let mut ev = engine.events.new_event(api::codes::EventKind::TrustFetchFailed, loaded.generation, e.to_string());
                ev.gun = Some(gun.to_owned());
                ev.rule = Some(rule.name.clone());
                ev.reason = Some(ReasonCode::TrustServerUnreachable.as_str().to_owned());
                let _ = engine.emit(ev, false).await;
                engine.note_error(&e.to_string());
                if rule.on_unreachable == OnUnreachable::Cached {
                    let cached = match self.files.any_age(&key) {
                        Some(f) => Some(f),
                        None => restore(engine, &key).await,
                    };
                    if let Some(files) = cached {
                        // trust-core re-checks expiry and maximum age against the clock.
                        return Ok(files);
                    }
                }
                // Endless data is refused as `oversized` (the trust data code); every
                // other failure to get an answer is `trust_server_unreachable`.
                let code = if matches!(e, FetchError::TooLarge { .. }) {
                    ReasonCode::Oversized
                } else {
                    ReasonCode::TrustServerUnreachable
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
}

/// Keeps trust data on disk for `on_unreachable = "cached"` after a restart. In the
/// background: it is not needed for this verdict, and losing it in a crash only means a
/// refetch.
fn persist(engine: &Engine, key: &str, files: &RepoFiles) {
    let map: BTreeMap<&str, String> = files
        .names()
        .filter_map(|n| {
            files
                .get(n)
                .map(|b| (n, base64::engine::general_purpose::STANDARD.encode(b)))
        })
        .collect();
    let bytes = serde_json::to_vec(&map).unwrap_or_default();
    let state = engine.state.clone();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = state.save_cache(&key, &bytes) {
            tracing::warn!(cause = %e, "cannot keep trust data for restarts");
        }
    });
}

async fn restore(engine: &Engine, key: &str) -> Option<Arc<RepoFiles>> {
    let state = engine.state.clone();
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
