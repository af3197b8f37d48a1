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

/// Whether the rule's own pins, written out empty, replace the pins `[defaults]` names
/// (`pins` being what [`signer_set`] chose): the rule would pin nothing, and under
/// `tofu = true` trust its repositories' roots on first use.
pub(crate) fn drops_default_pins(own: &RawRule, defaults: &RawRule, pins: &RawRule) -> bool {
    let count = |x: &RawRule| {
        x.root_key_ids.as_ref().map_or(0, Vec::len)
            + x.root_cas.as_ref().map_or(0, Vec::len)
            + x.root_certs.as_ref().map_or(0, Vec::len)
    };
    std::ptr::eq(pins, own) && count(own) == 0 && count(defaults) > 0
}
