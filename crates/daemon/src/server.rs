//! The gRPC service on a unix socket, with a check of each caller's credentials.

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt as _;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use crate::api::pullguard_server::Pullguard;
use crate::api::{
    Event, StatusRequest, StatusResponse, VerifyRequest, VerifyResponse, WatchEventsRequest,
};
use crate::engine::{Ask, Engine};

/// Largest image reference judged (longer ones are refused with a verdict).
const MAX_IMAGE: usize = 4096;
/// Largest digest judged: `sha512:` and 128 hex digits would be 135.
const MAX_DIGEST: usize = 160;

/// The service.
pub struct Service {
    /// The engine.
    pub engine: Arc<Engine>,
}

impl Service {
    /// Checks the caller against the policy in force now (so a uid removed by a reload is
    /// refused from its next call on); returns its credentials.
    async fn authorise<T>(&self, req: &Request<T>) -> Result<Option<Cred>, Status> {
        let loaded = self.engine.loaded();
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
            .map(|c| Cred {
                uid: c.uid(),
                gid: c.gid(),
            });
        if cred.is_some_and(|c| c.allowed(&loaded.policy.daemon)) {
            return Ok(cred);
        }
        let cred = cred.map(|c| (c.uid, c.gid));
        let who = cred.map_or_else(
            || "unknown peer".to_owned(),
            |(uid, gid)| format!("uid {uid} gid {gid}"),
        );
        let mut ev = self.engine.events.new_event(
            api::codes::EventKind::AccessDenied,
            loaded.generation,
            format!("{who} is not allowed to use the pullguard socket; add it to allowed_uids or allowed_gids in [daemon]"),
        );
        ev.reason = Some(api::codes::ReasonCode::AccessDenied.as_str().to_owned());
        let _ = self.engine.emit(ev, true).await;
        Err(Status::permission_denied(format!(
            "{who} may not call pullguardd"
        )))
    }
}

/// A caller's credentials from the socket.
#[derive(Debug, Clone, Copy)]
struct Cred {
    uid: u32,
    gid: u32,
}

