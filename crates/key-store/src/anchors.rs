//! Trust anchors per repository pattern, from a directory of PEM files and an index.
//!
//! `index.toml` in the keys directory (default `/etc/pullguard/keys/`):
//!
//! ```toml
//! [[anchor]]
//! repository = "registry.example.com/team/*"  # exact name, or a prefix ending in `*`
//! root_certs = ["team-root.crt"]              # pinned root certificates
//! root_key_ids = ["4ff57dc9…"]                # pinned key IDs, as root.json lists them
//! root_cas = ["team-ca.crt"]                  # a root certificate must be issued by one
//! tofu = false                                 # allow trust on first use (explicitly)
//! ```
//!
//! The most specific pattern wins, as in Notary's `trust_pinning`: an exact name, then
//! the longest prefix. A file that cannot be read or parsed is reported and skipped,
//! never trusted; an anchor left with nothing to pin and no `tofu` rejects everything it
//! matches.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trust_core::keys::parse_pinned_cert;
use trust_core::Pins;

use crate::fsutil::{check_secure, read_secure, write_atomic};
use crate::{Error, Result};

/// Largest certificate or index file read.
const MAX_FILE: u64 = 1024 * 1024;

/// The index file name.
pub const INDEX: &str = "index.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct IndexEntry {
    repository: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    root_certs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    root_key_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    root_cas: Vec<String>,
    #[serde(default)]
    tofu: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    #[serde(default)]
    anchor: Vec<IndexEntry>,
}

/// The pins for one repository pattern.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The pattern: an exact name or a prefix ending in `*`.
    pub repository: String,
    /// What is pinned.
    pub pins: Pins,
    /// Trust on first use allowed.
    pub tofu: bool,
}

impl Anchor {
    /// Whether anything is pinned at all.
    pub fn pins_anything(&self) -> bool {
        !self.pins.certs.is_empty() || !self.pins.key_ids.is_empty() || !self.pins.cas.is_empty()
    }
}

/// A problem with one file or entry, reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorWarning {
    /// The file concerned.
    pub path: PathBuf,
    /// What is wrong, and that it was skipped.
    pub message: String,
}

impl std::fmt::Display for AnchorWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// All anchors of a keys directory.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn parse_index(path: &Path, text: &str) -> Result<Index> {
    toml::from_str::<Index>(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        Error::Index {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })
}

fn valid_pattern(p: &str) -> bool {
    let body = p.strip_suffix('*').unwrap_or(p);
    !p.is_empty() && !body.contains('*') && !p.chars().any(char::is_whitespace)
}

impl TrustAnchors {
    /// Loads `dir/index.toml` and the certificates it names. A missing index means no
    /// anchors. The directory and index must not be writable by others.
    pub fn load(dir: &Path) -> Result<(TrustAnchors, Vec<AnchorWarning>)> {
        let index_path = dir.join(INDEX);
        if !dir.exists() {
            return Ok((TrustAnchors::default(), Vec::new()));
        }
        check_secure(dir)?;
        let Some(bytes) = read_secure(&index_path, MAX_FILE)? else {
            return Ok((TrustAnchors::default(), Vec::new()));
        };
        let text = String::from_utf8_lossy(&bytes);
        let index = parse_index(&index_path, &text)?;
        let mut warnings = Vec::new();
        let mut anchors = Vec::new();
        for entry in index.anchor {
            if !valid_pattern(&entry.repository) {
                warnings.push(AnchorWarning {
                    path: index_path.clone(),
                    message: format!(
                        "repository pattern {:?} is not a name or a prefix ending in a single `*`; entry skipped",
                        entry.repository
                    ),
                });
                continue;
            }
            let mut pins = Pins::default();
            for (list, is_ca) in [(&entry.root_certs, false), (&entry.root_cas, true)] {
                for file in list {
                    let path = dir.join(file);
                    let parsed = read_secure(&path, MAX_FILE).and_then(|b| {
                        b.ok_or_else(|| Error::Io {
                            op: "read",
                            path: path.clone(),
                            source: std::io::ErrorKind::NotFound.into(),
                        })
                    });
                    match parsed.map(|b| parse_pinned_cert(&b)) {
                        Ok(Ok(cert)) if is_ca => pins.cas.push(cert),
                        Ok(Ok(cert)) => pins.certs.push(cert.der),
                        Ok(Err(e)) => warnings.push(AnchorWarning {
                            path,
                            message: format!("{e}; not pinned"),
                        }),
                        Err(e) => warnings.push(AnchorWarning {
                            path,
                            message: format!("{e}; not pinned"),
                        }),
                    }
                }
            }
            for id in &entry.root_key_ids {
                if let Some(id) = trust_core::hex64(id) {
                    pins.key_ids.push(id);
                } else {
                    warnings.push(AnchorWarning {
                        path: index_path.clone(),
                        message: format!(
                            "{}: key ID {id:?} is not 64 hex digits; not pinned",
                            entry.repository
                        ),
                    });
                }
            }
            let anchor = Anchor {
                repository: entry.repository,
                pins,
                tofu: entry.tofu,
            };
            if !anchor.pins_anything() && !anchor.tofu {
                warnings.push(AnchorWarning {
                    path: index_path.clone(),
                    message: format!(
                        "{} pins nothing and does not allow trust on first use: every repository it matches is rejected",
                        anchor.repository
                    ),
                });
            }
            anchors.push(anchor);
        }
        Ok((TrustAnchors { anchors }, warnings))
    }

