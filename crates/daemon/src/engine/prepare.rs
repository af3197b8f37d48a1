//! The policy in force, with what was prepared from it: clients of its trust servers,
//! the keys directory's anchors, each rule's pinned certificates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use key_store::TrustAnchors;
use policy::Policy;
use trust_core::Pins;

use crate::fetch::Fetcher;

/// What a rule accepts as cosign signers, prepared.
#[derive(Default)]
pub(crate) struct CosignSigners {
    pub keys: Vec<sigstore_core::PublicKey>,
    pub identities: Vec<sigstore_core::certs::Identity>,
    pub root: Option<std::sync::Arc<sigstore_core::trust_root::TrustedRoot>>,
}

/// What a rule trusts for Notation signatures, prepared.
#[derive(Default)]
pub(crate) struct NotationTrust {
    pub ca: Vec<sigstore_core::certs::Cert>,
    pub signing_authority: Vec<sigstore_core::certs::Cert>,
    pub tsa: Vec<sigstore_core::certs::Cert>,
}

/// The certificates of one trust store directory: PEM files (one or more certificates
/// each) or DER, named `*.pem`, `*.crt` or `*.cer`, as Notation keeps them.
fn trust_store(dir: &Path) -> Result<Vec<sigstore_core::certs::Cert>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        if !matches!(
            f.extension().and_then(|e| e.to_str()),
            Some("pem" | "crt" | "cer")
        ) {
            continue;
        }
        let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let ders = match sigstore_core::keys::pem_blocks(&bytes, "CERTIFICATE") {
            Ok(d) if !d.is_empty() => d,
            _ => vec![bytes],
        };
        for d in ders {
            out.push(
                sigstore_core::certs::Cert::parse(&d)
                    .map_err(|e| format!("{}: {e}", f.display()))?,
            );
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{}: no certificate (*.pem, *.crt, *.cer)",
            dir.display()
        ));
    }
    Ok(out)
}

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
    /// Each cosign rule's signers: keys, keyless identities, trusted root.
    pub(crate) cosign: BTreeMap<String, CosignSigners>,
    /// Each Notation rule's trust stores.
    pub(crate) notation: BTreeMap<String, NotationTrust>,
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
        let mut fetchers = BTreeMap::new();
        for (name, server) in &policy.trust_servers {
            let kept = previous.and_then(|p| {
                (p.policy.trust_servers.get(name) == Some(server))
                    .then(|| p.fetchers.get(name).cloned())
                    .flatten()
            });
            match kept.map_or_else(|| Fetcher::new(server), Ok) {
                Ok(f) => {
                    fetchers.insert(name.clone(), f);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        let keys_dir = &policy.daemon.keys_dir;
        let anchors = match TrustAnchors::load(keys_dir) {
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
        };
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
                        Err(e) => problems.push(format!(
                            "rule {}: {key} {}: {e}",
                            rule.name,
                            path.display()
                        )),
                    }
                }
            }
            rule_pins.insert(rule.name.clone(), pins);
        }
        let mut cosign = BTreeMap::new();
        // One parse per trusted-root file, shared by the rules naming it.
        let mut roots: BTreeMap<PathBuf, std::sync::Arc<sigstore_core::trust_root::TrustedRoot>> =
            BTreeMap::new();
        let under_keys = |f: &PathBuf| {
            if f.is_absolute() {
                f.clone()
            } else {
                keys_dir.join(f)
            }
        };
        for rule in &policy.rules {
            let mut signers = CosignSigners::default();
            for f in &rule.cosign.keys {
                let path = under_keys(f);
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| sigstore_core::PublicKey::from_pem(&b))
                {
                    Ok(k) => signers.keys.push(k),
                    Err(e) => problems.push(format!(
                        "rule {}: cosign_keys {}: {e}",
                        rule.name,
                        path.display()
                    )),
                }
            }
            for i in &rule.cosign.identities {
                let issuer = i.issuer.as_deref().unwrap_or_default();
                let id = match (&i.subject, &i.subject_regex) {
                    (Some(s), _) => Ok(sigstore_core::certs::Identity::exact(s, issuer)),
                    (None, Some(r)) => sigstore_core::certs::Identity::regex(r, issuer),
                    (None, None) => Err("no subject".to_owned()),
                };
                let id = match (id, &i.issuer_regex) {
                    (Ok(id), Some(r)) => id.with_issuer_regex(r),
                    (id, _) => id,
                };
                match id {
                    Ok(id) => signers.identities.push(id),
                    Err(e) => problems.push(format!("rule {}: cosign_identities: {e}", rule.name)),
                }
            }
            if let Some(f) = &rule.cosign.trusted_root {
                // The public-good root shipped inside pullguard, or a file.
                let shipped = f.as_os_str() == sigstore_core::trust_root::PUBLIC_GOOD;
                let path = if shipped { f.clone() } else { under_keys(f) };
                let root = match roots.get(&path) {
                    Some(r) => Ok(r.clone()),
                    // A copy a TUF update verified (state_dir/sigstore-tuf), else the
                    // one shipped inside pullguard.
                    None if shipped => crate::sigstore_root::current(&policy.daemon.state_dir)
                        .and_then(|(bytes, _)| {
                            sigstore_core::trust_root::TrustedRoot::parse(&bytes)
                        })
                        .map(std::sync::Arc::new),
                    None => std::fs::read(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| sigstore_core::trust_root::TrustedRoot::parse(&b))
                        .map(std::sync::Arc::new),
                };
                match root {
                    Ok(r) => {
                        roots.insert(path, r.clone());
                        signers.root = Some(r);
                    }
                    Err(e) => problems.push(format!(
                        "rule {}: trusted_root {}: {e}",
                        rule.name,
                        path.display()
                    )),
                }
            }
            cosign.insert(rule.name.clone(), signers);
        }
        let mut notation = BTreeMap::new();
        for rule in &policy.rules {
            let mut trust = NotationTrust::default();
            for (kind, name) in &rule.notation.trust_stores {
                let dir = keys_dir
                    .join("notation/truststore/x509")
                    .join(kind)
                    .join(name);
                // Each certificate as notation-go accepts it in a store of this type: a
                // store holding only a leaf is refused, as Notation refuses it.
                let store_kind = if kind == "tsa" {
                    notation_core::profile::StoreKind::Tsa
                } else {
                    notation_core::profile::StoreKind::Signing
                };
                let loaded = trust_store(&dir).and_then(|certs| {
                    certs
                        .iter()
                        .try_for_each(|c| {
                            notation_core::profile::check_store_certificate(c, store_kind)
                        })
                        .map(|()| certs)
                });
                match (loaded, kind.as_str()) {
                    (Ok(certs), "ca") => trust.ca.extend(certs),
                    (Ok(certs), "signingAuthority") => trust.signing_authority.extend(certs),
                    (Ok(certs), _) => trust.tsa.extend(certs),
                    (Err(e), _) => problems.push(format!(
                        "rule {}: notation_trust_stores {kind}:{name}: {e}",
                        rule.name
                    )),
                }
            }
            // Identities as Notation reads them: C, ST and O, each attribute once, one
            // per RDN, none overlapping another.
            if let Err(e) = notation_core::dn::check_identities(&rule.notation.identities) {
                problems.push(format!("rule {}: notation_identities: {e}", rule.name));
            }
            notation.insert(rule.name.clone(), trust);
        }
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
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Loaded {
            policy,
            generation,
            file: file.to_path_buf(),
            fetchers,
            anchors,
            rule_pins,
            cosign,
            notation,
            registry,
        })
    }
}