impl Cred {
    fn allowed(self, settings: &policy::DaemonSettings) -> bool {
        self.uid == 0
            || self.uid == rustix::process::geteuid().as_raw()
            || settings.allowed_uids.contains(&self.uid)
            || settings.allowed_gids.contains(&self.gid)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl Pullguard for Service {
    async fn verify(
        &self,
        req: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        self.authorise(&req).await?;
        let r = req.into_inner();
        let source = match r.source.as_str() {
            "" => "unknown",
            s if s.len() > 64 => "unknown (name too long)",
            s => s,
        };
        let ask = Ask {
            source,
            dry_run: r.dry_run,
            namespace: None,
            // Every pull the verifier asks about is judged afresh.
            reuse_recent: false,
            container: None,
        };
        // Every request gets a verdict, a refusal included: a transport error could be
        // taken for "daemon down" by a client with a fail-open override.
        let v = if r.image.len() > MAX_IMAGE || r.digest.len() > MAX_DIGEST {
            let shown: String = r.image.chars().take(200).collect();
            self.engine
                .refuse(
                    &shown,
                    api::codes::ReasonCode::InvalidReference,
                    format!(
                        "the image name ({} bytes) or digest ({} bytes) is over the limit ({MAX_IMAGE} and {MAX_DIGEST} bytes); nothing that long can be checked",
                        r.image.len(),
                        r.digest.len()
                    ),
                    &ask,
                )
                .await
        } else {
            let digest = (!r.digest.is_empty()).then_some(r.digest.as_str());
            self.engine.verify(&r.image, digest, &ask).await
        };
        Ok(Response::new(v.into()))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.authorise(&req).await?;
        let loaded = self.engine.loaded();
        Ok(Response::new(StatusResponse {
            policy_generation: loaded.generation,
            policy_file: loaded.file.display().to_string(),
            policy_version: loaded.version.clone(),
            kubernetes_events: self
                .engine
                .kube_events_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            otlp: self
                .engine
                .otlp_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            events_file: self.engine.events.path().display().to_string(),
            sigstore_root: if crate::sigstore_root::in_use(&self.engine) {
                crate::sigstore_root::status(&loaded.policy.daemon.state_dir)
            } else {
                "not used by the policy".to_owned()
            },
            last_reload: self
                .engine
                .last_reload
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            cached_repositories: self.engine.cached_repositories() as u64,
            last_errors: self
                .engine
                .last_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            events_dropped: self.engine.events.dropped.load(Ordering::Relaxed),
            verdicts: self.engine.counters.verdicts.load(Ordering::Relaxed),
            watcher: self
                .engine
                .watcher_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            images_checked: self.engine.counters.images_checked.load(Ordering::Relaxed),
            images_removed: self.engine.counters.images_removed.load(Ordering::Relaxed),
            fetches: self.engine.counters.fetches.load(Ordering::Relaxed),
            cache_hits: self.engine.counters.cache_hits.load(Ordering::Relaxed),
            fetch_millis: self.engine.counters.fetch_micros.load(Ordering::Relaxed) / 1000,
            nri: self
                .engine
                .nri_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let cred = self.authorise(&req).await?;
        let engine = self.engine.clone();
        let still = self.engine.clone();
        // A caller whose access a reload revoked gets no further events.
        let stream = BroadcastStream::new(self.engine.events.subscribe())
            .take_while(move |_| cred.is_some_and(|c| c.allowed(&still.loaded().policy.daemon)))
            .filter_map(move |item| match item {
                Ok(json) => Some(Ok(Event { json })),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    engine.events.dropped.fetch_add(n, Ordering::Relaxed);
                    None
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Binds the socket: its directory 0750, the socket 0660, a stale socket replaced.
///
/// A socket a running pullguardd answers on is refused, unless `take_over`: then the new
/// socket is bound beside it and renamed over it, so that the path never lacks a
/// listener (the verifier fails closed on a missing socket). The old daemon keeps the
/// connections it has and, when it stops, leaves the path alone ([`unbind`]). The
/// Kubernetes DaemonSet starts its new pod beside the old one and takes over this way.
pub fn bind(path: &Path, take_over: bool) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
        }
    }
    let live = path.exists() && std::os::unix::net::UnixStream::connect(path).is_ok();
    if live && !take_over {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "{} is in use by a running pullguardd (--take-over replaces it)",
                path.display()
            ),
        ));
    }
    let listener = if live {
        let mut staged = path.as_os_str().to_owned();
        staged.push(format!(".{}", std::process::id()));
        let staged = std::path::PathBuf::from(staged);
        let _ = std::fs::remove_file(&staged);
        let listener = tokio::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o660))?;
        if let Err(e) = std::fs::rename(&staged, path) {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
        tracing::warn!(socket = %path.display(), "took the socket over from the running pullguardd");
        listener
    } else {
        if path.exists() {
            // Nobody answers on it: a stale socket from a crash.
            std::fs::remove_file(path)?;
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        listener
    };
    let _ = BOUND.set((path.to_path_buf(), inode(path)));
    Ok(listener)
}

/// Removes the socket at stop, unless another pullguardd has taken the path over since.
pub fn unbind() {
    if let Some((path, Some(ours))) = BOUND.get() {
        if inode(path) == Some(*ours) {
            let _ = std::fs::remove_file(path);
        } else {
            tracing::info!(socket = %path.display(), "the socket was taken over by another pullguardd; leaving it");
        }
    }
}

fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The socket this process listens on (`[daemon] socket` changes only at a restart).
static BOUND: std::sync::OnceLock<(std::path::PathBuf, Option<(u64, u64)>)> =
    std::sync::OnceLock::new();

/// Gives the socket and its directory to the first of `allowed_gids`, so that the group's
/// members can reach the socket at all (0660 and 0750 keep everyone else out); each call
/// is still checked against the policy. At start and after every reload.
pub fn grant_group(allowed_gids: &[u32]) -> std::io::Result<()> {
    let (Some((path, _)), Some(gid)) = (BOUND.get(), allowed_gids.first()) else {
        return Ok(());
    };
    let gid = Some(rustix::fs::Gid::from_raw(*gid));
    // Only a directory of pullguardd's own (0750, as bind and systemd's RuntimeDirectory
    // make it): a shared one such as /run is left alone.
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::PermissionsExt as _;
        if std::fs::metadata(dir)?.permissions().mode() & 0o7777 == 0o750 {
            rustix::fs::chown(dir, None, gid)?;
        }
    }
    rustix::fs::chown(path, None, gid)?;
    Ok(())
}
