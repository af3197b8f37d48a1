//! The contract's codes, in one place: the reason codes of verdicts (docs/contracts.md:
//! `trust verify` and the daemon's own) and the kinds of events (events). Written by
//! hand; `docs/reasons.md` lists exactly these (a test in the daemon's suite keeps the
//! two equal).

#![deny(missing_docs)]

use std::fmt;

pub mod text;

macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable text, as events, verdicts and docs write it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value written as `text`, if it is one.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Why a pull was, or would be, refused.
    ReasonCode {
        /// The repository has no trust data, or a delegation the snapshot lists was withheld.
        NoTrustData = "no_trust_data",
        /// A signature by an authorised key does not verify.
        BadSignature = "bad_signature",
        /// Too few authorised keys signed.
        ThresholdNotMet = "threshold_not_met",
        /// The root does not match the pins, or is not bound to the repository.
        RootNotPinned = "root_not_pinned",
        /// A newer root does not chain to the trusted one.
        RootRotationBroken = "root_rotation_broken",
        /// A root certificate is outside its validity.
        CertificateExpired = "certificate_expired",
        /// A role's metadata is past its expiry.
        Expired = "expired",
        /// The timestamp is older than the rule allows.
        StaleTimestamp = "stale_timestamp",
        /// Older metadata than already seen, or a trusted delegation gone.
        Rollback = "rollback",
        /// A file's hash differs from its listing.
        HashMismatch = "hash_mismatch",
        /// A file's length differs from its listing.
        LengthMismatch = "length_mismatch",
        /// The tag is not signed by a role the rule accepts.
        UnknownTag = "unknown_tag",
        /// The digest is not what the trust data signs now.
        DigestMismatch = "digest_mismatch",
        /// Metadata that does not parse or breaks the format's rules.
        MalformedMetadata = "malformed_metadata",
        /// An input over its size limit.
        Oversized = "oversized",
        /// No rule matches the image.
        NoMatchingRule = "no_matching_rule",
        /// The rule refuses everything it matches.
        RejectedByPolicy = "rejected_by_policy",
        /// The name or digest cannot be judged.
        InvalidReference = "invalid_reference",
        /// The trust server could not be asked.
        TrustServerUnreachable = "trust_server_unreachable",
        /// The node's clock is earlier than a verification already recorded.
        ClockWentBackwards = "clock_went_backwards",
        /// The trusted state is damaged.
        StateCorrupt = "state_corrupt",
        /// The trusted state cannot be read.
        StateUnreadable = "state_unreadable",
        /// The trusted state cannot be written.
        StateUnwritable = "state_unwritable",
        /// The verdict could not be recorded.
        EventsUnwritable = "events_unwritable",
        /// A bug.
        InternalError = "internal_error",
        /// A caller not allowed on the socket.
        AccessDenied = "access_denied",
        /// The containerd watcher could not check or remove an image.
        WatcherFailed = "watcher_failed",
        /// The verifier could not reach pullguardd (its fail-open log).
        DaemonUnreachable = "daemon_unreachable",
        /// NRI: the verdict was not ready within containerd's deadline for the plugin.
        VerdictTimeout = "verdict_timeout",
        /// NRI: which image a container is created from could not be found out.
        ImageUnresolved = "image_unresolved",
        /// NRI: the container's root filesystem is not the image it was said to be created from.
        ContainerImageMismatch = "container_image_mismatch",
        /// cosign: no signature for the image's digest where the rule looks.
        NoSignature = "no_signature",
        /// cosign: a valid signature, but for another repository or signer than the rule's.
        IdentityMismatch = "identity_mismatch",
        /// cosign: the rule requires transparency-log evidence and there is none that verifies.
        TlogMissing = "tlog_missing",
        /// The image's registry could not be asked for its signatures (no answer: an outage).
        RegistryUnreachable = "registry_unreachable",
        /// The image's registry refused pullguardd's credentials, or asked for them somewhere they must not go.
        RegistryAuthFailed = "registry_auth_failed",
        /// The image's registry answered with content that is wrong: oversized, unparseable, not matching its digest.
        RegistryContentInvalid = "registry_content_invalid",
        /// The node's registry configuration (hosts.toml, its CA files, registry_auth_file) cannot be used.
        RegistryConfigInvalid = "registry_config_invalid",
        /// Looking for the image's signatures took more requests, bytes or time than one verdict may.
        LookupBudgetExceeded = "lookup_budget_exceeded",
        /// Notation: the certificate chain leads to no certificate of the rule's trust stores.
        UntrustedSigner = "untrusted_signer",
        /// Notation: a signature pullguard refuses to handle (a plugin, an unknown critical attribute, an algorithm).
        UnsupportedSignature = "unsupported_signature",
        /// Notation: the rule requires revocation checks, which cannot be made offline.
        RevocationUnknown = "revocation_unknown",
        /// Notation: a timestamp countersignature that does not verify against the rule's tsa trust stores.
        UntrustedTimestamp = "untrusted_timestamp",
    }
}

