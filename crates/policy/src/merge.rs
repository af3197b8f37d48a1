//! How a rule's settings and `[defaults]` combine.

use super::rule::RawRule;

/// A rule's own value, else the `[defaults]` one.
pub(crate) fn or<T: Clone>(own: &Option<T>, default: &Option<T>) -> Option<T> {
    own.clone().or_else(|| default.clone())
}

/// Settings any one of which lets a signer in (cosign's keys and identities, Notary's
/// root key IDs, certificates and CAs): a rule that sets any of them takes none of the
/// others from `[defaults]`. Merged one by one, a rule's own
/// `cosign_keys` were accepted beside every identity `[defaults]` names.
pub(crate) fn signer_set<'a>(
    own: &'a RawRule,
    defaults: &'a RawRule,
    set: impl Fn(&RawRule) -> bool,
) -> &'a RawRule {
    if set(own) {
        own
    } else {
        defaults
    }
}
