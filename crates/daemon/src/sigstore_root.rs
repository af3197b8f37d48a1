//! Sigstore's public-good trusted root as pullguardd uses it (`trusted_root =
//! "sigstore-public-good"`): the copy shipped inside pullguard, or a newer one that a TUF
//! update verified — `pullguard sigstore update-root`, or pullguardd's own refresh
//! (`[daemon] sigstore_tuf`) — kept in `STATE_DIR/sigstore-tuf/` with the TUF metadata it
//! was verified with, so that the next update can refuse a rollback.
//!
//! Where from: Sigstore's CDN, an operator's mirror (any URL serving the same layout), or
//! a directory with that layout copied onto an offline node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sigstore_tuf::{State, Updated};
use time::OffsetDateTime;

/// The files of the kept state.
const ROOT: &str = "root.json";
const TIMESTAMP: &str = "timestamp.json";
const SNAPSHOT: &str = "snapshot.json";
const TARGETS: &str = "targets.json";
const TRUSTED_ROOT: &str = "trusted_root.json";
const INFO: &str = "info.json";
/// The target Sigstore's repository signs the trusted root as.
pub const TARGET: &str = "trusted_root.json";

/// Where the state lives under `state_dir`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sigstore-tuf")
}

/// What the kept copy is, for `status` and events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    /// The repository it came from.
    pub repository: String,
    /// When it was verified (RFC 3339).
    pub updated: String,
    /// The TUF root version trusted then.
    pub root_version: u64,
    /// That root's expiry (RFC 3339).
    pub root_expires: String,
    /// The timestamp's expiry: the next update is due before it.
    pub timestamp_expires: String,
    /// The targets role's version.
    pub targets_version: u64,
}

/// The trusted root to use: the verified copy in `state_dir` when there is one, else the
/// shipped one. A kept copy that cannot be read is an error (not a silent fallback to an
/// older root); a missing one is not.
pub fn current(state_dir: &Path) -> Result<(Vec<u8>, Option<Info>), String> {
    let d = dir(state_dir);
    let read = |name: &str| {
        key_store::read_secure(&d.join(name), sigstore_tuf::MAX_TARGET)
            .map_err(|e| format!("the Sigstore trusted root kept in {}: {e}", d.display()))
    };
    match read(TRUSTED_ROOT)? {
        Some(bytes) => {
            let info = read(INFO)?.and_then(|b| serde_json::from_slice(&b).ok());
            Ok((bytes, info))
        }
        None => Ok((
            sigstore_core::trust_root::public_good_bytes().to_vec(),
            None,
        )),
    }
}

/// Copies the verified trusted root kept in `from` (a node's state directory) into
/// `to`, so that verdicts made over `to` use the root the node's pullguardd uses; true
/// if there was one. Nothing is copied when `from` keeps none (the shipped root is
/// the node's too).
pub fn adopt(from: &Path, to: &Path) -> Result<bool, String> {
    let src = dir(from);
    match std::fs::symlink_metadata(&src) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", src.display())),
        Ok(_) => {}
    }
    let (bytes, _) = current(from)?;
    let dst = dir(to);
    key_store::private_dir(&dst).map_err(|e| e.to_string())?;
    key_store::write_atomic(&dst.join(TRUSTED_ROOT), &bytes).map_err(|e| e.to_string())?;
    Ok(true)
}

/// The outcome of a refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// What is kept now.
    pub info: Info,
    /// The trusted root's bytes changed.
    pub changed: bool,
}

