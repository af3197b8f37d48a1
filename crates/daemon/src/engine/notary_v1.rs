//! Notary v1 (Docker Content Trust) as a kind of proof: the repository's TUF metadata
//! from the rule's notary-server, verified by trust-core against the node's pins and
//! trusted state, then the tag or digest resolved under the rule's roles.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use api::codes::ReasonCode;
use base64::Engine as _;
use key_store::TrustAnchors;
use policy::{Policy, Proof, Rule};
use time::OffsetDateTime;
use trust_core::{Pins, RepoFiles, RootAnchor, VerifiedRepo, VerifyOptions};

use super::lookup::{nothing_else, About, Counted, Lookups, Miss, Outage};
use super::prepare::Loaded;
use super::proof::{ProofKind, Query, Slot as _, Vouch};
use super::{deny, reason_of, Denial, Engine};
use notary_client::{FetchError, Fetcher};

mod kept;
use kept::{fresh_enough, not_expired};

/// Repositories kept in memory at most, for each of the two caches.
const CACHE_MAX: usize = 10_000;
/// The largest trust-data record read back from disk.
const MAX_CACHE_BLOB: u64 = 200 * 1024 * 1024;

/// The Notary v1 proof, with its caches: fetched files per trust server and repository,
/// verified repositories per policy generation, rule and repository.
pub(crate) struct NotaryV1 {
    files: Lookups<Arc<RepoFiles>>,
    verified: Lookups<Arc<VerifiedRepo>>,
    /// Trust data fetched and not yet kept on disk, by trust server and repository:
    /// kept once it has verified (see [`persist`]).
    unsaved: std::sync::Mutex<std::collections::HashMap<String, Arc<RepoFiles>>>,
}

impl Default for NotaryV1 {
    fn default() -> NotaryV1 {
        NotaryV1 {
            // Trust data is an input of a verification: fetching it is what `fetches`
            // counts, finding it fresh answers no verdict.
            files: Lookups::new(
                CACHE_MAX,
                Counted {
                    hits: false,
                    fetches: true,
                },
            ),
            // A verified repository answers verdicts; verifying it is no fetch (its
            // trust data's lookup is).
            verified: Lookups::new(
                CACHE_MAX,
                Counted {
                    hits: true,
                    fetches: false,
                },
            ),
            unsaved: std::sync::Mutex::default(),
        }
    }
}

/// What Notary v1 prepares once per policy.
#[derive(Default)]
pub(crate) struct NotaryTrust {
    /// A client per trust server, by name.
    pub(crate) fetchers: BTreeMap<String, Fetcher>,
    /// The settings each client was built from, to keep it across a reload.
    servers: BTreeMap<String, policy::TrustServer>,
    /// The keys directory's pins and TOFU grants.
    anchors: TrustAnchors,
    /// Each rule's own root pins.
    rule_pins: BTreeMap<String, Pins>,
}

impl ProofKind for NotaryV1 {
    type Prepared = NotaryTrust;

    fn prepare(
        policy: &Policy,
        previous: Option<&NotaryTrust>,
        problems: &mut Vec<String>,
    ) -> NotaryTrust {
        NotaryTrust {
            fetchers: fetchers(policy, previous, problems),
            servers: policy.trust_servers.clone(),
            anchors: anchors(&policy.daemon.keys_dir, problems),
            rule_pins: rule_pins(policy, problems),
        }
    }

