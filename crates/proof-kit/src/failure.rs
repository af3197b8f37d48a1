//! A failure of one signature (its reason and one sentence), and the set that keeps the
//! most telling of several.

use std::fmt;

/// A format's reasons, declared from the least to the most telling: the derived order is
/// the rank, so two reasons can never tie (when several signatures are present and none
/// vouches, the one that came closest is reported: a valid signature over another
/// digest says more than one by an unknown signer, which says more than a missing one).
pub trait Ranked: Copy + Ord {
    /// The reason when there was no candidate at all.
    const NONE: Self;
    /// What a candidate is called in the "no signature" sentence: "cosign signature".
    const CANDIDATE: &'static str;
}

/// One failure: why, and one sentence saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<R> {
    /// Why.
    pub reason: R,
    /// What, for people.
    pub message: String,
}

impl<R> Failure<R> {
    /// A failure for `reason`.
    pub fn new(reason: R, message: impl Into<String>) -> Failure<R> {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

impl<R> fmt::Display for Failure<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<R: fmt::Debug> std::error::Error for Failure<R> {}

/// The most telling of several candidates' failures.
#[derive(Debug)]
pub struct Failures<R> {
    closest: Option<Failure<R>>,
}

impl<R> Default for Failures<R> {
    fn default() -> Failures<R> {
        Failures { closest: None }
    }
}

impl<R: Ranked> Failures<R> {
    /// Records one candidate's failure; the first of equally telling ones is kept.
    pub fn add(&mut self, e: Failure<R>) {
        if self.closest.as_ref().is_none_or(|c| e.reason > c.reason) {
            self.closest = Some(e);
        }
    }

    /// The failure to report, or [`Ranked::NONE`] saying there was no candidate for
    /// `what`.
    pub fn into_error(self, what: &str) -> Failure<R> {
        self.closest
            .unwrap_or_else(|| Failure::new(R::NONE, format!("no {} for {what}", R::CANDIDATE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum R {
        None,
        Bad,
        Mismatch,
    }

    impl Ranked for R {
        const NONE: R = R::None;
        const CANDIDATE: &'static str = "test signature";
    }

    #[test]
    fn the_most_telling_failure_is_kept_in_any_order_and_the_first_of_equals() {
        for order in [[R::Bad, R::Mismatch, R::Bad], [R::Mismatch, R::Bad, R::Bad]] {
            let mut f = Failures::default();
            for (n, r) in order.into_iter().enumerate() {
                f.add(Failure::new(r, n.to_string()));
            }
            assert_eq!(f.into_error("x").reason, R::Mismatch);
        }
        let mut f = Failures::default();
        f.add(Failure::new(R::Bad, "first"));
        f.add(Failure::new(R::Bad, "second"));
        assert_eq!(f.into_error("x").message, "first");
    }

    #[test]
    fn no_candidate_is_the_none_reason_naming_what_was_looked_for() {
        let e = Failures::<R>::default().into_error("registry.example.com/app@sha256:ab");
        assert_eq!(e.reason, R::None);
        assert_eq!(
            e.to_string(),
            "no test signature for registry.example.com/app@sha256:ab"
        );
    }
}
