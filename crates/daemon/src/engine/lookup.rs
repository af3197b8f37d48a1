//! The one sequence every kind of proof follows to get what it needs from elsewhere (trust
//! data from a notary-server, signatures from a registry) and to keep what it verified:
//! a fresh cached value, else one lookup per key at a time (the others wait and take its
//! result), counted; a lookup that got no answer becomes a `trust.fetch_failed` event and
//! then what the rule's `on_unreachable` allows — a value kept from earlier, or a refusal
//! saying which setting decided it.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use api::codes::{EventKind, ReasonCode};
use policy::{OnUnreachable, Proof, Rule};

use super::cache::{Flights, TtlCache};
use super::{deny, Denial, Engine};

/// Why a lookup gave nothing: an answer that refuses, or no answer at all.
pub(crate) enum Miss {
    /// The other side answered, and the answer refuses (never served from the cache).
    Refused(Denial),
    /// No answer: subject to the rule's `on_unreachable`.
    Unreachable(Outage),
}

impl From<Denial> for Miss {
    fn from(d: Denial) -> Miss {
        Miss::Refused(d)
    }
}

/// A lookup that got no answer: what happened, and the code a refusal carries.
pub(crate) struct Outage {
    pub(crate) code: ReasonCode,
    pub(crate) message: String,
}

/// What a lookup is for, for its event and its refusal.
pub(crate) struct About<'a> {
    pub(crate) proof: Proof,
    pub(crate) rule: &'a Rule,
    pub(crate) generation: u64,
    /// The repository (the event's `gun`).
    pub(crate) repository: &'a str,
    /// What `on_unreachable = "cached"` found missing, for the refusal: "no cached trust
    /// data is available".
    pub(crate) nothing_kept: &'static str,
}

/// Which of status's figures a sort of lookup counts in.
#[derive(Clone, Copy)]
pub(crate) struct Counted {
    /// A fresh value answers a verdict on its own (it is what vouched, not an input of
    /// a verification): a hit counts in `cache_hits`, which status shows as verdicts
    /// served from cache.
    pub(crate) hits: bool,
    /// A lookup is a request to another server: counted in `fetches` and its time.
    pub(crate) fetches: bool,
}

/// One kind's lookups of one sort: a bounded cache by key and single flight.
pub(crate) struct Lookups<T> {
    kept: TtlCache<T>,
    flights: Flights,
    counted: Counted,
}

impl<T: Clone> Lookups<T> {
    pub(crate) fn new(max: usize, counted: Counted) -> Lookups<T> {
        Lookups {
            kept: TtlCache::new(max),
            flights: Flights::default(),
            counted,
        }
    }

    /// The value for `key`: fresh from the cache (younger than `ttl`), or from `fetch`,
    /// one at a time per key. When `fetch` gets no answer and the rule says
    /// `on_unreachable = "cached"`, a value kept however old (in memory, else from
    /// `stale`) answers; the caller's verification re-checks it against the clock.
    pub(crate) async fn get<F, Fut, S, SFut>(
        &self,
        engine: &Engine,
        about: &About<'_>,
        key: String,
        ttl: Duration,
        fetch: F,
        stale: S,
    ) -> Result<T, Denial>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Miss>>,
        S: FnOnce() -> SFut,
        SFut: Future<Output = Option<T>>,
    {
        if let Some(v) = self.kept.fresh(&key, ttl) {
            if self.counted.hits {
                engine.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(v);
        }
        let _flight = self.flights.enter(&key).await;
        // Someone else may have looked it up while we waited.
        if let Some(v) = self.kept.fresh(&key, ttl) {
            return Ok(v);
        }
        let started = Instant::now();
        let found = fetch().await;
        if self.counted.fetches {
            engine.counters.fetches.fetch_add(1, Ordering::Relaxed);
            engine.counters.fetch_micros.fetch_add(
                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        match found {
            Ok(v) => {
                self.kept.insert(key, v.clone());
                Ok(v)
            }
            Err(Miss::Refused(d)) => Err(d),
            Err(Miss::Unreachable(outage)) => {
                self.unanswered(engine, about, &key, outage, stale).await
            }
        }
    }

    async fn unanswered<S, SFut>(
        &self,
        engine: &Engine,
        about: &About<'_>,
        key: &str,
        outage: Outage,
        stale: S,
    ) -> Result<T, Denial>
    where
        S: FnOnce() -> SFut,
        SFut: Future<Output = Option<T>>,
    {
        let rule = about.rule;
        let mut ev = engine.events.new_event(
            EventKind::TrustFetchFailed,
            about.generation,
            outage.message.clone(),
        );
        ev.gun = Some(about.repository.to_owned());
        ev.rule = Some(rule.name.clone());
        ev.proof = vec![about.proof];
        ev.reason = Some(outage.code);
        let _ = engine.emit(ev, false).await;
        engine.note_error(&outage.message);
        if rule.on_unreachable == OnUnreachable::Cached {
            let kept = match self.kept.any_age(key) {
                Some(v) => Some(v),
                None => stale().await,
            };
            if let Some(v) = kept {
                return Ok(v);
            }
        }
        Err(deny(
            outage.code,
            format!(
                "{}; rule {} says on_unreachable = {}",
                outage.message,
                rule.name,
                match rule.on_unreachable {
                    OnUnreachable::Deny => "deny".to_owned(),
                    OnUnreachable::Cached => format!("cached, and {}", about.nothing_kept),
                }
            ),
        ))
    }

    /// Forgets every value (a new policy is in force).
    pub(crate) fn clear(&self) {
        self.kept.clear();
    }

    /// Forgets the value for `key` if `which` says it is the one meant (another may have
    /// replaced it since).
    pub(crate) fn forget_if(&self, key: &str, which: impl Fn(&T) -> bool) {
        self.kept.remove_if(key, which);
    }

    /// Values kept.
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }
}

/// No value kept elsewhere: for lookups whose only memory is the cache.
pub(crate) async fn nothing_else<T>() -> Option<T> {
    None
}
