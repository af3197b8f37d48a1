//! What one verdict may spend reading registries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, MAX_PAGES, MAX_REFERRERS};

/// What one verdict may spend reading a registry: requests, bytes and wall time. A
/// flood of referrers, or a registry that answers slowly on purpose, ends the lookup
/// with [`Error::Budget`] instead of holding the verdict.
#[derive(Debug)]
pub struct Budget {
    requests: AtomicUsize,
    bytes: AtomicUsize,
    deadline: Instant,
}

impl Budget {
    /// Requests one verdict may make: for each signature considered, its manifest and
    /// blob; every page of referrers; and the first asks, made together (the classic
    /// tag, the referrers API, its fallback tag, Notation's image manifest), each of
    /// which may meet a registry's challenge and fetch a token before its token is
    /// cached (three requests each); and a few for a mirror passed over.
    pub const REQUESTS: usize = 2 * MAX_REFERRERS + MAX_PAGES + 3 * 4 + 4;
    /// Bytes one verdict may read.
    pub const BYTES: usize = 32 << 20;
    /// Wall time one verdict may take.
    pub const TIME: Duration = Duration::from_secs(20);

    /// The budget of one verdict, starting now.
    pub fn per_verdict() -> Budget {
        Budget::new(Budget::REQUESTS, Budget::BYTES, Budget::TIME)
    }

    /// A budget of `requests`, `bytes` and `time` from now.
    pub fn new(requests: usize, bytes: usize, time: Duration) -> Budget {
        Budget {
            requests: AtomicUsize::new(requests),
            bytes: AtomicUsize::new(bytes),
            deadline: Instant::now() + time,
        }
    }

    pub(crate) fn exceeded(what: &str, url: &str) -> Error {
        Error::Budget {
            url: url.to_owned(),
            what: what.to_owned(),
        }
    }

    /// One request more, and the time left for it.
    pub(crate) fn request(&self, url: &str) -> Result<Duration, Error> {
        take(&self.requests, 1).ok_or_else(|| {
            Budget::exceeded(&format!("more than {} requests", Budget::REQUESTS), url)
        })?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Budget::exceeded("more time than a verdict may take", url));
        }
        Ok(left)
    }

    pub(crate) fn bytes(&self, n: usize, url: &str) -> Result<(), Error> {
        take(&self.bytes, n)
            .map(|_| ())
            .ok_or_else(|| Budget::exceeded(&format!("more than {} bytes", Budget::BYTES), url))
    }
}

/// Subtracts `n` from `counter` if it holds that much.
pub(crate) fn take(counter: &AtomicUsize, n: usize) -> Option<usize> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(n)
        })
        .ok()
}
