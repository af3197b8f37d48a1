//! A kept Notary verification, checked again at each use: it answers for `cache_ttl`, but
//! not past what the rule and the trust data allow.

use api::codes::ReasonCode;
use time::OffsetDateTime;
use trust_core::VerifiedRepo;

use super::super::{deny, Denial};

/// A kept verification answers only while its timestamp is as recent as the rule asks
/// (`max_timestamp_age`, checked at `now` when verified, and again at each use: the kept
/// copy ages while `cache_ttl` runs). The timestamp's issue time is reckoned as
/// trust-core reckons it, from its expiry and Notary's lifetime for it.
pub(super) fn fresh_enough(
    repo: &VerifiedRepo,
    max_age: Option<time::Duration>,
    now: OffsetDateTime,
) -> Result<(), Denial> {
    let (Some(max_age), Some(ts)) = (max_age, repo.roles.get("timestamp")) else {
        return Ok(());
    };
    let issued = ts.expires - trust_core::NOTARY_TIMESTAMP_LIFETIME;
    if now - issued > max_age {
        return Err(deny(
            ReasonCode::StaleTimestamp,
            format!(
                "the timestamp of {} was issued at {}, longer ago than the rule's max_timestamp_age of {max_age} (its trust data was verified before and kept for cache_ttl); the publisher must publish again",
                repo.gun,
                trust_core::rfc3339(issued)
            ),
        ));
    }
    Ok(())
}

/// A verification answers for `cache_ttl`, but never past the expiry of a role it rests
/// on: checked again at each use (it was checked at `now` when verified). Returns the
/// earliest expiry, when the verification stops holding.
pub(super) fn not_expired(
    repo: &VerifiedRepo,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, Denial> {
    let earliest = repo.roles.iter().min_by_key(|(_, r)| r.expires);
    match earliest {
        Some((role, r)) if r.expires <= now => Err(deny(
            ReasonCode::Expired,
            format!(
                "{role} of {} expired at {} (its trust data was verified before and kept for cache_ttl); the publisher must publish again",
                repo.gun,
                trust_core::rfc3339(r.expires)
            ),
        )),
        _ => Ok(earliest.map(|(_, r)| r.expires)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use time::macros::datetime;
    use time::Duration;

    use trust_core::{RootAnchor, VerifyOptions};

    use super::*;

    /// A verification kept for cache_ttl (an hour, say) was served past a role's expiry
    /// inside that hour: the targets role expiring two hours after the verification is
    /// refused from then on, whatever the cache still holds.
    #[test]
    fn a_kept_verification_is_refused_once_a_role_it_rests_on_expires() {
        let now = datetime!(2026-06-01 00:00 UTC);
        let mut repo = test_support::Repo::new("registry.test/team/app", now);
        repo.expires.insert("targets", now + Duration::hours(2));
        let opts = VerifyOptions::new("registry.test/team/app", now, RootAnchor::FirstUse);
        let verified = trust_core::verify(&repo.files(), &opts).unwrap();
        assert_eq!(
            not_expired(&verified, now + Duration::hours(1)).ok(),
            Some(Some(now + Duration::hours(2)))
        );
        let Err(refused) = not_expired(&verified, now + Duration::hours(2)) else {
            panic!("served past the targets role's expiry");
        };
        assert_eq!(refused.reason, ReasonCode::Expired);
        assert!(
            refused
                .message
                .starts_with("targets of registry.test/team/app expired at 2026-06-01T02:00:00Z"),
            "{}",
            refused.message
        );
    }

    /// A verification kept for cache_ttl was served while its timestamp aged past the
    /// rule's max_timestamp_age: refused from then on.
    #[test]
    fn a_kept_verification_is_refused_once_its_timestamp_is_older_than_the_rule_allows() {
        let now = datetime!(2026-06-01 00:00 UTC);
        let repo = test_support::Repo::new("registry.test/team/app", now);
        let opts = VerifyOptions::new("registry.test/team/app", now, RootAnchor::FirstUse);
        let verified = trust_core::verify(&repo.files(), &opts).unwrap();
        let max = Some(Duration::hours(1));
        assert!(fresh_enough(&verified, max, now + Duration::minutes(30)).is_ok());
        assert!(fresh_enough(&verified, None, now + Duration::days(3)).is_ok());
        let Err(refused) = fresh_enough(&verified, max, now + Duration::hours(2)) else {
            panic!("served past max_timestamp_age");
        };
        assert_eq!(refused.reason, ReasonCode::StaleTimestamp);
    }
}