    async fn check(&self, engine: &Engine, q: &Query<'_>) -> Result<Vouch, Denial> {
        let (loaded, rule) = (q.loaded, q.rule);
        let gun = q.image.repository();
        let server = rule.trust_server.as_deref().unwrap_or_default();
        let fetcher = NotaryV1::prepared(loaded)
            .fetchers
            .get(server)
            .ok_or_else(|| {
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
        let at = Repository {
            engine,
            loaded,
            rule,
            server,
            fetcher,
            gun: &gun,
        };
        let verify = || async {
            self.verify_repository(&at)
                .await
                .map(Arc::new)
                .map_err(Miss::Refused)
        };
        // A verification refuses or vouches; only the trust data's fetch inside it can
        // meet an outage, and says so there. A kept one that no longer holds (a role
        // expired, the timestamp aged past the rule) is dropped and verified once more:
        // the publisher may have published since.
        let mut again = false;
        let repo = loop {
            let repo = self
                .verified
                .get(
                    engine,
                    &at.about(),
                    vkey.clone(),
                    loaded.policy.daemon.cache_ttl,
                    &verify,
                    nothing_else,
                )
                .await?;
            let now = OffsetDateTime::now_utc();
            match not_expired(&repo, now)
                .and_then(|_| fresh_enough(&repo, rule.max_timestamp_age, now))
            {
                Ok(()) => break repo,
                Err(_) if !again => {
                    self.verified
                        .forget_if(&vkey, |kept| Arc::ptr_eq(kept, &repo));
                    again = true;
                }
                Err(refused) => return Err(refused),
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

    fn asks(rule: &Rule) -> Option<&str> {
        rule.trust_server.as_deref()
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

impl Repository<'_> {
    fn about(&self) -> About<'_> {
        About {
            proof: Proof::NotaryV1,
            rule: self.rule,
            generation: self.loaded.generation,
            repository: self.gun,
            nothing_kept: "no cached trust data is available",
        }
    }
}

impl NotaryV1 {
    fn pins_for(loaded: &Loaded, rule: &Rule, gun: &str) -> (Pins, bool) {
        let trust = NotaryV1::prepared(loaded);
        let mut pins = trust.rule_pins.get(&rule.name).cloned().unwrap_or_default();
        let mut tofu = rule.tofu;
        if let Some(anchor) = trust.anchors.for_gun(gun) {
            pins.certs.extend(anchor.pins.certs.iter().cloned());
            pins.key_ids.extend(anchor.pins.key_ids.iter().cloned());
            pins.cas.extend(anchor.pins.cas.iter().cloned());
            // The repository's own anchor decides first use, not the rule: an anchor
            // whose certificate did not load (skipped, with a warning) or that pins
            // nothing on purpose must refuse its repositories, never leave them to a
            // rule's `tofu = true`, which would trust whatever root the server serves.
            tofu = anchor.tofu;
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
        let checked = files.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let anchor = if pinned {
                RootAnchor::Pinned(&pins)
            } else {
                RootAnchor::FirstUse
            };
            let mut opts = VerifyOptions::new(&g, prior.now, anchor);
            opts.max_timestamp_age = max_age;
            state.verify_and_record_clock_after(&prior, &checked, opts)
        })
        .await
        .map_err(|e| deny(ReasonCode::InternalError, e.to_string()))?
        .map_err(|e| match e {
            key_store::Error::Untrusted(e) => {
                // Data that does not verify is not kept: a server could otherwise fill
                // memory with it, a fetch's worth per repository name it is asked about.
                self.forget_files(at, &files);
                deny(reason_of(e.reason()), e.to_string())
            }
            e => deny(
                ReasonCode::StateUnwritable,
                format!("verified, but the trusted state cannot be saved: {e}"),
            ),
        })?;
        if let Some(clock) = verified.clock_due {
            // The node's clock record may lag a minute by design (clock checks allow
            // five): its two fsyncs run beside the answer, not before it. The
            // repository's record, which guards against rollback, is already durable.
            let state = engine.state.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = clock.write(&state) {
                    tracing::warn!(error = %e, "the node's clock record could not be written");
                }
            });
        }
        let record = verified.recorded_in.unwrap_or_default();
        let repo = verified.repo;
        self.keep_verified(engine, at, &files);
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

    /// Keeps `files` on disk if they are the ones last fetched for this repository and
    /// not yet kept: only trust data that verified replaces what a restart falls back
    /// on, and only after the verdict's own record (its disk and CPU work would
    /// otherwise compete with the verification and the record: a 10,000-tag
    /// targets.json is 2 MB to encode, write and sync).
    fn keep_verified(&self, engine: &Engine, at: &Repository<'_>, files: &Arc<RepoFiles>) {
        let key = files_key(at.fetcher.url(), at.gun);
        if self.take_unsaved(&key, files) {
            persist(engine, &key, files);
        }
    }

    /// Drops `files` from memory if they are still what is kept for the repository.
    fn forget_files(&self, at: &Repository<'_>, files: &Arc<RepoFiles>) {
        let key = files_key(at.fetcher.url(), at.gun);
        self.files.forget_if(&key, |kept| Arc::ptr_eq(kept, files));
        self.take_unsaved(&key, files);
    }

    /// Takes `files` out of those fetched and not yet kept on disk, if they are still
    /// the ones listed under `key` (a later fetch may have replaced them); true if so.
    fn take_unsaved(&self, key: &str, files: &Arc<RepoFiles>) -> bool {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        let listed = unsaved.get(key).is_some_and(|f| Arc::ptr_eq(f, files));
        if listed {
            unsaved.remove(key);
        }
        listed
    }

    /// Fresh trust data, one fetch per repository at a time; on failure, what the rule's
    /// `on_unreachable` allows (trust data kept in memory or on disk: trust-core re-checks
    /// its expiry and maximum age against the clock).
    async fn trust_files(
        &self,
        at: &Repository<'_>,
        trusted_root: Option<u64>,
    ) -> Result<Arc<RepoFiles>, Denial> {
        let (engine, server, gun) = (at.engine, at.server, at.gun);
        let key = files_key(at.fetcher.url(), gun);
        let fetch = || async {
            let started = Instant::now();
            let fetched = at.fetcher.fetch(gun, trusted_root).await;
            tracing::debug!(
                gun,
                fetch_us = started.elapsed().as_micros(),
                "trust data fetched"
            );
            match fetched {
                Ok(files) => {
                    let files = Arc::new(files);
                    let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
                    if unsaved.len() >= CACHE_MAX {
                        unsaved.clear();
                    }
                    unsaved.insert(key.clone(), files.clone());
                    Ok(files)
                }
                Err(FetchError::NotFound { .. }) => Err(Miss::Refused(deny(
                    ReasonCode::NoTrustData,
                    format!("remote trust data does not exist for {gun} on {server}: the repository is not signed (sign it with `notary` or `docker trust sign`)"),
                ))),
                // Endless data is refused as `oversized` (the trust data code); every
                // other failure to get an answer is `trust_server_unreachable`.
                Err(e) => Err(Miss::Unreachable(Outage {
                    code: if matches!(e, FetchError::TooLarge { .. } | FetchError::TooMuch { .. }) {
                        ReasonCode::Oversized
                    } else {
                        ReasonCode::TrustServerUnreachable
                    },
                    message: e.to_string(),
                })),
            }
        };
        self.files
            .get(
                engine,
                &at.about(),
                key.clone(),
                at.loaded.policy.daemon.cache_ttl,
                fetch,
                || restore(engine, &key),
            )
            .await
    }
}

/// The key of a repository's trust data: in memory, on disk and not yet kept. By the
/// trust server's URL, not its name in the policy: a reload that points the name
/// elsewhere must not have data fetched from the old server answer for the new one.
fn files_key(url: &str, gun: &str) -> String {
    format!("{url}\u{0}{gun}")
}

/// Keeps trust data on disk for `on_unreachable = "cached"` after a restart. In the
/// background, encoding included (for a 10,000-tag repository that is megabytes of
/// base64 and JSON, which the verdict waited for when it was done here): it is not
/// needed for this verdict, and losing it in a crash only means a refetch.
fn persist(engine: &Engine, key: &str, files: &Arc<RepoFiles>) {
    let state = engine.state.clone();
    let key = key.to_owned();
    let files = files.clone();
    tokio::task::spawn_blocking(move || {
        let map: BTreeMap<&str, String> = files
            .names()
            .filter_map(|n| {
                files
                    .get(n)
                    .map(|b| (n, base64::engine::general_purpose::STANDARD.encode(b)))
            })
            .collect();
        let bytes = serde_json::to_vec(&map).unwrap_or_default();
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

/// A client per trust server; a reload keeps those whose settings did not change and
/// that use the system's roots (building one loads the system's CA roots, which
/// dominates a reload). One pinned to a `ca_file` is built again: the file is read
/// anew, so a pin replaced at the same path takes effect on reload.
fn fetchers(
    policy: &Policy,
    previous: Option<&NotaryTrust>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Fetcher> {
    let mut fetchers = BTreeMap::new();
    for (name, server) in &policy.trust_servers {
        // A CA file is a pin of the trust server's TLS: whoever can replace it can put
        // a server of theirs in its place, whose root a first use (tofu) then trusts.
        // (One that is not there is the client's to report, as it reads it.)
        if let Some(ca) = server.ca_file.as_ref().filter(|ca| ca.exists()) {
            if let Err(e) = key_store::check_secure(ca) {
                problems.push(format!("trust server {name}: ca_file: {e}"));
                continue;
            }
        }
        let kept = previous.and_then(|p| {
            (p.servers.get(name) == Some(server) && server.ca_file.is_none())
                .then(|| p.fetchers.get(name).cloned())
                .flatten()
        });
        match kept.map_or_else(
            || Fetcher::new(name, &server.url, server.ca_file.as_deref(), server.timeout),
            Ok,
        ) {
            Ok(f) => {
                fetchers.insert(name.clone(), f);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    fetchers
}

/// The keys directory's pins and TOFU grants.
fn anchors(keys_dir: &Path, problems: &mut Vec<String>) -> TrustAnchors {
    match TrustAnchors::load(keys_dir) {
        Ok((mut anchors, warnings)) => {
            for w in warnings {
                tracing::warn!(warning = %w, "trust anchor skipped");
            }
            let (renamed, refused) = anchors.normalise(policy::anchor_repository);
            for r in renamed {
                tracing::warn!("keys_dir {}: {r}", keys_dir.display());
            }
            for r in refused {
                problems.push(format!(
                    "keys_dir {}: {r}",
                    keys_dir.join(key_store::INDEX).display()
                ));
            }
            anchors
        }
        Err(e) => {
            problems.push(format!("keys_dir {}: {e}", keys_dir.display()));
            TrustAnchors::default()
        }
    }
}

/// Each rule's own root pins (certificates, key IDs, CAs), read from their files.
fn rule_pins(policy: &Policy, problems: &mut Vec<String>) -> BTreeMap<String, Pins> {
    let keys_dir = &policy.daemon.keys_dir;
    let mut rule_pins = BTreeMap::new();
    for rule in &policy.rules {
        let mut pins = Pins {
            key_ids: rule.root_key_ids.clone(),
            ..Pins::default()
        };
        for (files, is_ca, key) in [
            (&rule.root_certs, false, "root_certs"),
            (&rule.root_cas, true, "root_cas"),
        ] {
            for f in files {
                let path = if f.is_absolute() {
                    f.clone()
                } else {
                    keys_dir.join(f)
                };
                let cert = super::prepare::read_trusted(&path, 1024 * 1024).and_then(|b| {
                    trust_core::keys::parse_pinned_cert(&b).map_err(|e| e.to_string())
                });
                match cert {
                    Ok(cert) if is_ca => pins.cas.push(cert),
                    Ok(cert) => pins.certs.push(cert.der),
                    Err(e) => {
                        problems.push(format!("rule {}: {key} {}: {e}", rule.name, path.display()))
                    }
                }
            }
        }
        rule_pins.insert(rule.name.clone(), pins);
    }
    rule_pins
}
