//! The policy in force, with what each kind of proof prepared from it and the registry
//! client the registry-backed kinds share.

use std::path::{Path, PathBuf};

use policy::Policy;

use super::Prepared;

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
    /// SHA-256 of the bytes loaded (set with `version`): the policy watch compares the
    /// file with what is in force, not with what it read when it started.
    pub text_sha256: Option<Vec<u8>>,
    /// What `keys_dir` held just before this generation read it ([`keys_fingerprint`]):
    /// the policy watch reloads when that changes, with the policy file or without it.
    pub keys_seen: Vec<u8>,
    /// What each kind of proof prepared from the policy.
    pub(crate) kinds: Prepared,
    /// The client for registries (signatures stored beside images), configured like
    /// containerd's.
    pub(crate) registry: std::sync::Arc<registry::Client>,
}

/// A file that decides what is trusted (a key, a trusted root, a certificate of a
/// store or pin), read as the keys directory's index is: owned by root or pullguardd's
/// user and writable by no one else, a symlink too; at most `limit` bytes. Whoever can
/// write such a file chooses what this node trusts.
pub(crate) fn read_trusted(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    match key_store::read_secure(path, limit + 1) {
        Ok(Some(bytes)) if bytes.len() as u64 > limit => {
            Err(format!("{}: larger than {limit} bytes", path.display()))
        }
        Ok(Some(bytes)) => Ok(bytes),
        // Worded as the system says it: `policy check` recognises a file to create.
        Ok(None) => Err(std::io::Error::from_raw_os_error(2).to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `path` is gone (removed, or a dangling link), as opposed to unreadable.
pub(crate) fn gone(path: &Path) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// The policy file, held to the same rule as the keys: an edit takes effect within a
/// second, so whoever can write it decides what runs.
pub(crate) fn check_policy_file(path: &Path) -> Result<(), String> {
    key_store::check_secure(path).map_err(|e| format!("policy file: {e}"))
}

/// The refusal of a rule some of whose trust files are gone.
pub(crate) fn unusable(rule: &str, missing: &[String]) -> super::verdict::Denial {
    super::verdict::deny(
        api::codes::ReasonCode::RejectedByPolicy,
        format!(
            "rule {rule} counts no signature of this kind while a file it trusts is gone (with \
             no other proof kind to vouch, it refuses every image): {}; restore it, \
             or remove it from the policy",
            missing.join(", ")
        ),
    )
}

impl Loaded {
    /// What the rules refuse for want of a trust file that is gone, said at start, at
    /// each reload and by `--check-config`; `None` when every file is there.
    pub fn unusable_summary(&self) -> Option<String> {
        let gone = self.gone_files();
        (!gone.is_empty()).then(|| {
            format!(
                "rules that count no signature of a kind while a file they trust is gone (restore it, or \
                 remove it from the policy): {}",
                gone.join("; ")
            )
        })
    }

    /// Each trust file a rule names that is gone: `rule NAME: SETTING PATH`.
    pub fn gone_files(&self) -> Vec<String> {
        let kinds = &self.kinds;
        let mut said = Vec::new();
        for rule in &self.policy.rules {
            let uses = |p| rule.proofs.contains(&p);
            let cosign = kinds
                .cosign
                .get(&rule.name)
                .filter(|_| uses(policy::Proof::Cosign));
            let notation = kinds
                .notation
                .get(&rule.name)
                .filter(|_| uses(policy::Proof::Notation));
            let cosign = cosign.map(|c| c.missing.as_slice());
            let notation = notation.map(|n| n.missing.as_slice());
            for gone in [cosign, notation].into_iter().flatten().flatten() {
                said.push(format!("rule {}: {gone}", rule.name));
            }
        }
        said
    }

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
        // Before any key is read: a change made while this runs is then seen as one.
        let keys_seen = keys_fingerprint(&policy);
        let kinds = Prepared::new(&policy, previous.map(|p| &p.kinds), &mut problems);
        let registry = registry_client(&policy, &mut problems)?;
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Loaded {
            policy,
            generation,
            file: file.to_path_buf(),
            version: String::new(),
            text_sha256: None,
            keys_seen,
            kinds,
            registry,
        })
    }
}

/// Entries of `keys_dir` looked at, at most: a directory of keys holds a few dozen.
const MAX_KEYS_ENTRIES: usize = 4096;

/// A digest of what `keys_dir` holds, without reading any file: each entry's path, the
/// target of a symlink (a Kubernetes Secret volume swaps `..data`), and the size,
/// modification time and inode of what it leads to; directories are walked (not through
/// symlinks), a few levels deep. Keys, pins and trust stores are read when a policy is
/// prepared, so a key added, replaced or revoked there must bring a reload even when the
/// policy file stays the same (a Secret and a ConfigMap are updated apart). The files a
/// rule names by an absolute path are looked at too, wherever they are: one that comes
/// back, changes or goes must be seen as well.
pub(crate) fn keys_fingerprint(policy: &Policy) -> Vec<u8> {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    let mut todo = vec![(policy.daemon.keys_dir.clone(), 0)];
    let mut seen = 0;
    while let Some((d, depth)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            hash.update(b"unreadable\0");
            hash.update(d.as_os_str().as_encoded_bytes());
            continue;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            seen += 1;
            if seen > MAX_KEYS_ENTRIES {
                return hash.finalize().to_vec();
            }
            if note(&mut hash, &path) && depth < 8 {
                todo.push((path, depth + 1));
            }
        }
    }
    let named = policy
        .rules
        .iter()
        .flat_map(|r| r.cosign.keys.iter().chain(r.cosign.trusted_root.as_ref()));
    for path in named.filter(|p| p.is_absolute()) {
        note(&mut hash, path);
    }
    hash.finalize().to_vec()
}

/// One path into a fingerprint; whether it is a directory (not through a symlink).
fn note(hash: &mut sha2::Sha256, path: &Path) -> bool {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt as _;
    hash.update(path.as_os_str().as_encoded_bytes());
    hash.update(b"\0");
    let Ok(own) = std::fs::symlink_metadata(path) else {
        hash.update(b"absent\0");
        return false;
    };
    if own.file_type().is_symlink() {
        if let Ok(target) = std::fs::read_link(path) {
            hash.update(target.as_os_str().as_encoded_bytes());
        }
    }
    if let Ok(m) = std::fs::metadata(path) {
        for n in [m.len(), m.ino(), u64::from(m.mode())] {
            hash.update(n.to_le_bytes());
        }
        hash.update(m.mtime().to_le_bytes());
        hash.update(m.mtime_nsec().to_le_bytes());
    }
    own.is_dir()
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

impl Loaded {
    /// Records which text of its file this generation was read from: its
    /// [`policy_version`] and, for the policy watch, its SHA-256 (one hash for both).
    pub fn set_text(&mut self, text: &str) {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(text.as_bytes()).to_vec();
        self.version = policy_version(&self.file, &digest);
        self.text_sha256 = Some(digest);
    }
}

/// Names the version of a policy file an operator can compare across nodes: the SHA-256
/// of its text (`digest`; `sha256sum` of the file, or of a ConfigMap's key, gives the
/// same), and when `file` sits in a Kubernetes ConfigMap volume, the kubelet's data
/// directory that the volume's `..data` link points to (a new one at each update the
/// node has received).
pub fn policy_version(file: &Path, digest: &[u8]) -> String {
    let digest = hex::encode(digest);
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
