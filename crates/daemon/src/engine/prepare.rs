//! The policy in force, with what was prepared from it: clients of its trust servers,
//! the keys directory's anchors, each rule's pinned certificates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use key_store::TrustAnchors;
use policy::Policy;
use trust_core::Pins;

use notary_client::Fetcher;

/// A policy in force, with what was prepared from it.
pub struct Loaded {
    /// The policy.
    pub policy: Policy,
    /// Its generation: 1 at start, +1 per successful reload.
    pub generation: u64,
    /// The file it came from.
    pub file: PathBuf,
    /// Which version of the file: `sha256:…` of the bytes loaded, and for a Kubernetes
    /// ConfigMap volume the kubelet's data directory (see [`policy_version`]). Empty
    /// until the loader sets it.
    pub version: String,
    pub(crate) fetchers: BTreeMap<String, Fetcher>,
    pub(crate) anchors: TrustAnchors,
    pub(crate) rule_pins: BTreeMap<String, Pins>,
    /// Each cosign rule's signers: keys, keyless identities, trusted root.
    pub(crate) cosign: BTreeMap<String, super::cosign::CosignSigners>,
    /// Each Notation rule's trust stores.
    pub(crate) notation: BTreeMap<String, super::notation::NotationTrust>,
    /// The client for registries (signatures stored beside images), configured like
    /// containerd's.
    pub(crate) registry: std::sync::Arc<registry::Client>,
}

impl Loaded {
    /// Prepares a policy: clients for its trust servers, anchors, per-rule pins.
    /// Problems that would make verdicts impossible are errors (the reload is refused);
    /// every one is reported, each naming the file or setting at fault.
    pub fn prepare(policy: Policy, generation: u64, file: &Path) -> Result<Loaded, Vec<String>> {
        Loaded::prepare_after(policy, generation, file, None)
    }

    /// [`Loaded::prepare`] for a reload: clients of trust servers whose settings did not
    /// change are kept (building one loads the system's CA roots, which dominates a reload).
    pub fn prepare_after(
        policy: Policy,
        generation: u64,
        file: &Path,
        previous: Option<&Loaded>,
    ) -> Result<Loaded, Vec<String>> {
        let mut problems = Vec::new();
        let fetchers = fetchers(&policy, previous, &mut problems);
        let keys_dir = &policy.daemon.keys_dir;
        let anchors = anchors(keys_dir, &mut problems);
        let rule_pins = rule_pins(&policy, &mut problems);
        let cosign = super::cosign::prepare(&policy, &mut problems);
        let notation = super::notation::prepare(&policy, &mut problems);
        let registry = registry_client(&policy, &mut problems)?;
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Loaded {
            policy,
            generation,
            file: file.to_path_buf(),
            version: String::new(),
            fetchers,
            anchors,
            rule_pins,
            cosign,
            notation,
            registry,
        })
    }
}

/// A client per trust server; a reload keeps those whose settings did not change
/// (building one loads the system's CA roots, which dominates a reload).
fn fetchers(
    policy: &Policy,
    previous: Option<&Loaded>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Fetcher> {
    let mut fetchers = BTreeMap::new();
    for (name, server) in &policy.trust_servers {
        let kept = previous.and_then(|p| {
            (p.policy.trust_servers.get(name) == Some(server))
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
        Ok((anchors, warnings)) => {
            for w in warnings {
                tracing::warn!(warning = %w, "trust anchor skipped");
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
                let cert = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
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

/// The registry client, configured like containerd's (hosts.toml, credentials).
fn registry_client(
    policy: &Policy,
    problems: &mut Vec<String>,
) -> Result<std::sync::Arc<registry::Client>, Vec<String>> {
    let d = &policy.daemon;
    let registry = match registry::Client::new(
        d.registry_config_path.as_deref(),
        d.registry_auth_file.as_deref(),
        d.registry_timeout,
    ) {
        Ok((client, warnings)) => {
            for w in warnings {
                tracing::warn!(warning = %w, "registry credentials");
            }
            std::sync::Arc::new(client)
        }
        Err(e) => {
            problems.push(e.to_string());
            std::sync::Arc::new(
                registry::Client::new(None, None, d.registry_timeout)
                    .map(|(c, _)| c)
                    .map_err(|e| vec![e.to_string()])?,
            )
        }
    };
    Ok(registry)
}

/// Names the version of a policy file an operator can compare across nodes: the SHA-256
/// of `text` (`sha256sum` of the file, or of a ConfigMap's key, gives the same), and when
/// `file` sits in a Kubernetes ConfigMap volume, the kubelet's data directory that the
/// volume's `..data` link points to (a new one at each update the node has received).
pub fn policy_version(file: &Path, text: &str) -> String {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    let data = file
        .parent()
        .and_then(|dir| std::fs::read_link(dir.join("..data")).ok())
        .filter(|_| {
            // Only when the file is the volume's: a link through ..data.
            std::fs::read_link(file).is_ok_and(|t| t.starts_with("..data"))
        });
    match data {
        Some(target) => format!(
            "sha256:{digest} (ConfigMap volume data {})",
            target.display()
        ),
        None => format!("sha256:{digest}"),
    }
}