impl ReasonCode {
    /// "Could not check now", not "the trust data says no": a sweep keeps an image
    /// already present on these, and a verdict with one is never reused.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ReasonCode::TrustServerUnreachable
                | ReasonCode::InternalError
                | ReasonCode::StateCorrupt
                | ReasonCode::StateUnreadable
                | ReasonCode::StateUnwritable
                | ReasonCode::ClockWentBackwards
                | ReasonCode::EventsUnwritable
                | ReasonCode::VerdictTimeout
                | ReasonCode::RegistryUnreachable
        )
    }

    /// What to do about it: one short instruction, shown by the verifier (containerd
    /// prints it to whoever pulled), `pullguard verify` and the docs.
    pub fn remedy(self) -> &'static str {
        use ReasonCode::*;
        match self {
            NoTrustData => "sign the image (docker trust sign, or notary addhash + publish) or give it a rule with require = \"any\"",
            UnknownTag => "sign this tag in targets/releases or targets (docker trust sign), or pull a tag that is signed",
            DigestMismatch => "the registry serves other content than was signed (or a signature was copied from another image): re-sign if that content is intended, otherwise find out who pushed it",
            Expired => "the publisher must publish the repository's trust data again (any notary publish renews it); check this node's clock",
            StaleTimestamp => "the trust data is older than the rule's max_timestamp_age: the publisher publishes again, or the rule allows an older timestamp",
            CertificateExpired => "the signing certificate was not valid at signing time: Notary publishers rotate the expired key (notary key rotate), cosign signers sign again; check this node's clock",
            BadSignature | ThresholdNotMet | HashMismatch | LengthMismatch | MalformedMetadata | Oversized => {
                "the trust data is damaged or forged: do not work around it; tell the publisher and whoever runs the trust server"
            }
            Rollback => "the trust server served older data than this node has already seen (an attack, or a server restored from backup): investigate before clearing the node's record with pullguard keys forget-state",
            RootNotPinned => "pin the repository's root (pullguard keys pin REPO --cert|--key-id|--ca) or allow trust on first use for it (tofu = true in its rule)",
            RootRotationBroken => "the new root is not signed by the keys of the root this node trusts: ask the publisher; if the rotation is genuine, pin the new root",
            TrustServerUnreachable => "check the trust server named in the rule (URL, TLS, network); on_unreachable = \"cached\" lets trust data verified earlier answer during an outage",
            NoMatchingRule => "add a rule that matches this image to the policy",
            RejectedByPolicy => "the policy forbids this image (require = \"reject\"): use another image or change the rule",
            InvalidReference => "use a full image reference: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:HEX",
            ClockWentBackwards => "fix this node's clock (NTP); if the jump was genuine, run pullguard keys forget-state --clock",
            StateCorrupt | StateUnreadable | StateUnwritable => "check pullguardd's state directory (disk space, permissions); pullguard keys forget-state REPO clears a damaged record",
            EventsUnwritable => "free space on, or fix permissions of, the events file's file system; pulls stay blocked until verdicts can be recorded",
            InternalError => "report a bug with the event ID; pulls stay blocked meanwhile",
            AccessDenied => "add the caller's uid or gid to allowed_uids or allowed_gids in [daemon], if it should call pullguardd",
            WatcherFailed => "see pullguard status and journalctl -u pullguardd; remove the image by hand (ctr -n NAMESPACE images rm NAME) if it must not stay",
            DaemonUnreachable => "start pullguardd (systemctl start pullguardd); pulls fail closed while it is down",
            VerdictTimeout => "nothing, usually: the verdict is still being worked out and the kubelet's next try gets it; if it keeps happening, check the trust server's speed or raise plugin_request_timeout in containerd's NRI config",
            NoSignature => "sign the image (cosign sign, or notation sign) with a key or identity the rule accepts; for cosign, check signature_repository if signatures are stored elsewhere",
            IdentityMismatch => "the signature was made for another repository or by another signer than the rule names: re-sign for this image, or fix the rule",
            TlogMissing => "sign with upload to a transparency log, or set cosign_tlog = false in the rule if key-signed images without one are acceptable",
            RegistryUnreachable => "check the image's registry (network, its status); on_unreachable = \"cached\" lets a signature verified earlier answer during an outage",
            RegistryAuthFailed => "give pullguardd credentials the registry accepts (registry_auth_file in [daemon]); if the registry sends them to a token service over plain HTTP or on an internal address, fix the registry's token realm",
            RegistryContentInvalid => "the registry serves broken or hostile content for this image's signatures: find out who pushed it; pullguard refuses rather than treat it as an outage",
            LookupBudgetExceeded => "the image has more referrers or larger signature documents than a verdict may read, or its registry answers too slowly: remove junk referrers (old signatures, unrelated artifacts) or sign again; check the registry's latency",
            RegistryConfigInvalid => "fix the file the message names (hosts.toml under registry_config_path, a CA file it names, or registry_auth_file); pullguard reads them as containerd does",
            UntrustedSigner => "add the signer's root CA to a trust store the rule names (keys_dir/notation/truststore/x509/TYPE/NAME/), or sign with a certificate issued under one",
            UnsupportedSignature => "sign without verification plugins or unknown critical attributes, with ES256/ES384 or PS256/PS384/PS512",
            UntrustedTimestamp => "the signature's timestamp is not from an authority of the rule's tsa trust stores, or does not cover it: add the timestamp authority's root to a tsa store the rule names, or sign again",
            RevocationUnknown => "revocation status cannot be checked offline: set notation_revocation = \"skip\" in the rule if that is acceptable, or keep refusing",
            ContainerImageMismatch => "create the container from the image its pod spec names (a CRI client must not set io.kubernetes.cri.image-name itself); if CRI's image cache and containerd's record of the name disagree (a re-import), pull the image again",
            ImageUnresolved => "create the container from an image containerd has a record of (pull it first); containerd's CRI must pass the io.kubernetes.cri.image-name annotation, and pullguardd must reach containerd_socket",
        }
    }
}