    /// Every anchor's pattern through `normal` (the form the node names repositories
    /// in): renamed where `normal` spells it otherwise, and each pattern `normal`
    /// refuses said (an anchor that matches nothing must not go unnoticed: the rule's
    /// trust on first use would decide instead). Returns (renamed, refused) messages.
    pub fn normalise(
        &mut self,
        normal: impl Fn(&str) -> std::result::Result<String, String>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut renamed, mut refused) = (Vec::new(), Vec::new());
        // The spelling each name was first written in: two entries for one repository
        // would leave one of them unused, unseen (an old spelling's `tofu = true` could
        // win over the pin), so that refuses too.
        let mut first: std::collections::HashMap<String, String> = Default::default();
        for a in &mut self.anchors {
            match normal(&a.repository) {
                Ok(n) => {
                    if let Some(other) = first.insert(n.clone(), a.repository.clone()) {
                        refused.push(format!(
                            "anchors {other:?} and {:?} both name {n:?}; keep one (pullguard keys unpin, then pin again)",
                            a.repository
                        ));
                    }
                    if n != a.repository {
                        renamed.push(format!("anchor {:?} is read as {n:?}", a.repository));
                        a.repository = n;
                    }
                }
                Err(e) => refused.push(format!("anchor {e}; it would pin nothing")),
            }
        }
        (renamed, refused)
    }

    /// The most specific anchor for `gun`: an exact pattern, else the longest prefix.
    pub fn for_gun(&self, gun: &str) -> Option<&Anchor> {
        if let Some(exact) = self.anchors.iter().find(|a| a.repository == gun) {
            return Some(exact);
        }
        self.anchors
            .iter()
            .filter_map(|a| {
                let prefix = a.repository.strip_suffix('*')?;
                gun.starts_with(prefix).then_some((prefix.len(), a))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, a)| a)
    }

    /// All anchors, in index order.
    pub fn all(&self) -> &[Anchor] {
        &self.anchors
    }
}

/// What to pin with [`pin`].
#[derive(Debug, Clone)]
pub enum PinSpec {
    /// A root certificate file (copied into the keys directory).
    Cert(PathBuf),
    /// A root key ID.
    KeyId(String),
    /// A CA certificate file (copied into the keys directory).
    Ca(PathBuf),
    /// Allow trust on first use.
    Tofu,
}

fn load_index(dir: &Path) -> Result<Index> {
    let path = dir.join(INDEX);
    match read_secure(&path, MAX_FILE)? {
        Some(bytes) => parse_index(&path, &String::from_utf8_lossy(&bytes)),
        None => Ok(Index::default()),
    }
}

fn store_index(dir: &Path, index: &Index) -> Result<()> {
    let text = toml::to_string_pretty(index).unwrap_or_default();
    let header = "# pullguard trust anchors; edit with `pullguard keys pin|unpin`, or by hand.\n";
    write_atomic(&dir.join(INDEX), format!("{header}{text}").as_bytes())
}

/// Adds a pin for `repository` to the index (creating the directory 0700).
pub fn pin(dir: &Path, repository: &str, spec: &PinSpec) -> Result<()> {
    if !valid_pattern(repository) {
        return Err(Error::BadPin(format!(
            "repository pattern {repository:?} is not a name or a prefix ending in a single `*`"
        )));
    }
    if let PinSpec::KeyId(id) = spec {
        // Checked before anything is read or written.
        if trust_core::hex64(id).is_none() {
            return Err(Error::BadPin(format!(
                "key ID {id:?} is not 64 hex digits; a pin takes the full ID (`pullguard inspect REPO --server URL` prints it), since a short prefix could be matched by a key made for it"
            )));
        }
    }
    crate::fsutil::private_dir(dir)?;
    let mut index = load_index(dir)?;
    let pos = match index.anchor.iter().position(|e| e.repository == repository) {
        Some(p) => p,
        None => {
            index.anchor.push(IndexEntry {
                repository: repository.to_owned(),
                ..IndexEntry::default()
            });
            index.anchor.len() - 1
        }
    };
    let copy_cert = |src: &Path| -> Result<String> {
        let bytes = std::fs::read(src).map_err(|source| Error::Io {
            op: "read",
            path: src.to_path_buf(),
            source,
        })?;
        let cert = parse_pinned_cert(&bytes).map_err(|detail| Error::UnsupportedKey {
            what: src.display().to_string(),
            detail,
        })?;
        let name = format!(
            "{}.crt",
            &hex::encode(sha2::Digest::finalize(sha2::Digest::chain_update(
                sha2::Sha256::default(),
                &cert.der
            )))[..16]
        );
        write_atomic(&dir.join(&name), &bytes)?;
        Ok(name)
    };
    let entry = &mut index.anchor[pos];
    match spec {
        PinSpec::Cert(p) => {
            let name = copy_cert(p)?;
            if !entry.root_certs.contains(&name) {
                entry.root_certs.push(name);
            }
        }
        PinSpec::Ca(p) => {
            let name = copy_cert(p)?;
            if !entry.root_cas.contains(&name) {
                entry.root_cas.push(name);
            }
        }
        PinSpec::KeyId(id) => {
            let id = id.to_ascii_lowercase();
            if !entry.root_key_ids.contains(&id) {
                entry.root_key_ids.push(id);
            }
        }
        PinSpec::Tofu => entry.tofu = true,
    }
    store_index(dir, &index)
}

/// Removes every pin of `repository`; true if there was an entry.
pub fn unpin(dir: &Path, repository: &str) -> Result<bool> {
    let mut index = load_index(dir)?;
    let before = index.anchor.len();
    index.anchor.retain(|e| e.repository != repository);
    if index.anchor.len() == before {
        return Ok(false);
    }
    store_index(dir, &index)?;
    Ok(true)
}
