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

/// Largest image reference accepted.
const MAX_IMAGE: usize = 4096;

/// The service.
pub struct Service {
    /// The engine.
    pub engine: Arc<Engine>,
}

impl Service {
    async fn authorise<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let loaded = self.engine.loaded();
        let settings = &loaded.policy.daemon;
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred);
        let me = rustix::process::geteuid().as_raw();
        let ok = cred.is_some_and(|c| {
            c.uid() == 0
                || c.uid() == me
                || settings.allowed_uids.contains(&c.uid())
                || settings.allowed_gids.contains(&c.gid())
        });
        if ok {
            return Ok(());
        }
        let who = cred.map_or_else(
            || "unknown peer".to_owned(),
            |c| format!("uid {} gid {}", c.uid(), c.gid()),
        );
        let mut ev = self.engine.events.new_event(
            "access.denied",
            loaded.generation,
            format!("{who} is not allowed to use the pullguard socket; add it to allowed_uids or allowed_gids in [daemon]"),
        );
        ev.reason = Some("access_denied".to_owned());
        let _ = self.engine.emit(ev, true).await;
        Err(Status::permission_denied(format!(
            "{who} may not call pullguardd"
        )))
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
        if r.image.len() > MAX_IMAGE || r.digest.len() > 128 || r.source.len() > 64 {
            return Err(Status::invalid_argument("image, digest or source too long"));
        }
        let digest = (!r.digest.is_empty()).then_some(r.digest.as_str());
        let source = if r.source.is_empty() {
            "unknown"
        } else {
            r.source.as_str()
        };
        let v = self
            .engine
            .verify(
                &r.image,
                digest,
                &Ask {
                    source,
                    dry_run: r.dry_run,
                    namespace: None,
                },
            )
            .await;
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
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.authorise(&req).await?;
        let engine = self.engine.clone();
        let stream =
            BroadcastStream::new(self.engine.events.subscribe()).filter_map(
                move |item| match item {
                    Ok(json) => Some(Ok(Event { json })),
                    Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                        engine.events.dropped.fetch_add(n, Ordering::Relaxed);
                        None
                    }
                },
            );
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Binds the socket: its directory 0750, the socket 0660, a stale socket replaced.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
        }
    }
    if path.exists() {
        // Only replace a socket nobody answers on.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running pullguardd", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}