codes! {
    /// What an event records (Contract 3's `event` field).
    EventKind {
        /// A pull allowed.
        PullAllowed = "pull.allowed",
        /// A pull refused under an enforce rule.
        PullRejected = "pull.rejected",
        /// A pull an audit rule would have refused, let through.
        PullAudited = "pull.audited",
        /// `pullguard verify`: a verdict asked for, nothing enforced.
        VerifyDryRun = "verify.dry_run",
        /// The watcher removed a rejected image.
        ImageRemoved = "image.removed",
        /// A sweep kept an image it could not verify now.
        ImageKept = "image.kept",
        /// The watcher could not check or remove an image.
        ImageRemoveFailed = "image.remove_failed",
        /// A trust server could not be asked.
        TrustFetchFailed = "trust.fetch_failed",
        /// A new policy is in force.
        PolicyReloaded = "policy.reloaded",
        /// A policy edit was refused; the last good one stays.
        PolicyInvalid = "policy.invalid",
        /// The watcher connected to containerd.
        WatcherConnected = "watcher.connected",
        /// The watcher lost containerd.
        WatcherDisconnected = "watcher.disconnected",
        /// The watcher checked the images present.
        WatcherSwept = "watcher.swept",
        /// A caller was refused on the socket.
        AccessDenied = "access.denied",
        /// A slow sink lost events.
        EventsDropped = "events.dropped",
        /// The events file cannot be written.
        EventsUnwritable = "events.unwritable",
        /// The events file works again.
        EventsRecovered = "events.recovered",
        /// pullguardd started.
        DaemonStarted = "daemon.started",
        /// The verifier let a pull through under the emergency override (its own log).
        PullFailOpen = "pull.fail_open",
        /// The verifier refused an emergency override file (its own log).
        FailOpenRefused = "fail_open.refused",
        /// NRI: a container allowed to be created.
        ContainerAllowed = "container.allowed",
        /// NRI: a container refused under an enforce rule (never created).
        ContainerRefused = "container.refused",
        /// NRI: a container an audit rule would have refused, created.
        ContainerAudited = "container.audited",
        /// NRI: containerd registered and synchronised the plugin.
        NriRegistered = "nri.registered",
        /// NRI: the connection to containerd's NRI socket is lost or cannot be made.
        NriDisconnected = "nri.disconnected",
        /// The Sigstore trusted root was refreshed from its TUF repository and changed.
        TrustRootUpdated = "trust_root.updated",
        /// A refresh of the Sigstore trusted root was refused or could not be made; the kept copy stays.
        TrustRootUpdateFailed = "trust_root.update_failed",
        /// The Sigstore trusted root's TUF metadata expires soon, or has: refresh it.
        TrustRootExpiring = "trust_root.expiring",
    }
}

impl EventKind {
    /// Syslog severity: 4 (warning) for what an operator should look at, 6 (info) else.
    pub fn severity(self) -> u8 {
        use EventKind::*;
        match self {
            PullRejected
            | PolicyInvalid
            | AccessDenied
            | TrustFetchFailed
            | EventsDropped
            | EventsUnwritable
            | ImageRemoved
            | ImageRemoveFailed
            | ImageKept
            | WatcherDisconnected
            | PullFailOpen
            | FailOpenRefused
            | ContainerRefused
            | ContainerAudited
            | NriDisconnected
            | TrustRootUpdateFailed
            | TrustRootExpiring => 4,
            _ => 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for c in ReasonCode::ALL {
            assert!(seen.insert(c.as_str()), "{c}");
            assert_eq!(ReasonCode::parse(c.as_str()), Some(*c));
            assert!(!c.remedy().is_empty(), "{c} has no remedy");
        }
        for k in EventKind::ALL {
            assert!(seen.insert(k.as_str()), "{k}");
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(ReasonCode::parse("allowed"), None);
    }
}