/// Updates the kept copy from `repository` (a URL or a directory) at `now`, starting
/// from the kept TUF state, else from `initial_root` (else the embedded root).
pub async fn refresh(
    repository: &str,
    state_dir: &Path,
    initial_root: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<Refreshed, String> {
    let d = dir(state_dir);
    let read = |name: &str| {
        key_store::read_secure(&d.join(name), sigstore_tuf::MAX_METADATA)
            .map_err(|e| format!("{}: {e}", d.join(name).display()))
    };
    let state = match read(ROOT)? {
        Some(root) => State {
            root,
            timestamp: read(TIMESTAMP)?,
            snapshot: read(SNAPSHOT)?,
            targets: read(TARGETS)?,
        },
        None => State::from_root(initial_root.unwrap_or(sigstore_tuf::EMBEDDED_ROOT).to_vec()),
    };
    let previous = read(TRUSTED_ROOT)?;
    let repo = repository.trim_end_matches('/').to_owned();
    let handle = tokio::runtime::Handle::current();
    let updated: Updated = tokio::task::spawn_blocking(move || {
        let mut fetch: Box<dyn sigstore_tuf::Fetch> =
            if repo.starts_with("https://") || repo.starts_with("http://") {
                Box::new(Http::new(&repo, handle)?)
            } else {
                Box::new(Dir(PathBuf::from(&repo)))
            };
        sigstore_tuf::update(&state, fetch.as_mut(), now, TARGET).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the update stopped: {e}"))??;
    let info = Info {
        repository: repository.to_owned(),
        updated: trust_core::rfc3339(now),
        root_version: updated.root_version,
        root_expires: trust_core::rfc3339(updated.root_expires),
        timestamp_expires: trust_core::rfc3339(updated.timestamp_expires),
        targets_version: updated.targets_version,
    };
    // Checked before it is kept: a trusted root pullguard cannot use is refused now, not
    // at the next reload.
    sigstore_core::trust_root::TrustedRoot::parse(&updated.target)
        .map_err(|e| format!("the verified trusted_root.json does not parse: {e}"))?;
    let write = |name: &str, bytes: &[u8]| {
        key_store::write_atomic(&d.join(name), bytes)
            .map_err(|e| format!("{}: {e}", d.join(name).display()))
    };
    key_store::private_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    let s = &updated.state;
    write(ROOT, &s.root)?;
    for (name, bytes) in [
        (TIMESTAMP, &s.timestamp),
        (SNAPSHOT, &s.snapshot),
        (TARGETS, &s.targets),
    ] {
        if let Some(b) = bytes {
            write(name, b)?;
        }
    }
    write(TRUSTED_ROOT, &updated.target)?;
    write(
        INFO,
        &serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?,
    )?;
    Ok(Refreshed {
        changed: previous.as_deref() != Some(updated.target.as_slice()),
        info,
    })
}

/// A repository laid out in a directory.
struct Dir(PathBuf);

impl sigstore_tuf::Fetch for Dir {
    fn fetch(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        use std::io::Read as _;
        // Names come from signed metadata and our own formats; never leave the directory.
        if path.split('/').any(|p| p.is_empty() || p == "..") {
            return Err(format!("{path:?} is not a file name of the repository"));
        }
        let file = match std::fs::File::open(self.0.join(path)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut bytes = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        Ok(Some(bytes))
    }
}

/// A repository over HTTP(S): Sigstore's CDN or a mirror.
struct Http {
    base: String,
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

impl Http {
    fn new(base: &str, handle: tokio::runtime::Handle) -> Result<Http, String> {
        notary_client::use_ring_for_tls();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("pullguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| api::error_chain(&e))?;
        Ok(Http {
            base: base.to_owned(),
            client,
            handle,
        })
    }
}

impl sigstore_tuf::Fetch for Http {
    fn fetch(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let url = format!("{}/{path}", self.base);
        self.handle.block_on(async {
            let mut resp = self
                .client
                .get(&url)
                .send()
                .await
                .map_err(|e| api::error_chain(&e))?;
            // A missing file is how a repository says "no newer root"; some stores
            // answer 403 for it.
            if matches!(resp.status().as_u16(), 403 | 404) {
                return Ok(None);
            }
            if !resp.status().is_success() {
                return Err(format!("{url} answered {}", resp.status()));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| api::error_chain(&e))? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > max {
                    return Err(format!("{url} sent more than {max} bytes"));
                }
            }
            Ok(Some(bytes))
        })
    }
}

/// The reload trigger a changed trusted root sends: the policy is prepared again with it.
pub const TRIGGER: &str = "the Sigstore trusted root was updated";

/// Warn this long before the kept TUF metadata expires.
const EXPIRING: time::Duration = time::Duration::days(7);

/// Does any rule of the policy in force use the public-good root?
pub fn in_use(engine: &crate::engine::Engine) -> bool {
    let loaded = engine.loaded();
    loaded.policy.rules.iter().any(|r| {
        r.cosign
            .trusted_root
            .as_deref()
            .is_some_and(|p| p.as_os_str() == sigstore_core::trust_root::PUBLIC_GOOD)
    })
}

/// pullguardd's refresh: while a rule uses the public-good root and `[daemon]
/// sigstore_tuf` names a repository, update from it every `sigstore_tuf_interval` (the
/// first a few seconds after start, so that a daemon restarted in a loop does not hammer
/// the repository), reload the policy when the root changed, and say in an event when an
/// update fails or the kept metadata is about to expire.
pub fn keep_fresh(
    engine: std::sync::Arc<crate::engine::Engine>,
    reload: tokio::sync::mpsc::Sender<&'static str>,
) {
    tokio::spawn(async move {
        let mut wait = Duration::from_secs(5);
        loop {
            tokio::time::sleep(wait).await;
            let loaded = engine.loaded();
            let d = &loaded.policy.daemon;
            wait = d.sigstore_tuf_interval;
            let Some(repository) = d.sigstore_tuf.clone() else {
                continue;
            };
            if !in_use(&engine) {
                continue;
            }
            let now = OffsetDateTime::now_utc();
            let (kind, message) =
                match refresh(&repository, &d.state_dir, None, now).await {
                    Ok(r) if r.changed => {
                        let _ = reload.send(TRIGGER).await;
                        (
                            Some(api::codes::EventKind::TrustRootUpdated),
                            describe(&r.info),
                        )
                    }
                    Ok(_) => (None, String::new()),
                    Err(e) => (
                        Some(api::codes::EventKind::TrustRootUpdateFailed),
                        format!("the Sigstore trusted root could not be refreshed from {repository}: {e}; the kept copy stays in use (pullguard sigstore update-root --repository DIR updates an offline node)"),
                    ),
                };
            if let Some(kind) = kind {
                let ev = engine.events.new_event(kind, loaded.generation, message);
                let _ = engine.emit(ev, true).await;
            }
            if let Some(m) = expiring(&d.state_dir, now) {
                let ev = engine.events.new_event(
                    api::codes::EventKind::TrustRootExpiring,
                    loaded.generation,
                    m,
                );
                let _ = engine.emit(ev, true).await;
            }
        }
    });
}

/// One line about the kept copy, for `status` and events.
pub fn describe(i: &Info) -> String {
    format!(
        "TUF root version {} (expires {}), timestamp expires {}, targets version {}, updated {} from {}",
        i.root_version, i.root_expires, i.timestamp_expires, i.targets_version, i.updated, i.repository
    )
}

/// What `status` says of the public-good root in use.
pub fn status(state_dir: &Path) -> String {
    match current(state_dir) {
        // An expired (or soon expiring) copy is said where an operator looks first, not
        // only in the event of the daily check.
        Ok((_, Some(info))) => match expiring_of(&info, OffsetDateTime::now_utc()) {
            Some(warning) => format!("{}; warning: {warning}", describe(&info)),
            None => describe(&info),
        },
        Ok((_, None)) => "the copy shipped with pullguard (no TUF update kept yet)".to_owned(),
        Err(e) => e,
    }
}

/// A warning when the kept TUF root or timestamp expires within [`EXPIRING`] of `now`.
fn expiring(state_dir: &Path, now: OffsetDateTime) -> Option<String> {
    let (_, info) = current(state_dir).ok()?;
    expiring_of(&info?, now)
}

/// [`expiring`] of a kept copy already read.
fn expiring_of(info: &Info, now: OffsetDateTime) -> Option<String> {
    let parse =
        |s: &str| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok();
    for (what, at) in [
        ("root", &info.root_expires),
        ("timestamp", &info.timestamp_expires),
    ] {
        let at = parse(at)?;
        if at <= now + EXPIRING {
            let tense = if at <= now { "expired" } else { "expires" };
            return Some(format!(
                "the Sigstore trusted root's TUF {what} (root version {}) {tense} at {}: no update has succeeded since {}; keyless signatures made with keys Sigstore rotates in will be refused until one does",
                info.root_version,
                trust_core::rfc3339(at),
                info.updated
            ));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    /// `verify --policy` and `policy diff` judge with the root the node keeps: a kept
    /// copy is carried into their scratch state; none kept, none carried (the shipped
    /// root is the node's too); one that cannot be trusted is an error to show, not a
    /// silent fallback.
    #[test]
    fn the_nodes_kept_root_is_carried_into_a_scratch_state() {
        let node = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        assert!(!super::adopt(node.path(), scratch.path()).unwrap());
        assert_eq!(
            super::current(scratch.path()).unwrap().0,
            sigstore_core::trust_root::public_good_bytes()
        );
        let kept = super::dir(node.path());
        key_store::private_dir(&kept).unwrap();
        key_store::write_atomic(&kept.join(super::TRUSTED_ROOT), b"{\"kept\":1}").unwrap();
        assert!(super::adopt(node.path(), scratch.path()).unwrap());
        assert_eq!(super::current(scratch.path()).unwrap().0, b"{\"kept\":1}");
        std::fs::set_permissions(
            kept.join(super::TRUSTED_ROOT),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let other = tempfile::tempdir().unwrap();
        let e = super::adopt(node.path(), other.path()).unwrap_err();
        assert!(e.contains("writable by group or others"), "{e}");
    }
}
