//! The policy in force, with what was prepared from it: clients of its trust servers,
//! the keys directory's anchors, each rule's pinned certificates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use key_store::TrustAnchors;
use policy::Policy;
use trust_core::Pins;

use crate::fetch::Fetcher;

/// A policy in force, with what was prepared from it.
pub struct Loaded {
    /// The policy.
    pub policy: Policy,
    /// Its generation: 1 at start, +1 per successful reload.
    pub generation: u64,
    /// The file it came from.
    pub file: PathBuf,
    pub(crate) fetchers: BTreeMap<String, Fetcher>,
    pub(crate) anchors: TrustAnchors,
    pub(crate) rule_pins: BTreeMap<String, Pins>,
}

impl Loaded {
    /// Prepares a policy: clients for its trust servers, anchors, per-rule pins.
    /// Problems that would make verdicts impossible are errors (the reload is refused).
    pub fn prepare(policy: Policy, generation: u64, file: &Path) -> Result<Loaded, String> {
        Loaded::prepare_after(policy, generation, file, None)
    }

    /// [`Loaded::prepare`] for a reload: clients of trust servers whose settings did not
    /// change are kept (building one loads the system's CA roots, which dominates a reload).
    pub fn prepare_after(
        policy: Policy,
        generation: u64,
        file: &Path,
        previous: Option<&Loaded>,
    ) -> Result<Loaded, String> {
        let mut fetchers = BTreeMap::new();
        for (name, server) in &policy.trust_servers {
            let kept = previous.and_then(|p| {
                (p.policy.trust_servers.get(name) == Some(server))
                    .then(|| p.fetchers.get(name).cloned())
                    .flatten()
            });
            let fetcher = match kept {
                Some(f) => f,
                None => Fetcher::new(server).map_err(|e| e.to_string())?,
            };
            fetchers.insert(name.clone(), fetcher);
        }
        let keys_dir = &policy.daemon.keys_dir;
        let (anchors, warnings) = TrustAnchors::load(keys_dir).map_err(|e| e.to_string())?;
        for w in warnings {
            tracing::warn!(warning = %w, "trust anchor skipped");
        }
        let mut rule_pins = BTreeMap::new();
        for rule in &policy.rules {
            let mut pins = Pins {
                key_ids: rule.root_key_ids.clone(),
                ..Pins::default()
            };
            for (files, is_ca) in [(&rule.root_certs, false), (&rule.root_cas, true)] {
                for f in files {
                    let path = if f.is_absolute() {
                        f.clone()
                    } else {
                        keys_dir.join(f)
                    };
                    let bytes = std::fs::read(&path)
                        .map_err(|e| format!("rule {}: {}: {e}", rule.name, path.display()))?;
                    let cert = trust_core::keys::parse_pinned_cert(&bytes)
                        .map_err(|e| format!("rule {}: {}: {e}", rule.name, path.display()))?;
                    if is_ca {
                        pins.cas.push(cert);
                    } else {
                        pins.certs.push(cert.der);
                    }
                }
            }
            rule_pins.insert(rule.name.clone(), pins);
        }
        Ok(Loaded {
            policy,
            generation,
            file: file.to_path_buf(),
            fetchers,
            anchors,
            rule_pins,
        })
    }
}
