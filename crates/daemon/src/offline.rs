//! The daemon's offline facade: what other programs (the `pullguard` CLI) may use of
//! this crate, and nothing else. Verdicts without a running daemon (the daemon's own
//! engine, in this process, over a policy file: `verify --policy`, `policy diff`), the
//! daemon's own validation of a policy file (`policy check`), and the images in a
//! containerd (`policy diff --containerd`).
//!
//! Trust data is fetched from the policy's trust servers as the daemon would. The
//! node's trusted state is not touched: a fresh state in a temporary directory is used,
//! so repositories without a pinned root are trusted on first use where the rule allows
//! it, and rollback protection only covers this run. Pins in the keys directory apply,
//! and so does the Sigstore trusted root the node keeps (a TUF refresh's), when this
//! user can read it (otherwise a note says the shipped one is used).

use std::path::Path;
use std::sync::Arc;

use crate::engine::{Ask, Engine, Loaded};

/// An engine over one policy file.
pub struct Offline {
    engine: Engine,
    _scratch: tempfile::TempDir,
    notes: Vec<String>,
}

impl Offline {
    /// Loads `path`; errors are the policy's problems, with line and column.
    pub fn load(path: &Path) -> Result<Offline, String> {
        let mut policy = policy::Policy::load(path).map_err(|e| e.to_string())?;
        let scratch =
            tempfile::tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
        let node_state =
            std::mem::replace(&mut policy.daemon.state_dir, scratch.path().join("state"));
        policy.daemon.events_file = scratch.path().join("events.jsonl");
        policy.daemon.containerd_socket = None;
        let state =
            key_store::StateStore::open(&policy.daemon.state_dir).map_err(|e| e.to_string())?;
        // Sigstore's trusted root as this node keeps it (a TUF refresh may have replaced
        // the one shipped), so that the verdicts are the ones pullguardd would give.
        let mut notes = Vec::new();
        let shipped_root = policy.rules.iter().any(|r| {
            r.cosign.trusted_root.as_deref()
                == Some(Path::new(sigstore_core::trust_root::PUBLIC_GOOD))
        });
        let adopted = if shipped_root {
            crate::sigstore_root::adopt(&node_state, &policy.daemon.state_dir)
        } else {
            Ok(false)
        };
        if let Err(e) = adopted {
            notes.push(format!(
                "the node's Sigstore trusted root cannot be read ({e}); verdicts here use the one shipped in pullguard (run as root to use the node's)"
            ));
        }
        let events = crate::events::EventLog::open(&policy.daemon.events_file, u64::MAX, 0)
            .map_err(|e| format!("cannot open a scratch events file: {e}"))?;
        let loaded = Loaded::prepare(policy, 1, path).map_err(|p| p.join("; "))?;
        Ok(Offline {
            engine: Engine::new(loaded, state, Arc::new(events)),
            _scratch: scratch,
            notes,
        })
    }

    /// What differs from the node's own pullguardd, to show beside the verdicts.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The verdict for `image` (and the digest it resolved to, if known).
    pub async fn verify(&self, image: &str, digest: Option<&str>) -> api::VerifyResponse {
        let ask = Ask {
            source: "cli-offline",
            dry_run: true,
            namespace: None,
            reuse_recent: false,
            container: None,
        };
        let mut v: api::VerifyResponse = self.engine.verify(image, digest, &ask).await.into();
        // The scratch events file is thrown away: no event ID to show.
        v.event_id.clear();
        v
    }
}

/// Validates `policy` as pullguardd would before loading it: trust-server CA files,
/// pinned certificates, the keys directory and its permissions. Every problem, each
/// naming what is at fault.
pub fn check(policy: policy::Policy, file: &Path) -> Result<policy::Policy, Vec<String>> {
    // pullguardd refuses to start on (and to reload) a policy file others can write.
    crate::engine::check_policy_file(file).map_err(|e| vec![e])?;
    let loaded = Loaded::prepare(policy, 1, file)?;
    // pullguardd loads such a policy (so that deleting a revoked key takes effect), with
    // the rule refusing everything; a check before a rollout says so as an error.
    let gone = loaded.gone_files();
    if !gone.is_empty() {
        return Err(gone
            .into_iter()
            .map(|g| {
                format!(
                    "{g}: {}; pullguardd would load the policy with this rule counting no signature of this kind",
                    std::io::Error::from_raw_os_error(2)
                )
            })
            .collect());
    }
    Ok(loaded.policy)
}

/// Every image in every namespace of the containerd at `socket`: (namespace, name,
/// target digest).
pub async fn containerd_images(
    socket: &Path,
) -> Result<Vec<(String, String, String)>, crate::watcher::ContainerdError> {
    crate::watcher::list_all(socket).await
}
