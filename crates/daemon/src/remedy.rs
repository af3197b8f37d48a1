//! What to do about each rejection reason: one short instruction, shown by the verifier
//! (containerd prints it to whoever pulled), `pullguard verify` and the docs.

/// Reason codes the daemon adds to trust-core's (which `trust_core::Reason::ALL` lists).
pub const DAEMON_CODES: &[&str] = &[
    "no_matching_rule",
    "rejected_by_policy",
    "invalid_reference",
    "trust_server_unreachable",
    "clock_went_backwards",
    "state_corrupt",
    "state_unreadable",
    "state_unwritable",
    "events_unwritable",
    "internal_error",
];

/// The fix for a reason code; empty for codes that need none.
pub fn remedy(reason: &str) -> &'static str {
    match reason {
        "no_trust_data" => "sign the image (docker trust sign, or notary addhash + publish) or give it a rule with require = \"any\"",
        "unknown_tag" => "sign this tag in targets/releases or targets (docker trust sign), or pull a tag that is signed",
        "digest_mismatch" => "the registry serves other content than was signed: re-sign the tag if that content is intended, otherwise find out who pushed it",
        "expired" => "the publisher must publish the repository's trust data again (any notary publish renews it); check this node's clock",
        "stale_timestamp" => "the trust data is older than the rule's max_timestamp_age: the publisher publishes again, or the rule allows an older timestamp",
        "certificate_expired" => "the publisher must rotate the expired key (notary key rotate); check this node's clock",
        "bad_signature" | "threshold_not_met" | "hash_mismatch" | "length_mismatch" | "malformed_metadata" | "oversized" => {
            "the trust data is damaged or forged: do not work around it; tell the publisher and whoever runs the trust server"
        }
        "rollback" => "the trust server served older data than this node has already seen (an attack, or a server restored from backup): investigate before clearing the node's record with pullguard keys forget-state",
        "root_not_pinned" => "pin the repository's root (pullguard keys pin REPO --cert|--key-id|--ca) or allow trust on first use for it (tofu = true in its rule)",
        "root_rotation_broken" => "the new root is not signed by the keys of the root this node trusts: ask the publisher; if the rotation is genuine, pin the new root",
        "trust_server_unreachable" => "check the trust server named in the rule (URL, TLS, network); on_unreachable = \"cached\" lets trust data verified earlier answer during an outage",
        "no_matching_rule" => "add a rule that matches this image to the policy",
        "rejected_by_policy" => "the policy forbids this image (require = \"reject\"): use another image or change the rule",
        "invalid_reference" => "use a full image reference: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:HEX",
        "clock_went_backwards" => "fix this node's clock (NTP); if the jump was genuine, run pullguard keys forget-state --clock",
        "state_corrupt" | "state_unreadable" | "state_unwritable" => "check pullguardd's state directory (disk space, permissions); pullguard keys forget-state REPO clears a damaged record",
        "events_unwritable" => "free space on, or fix permissions of, the events file's file system; pulls stay blocked until verdicts can be recorded",
        "internal_error" => "report a bug with the event ID; pulls stay blocked meanwhile",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::{remedy, DAEMON_CODES};

    #[test]
    fn every_reason_code_has_a_remedy() {
        let core = trust_core::Reason::ALL.map(|r| r.as_str());
        for code in core.iter().chain(DAEMON_CODES) {
            assert!(!remedy(code).is_empty(), "{code} has no remedy");
        }
        assert_eq!(remedy("allowed"), "");
    }
}
