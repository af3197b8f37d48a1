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
pub(crate) const MAX_IMAGE: usize = 4096;
/// Largest digest judged: `sha512:` and 128 hex digits would be 135.
const MAX_DIGEST: usize = 160;

/// The source the verifier containerd runs at pull time names itself by.
const VERIFIER_SOURCE: &str = "containerd-bindir";

/// The host containerd pulls `image` from, when the policy would read the name on
/// another registry: containerd's own parser (ctr, the transfer service) takes a name's
/// first part as its host, while Docker's normalisation (CRI, and the rules) reads
/// `myorg/app` as `docker.io/myorg/app`. The two agree on every name CRI passes on.
fn containerd_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (!policy::names_a_host(first)).then_some(first)
}

/// The service.
pub struct Service {
    /// The engine.
    pub engine: Arc<Engine>,
}

impl Service {
    /// Checks the caller against the policy in force now (so a uid removed by a reload is
    /// refused from its next call on); returns its credentials.
    async fn authorise<T>(&self, req: &Request<T>) -> Result<Option<Cred>, Status> {
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
            .map(|c| Cred {
                uid: c.uid(),
                gid: c.gid(),
            });
        self.authorise_cred(cred).await
    }

    /// [`Service::authorise`] for credentials read from the socket directly.
    async fn authorise_cred(&self, cred: Option<Cred>) -> Result<Option<Cred>, Status> {
        let loaded = self.engine.loaded();
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
        ev.reason = Some(api::codes::ReasonCode::AccessDenied);
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
        Ok(Response::new(self.judge(req.into_inner()).await))
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
            kubernetes_events: self.engine.kube_events_state.get(),
            otlp: self.engine.otlp_state.get(),
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
            watcher: self.engine.watcher_state.get(),
            images_checked: self.engine.counters.images_checked.load(Ordering::Relaxed),
            images_removed: self.engine.counters.images_removed.load(Ordering::Relaxed),
            fetches: self.engine.counters.fetches.load(Ordering::Relaxed),
            cache_hits: self.engine.counters.cache_hits.load(Ordering::Relaxed),
            fetch_millis: self.engine.counters.fetch_micros.load(Ordering::Relaxed) / 1000,
            nri: self.engine.nri_state.get(),
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

impl Service {
    /// The verdict on one Verify request of an authorised caller (gRPC or one-shot).
    async fn judge(&self, r: VerifyRequest) -> VerifyResponse {
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
        } else if let Some(host) = (source == VERIFIER_SOURCE)
            .then(|| containerd_host(&r.image))
            .flatten()
        {
            self.engine
                .refuse(
                    &r.image,
                    api::codes::ReasonCode::InvalidReference,
                    format!(
                        "containerd pulls {} from the host {host:?} (its first part), while the policy's rules read the name as Docker Hub's; pull it by its full name (docker.io/{}, or the real registry's host)",
                        r.image, r.image
                    ),
                    &ask,
                )
                .await
        } else {
            let digest = (!r.digest.is_empty()).then_some(r.digest.as_str());
            self.engine.verify(&r.image, digest, &ask).await
        };
        v.into()
    }

    /// One one-shot Verify call ([`api::oneshot`]) on a connection whose first four
    /// bytes were the magic: read, authorise by the socket's peer credentials, judge,
    /// answer. Bounded in size and time like a gRPC call.
    pub(crate) async fn oneshot(&self, mut stream: tokio::net::UnixStream) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let cred = stream.peer_cred().ok().map(|c| Cred {
            uid: c.uid(),
            gid: c.gid(),
        });
        let read = async {
            let len = stream.read_u32().await? as usize;
            if len > api::oneshot::MAX_REQUEST {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "a request of {len} bytes, over {}",
                        api::oneshot::MAX_REQUEST
                    ),
                ));
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            Ok(body)
        };
        let started = std::time::Instant::now();
        let reply = match tokio::time::timeout(ONESHOT_READ, read).await {
            Ok(Ok(body)) => match <VerifyRequest as prost::Message>::decode(body.as_slice()) {
                Ok(req) => match self.authorise_cred(cred).await {
                    Ok(_) => Ok(self.judge(req).await),
                    Err(status) => Err((status.code() as i32, status.message().to_owned())),
                },
                Err(e) => Err((
                    tonic::Code::InvalidArgument as i32,
                    format!("undecodable request: {e}"),
                )),
            },
            Ok(Err(e)) => Err((tonic::Code::InvalidArgument as i32, e.to_string())),
            Err(_) => return,
        };
        let _ = tokio::time::timeout(
            ONESHOT_READ,
            stream.write_all(&api::oneshot::reply_frame(&reply)),
        )
        .await;
        // The daemon's whole share of a verdict, beside the phases a cold one logs.
        tracing::debug!(
            us = started.elapsed().as_micros(),
            "one-shot verdict answered"
        );
    }
}

/// How long a connection may take to say which protocol it speaks, and a one-shot
/// request to arrive (the verifier sends all of it at once).
const ONESHOT_READ: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection handed to the gRPC server after its first bytes were read to tell the
/// framings apart: those bytes are read again first.
pub struct Sniffed {
    head: [u8; 4],
    at: usize,
    inner: tokio::net::UnixStream,
}

impl tokio::io::AsyncRead for Sniffed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at < self.head.len() {
            let n = (self.head.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            return std::task::Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Sniffed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Sniffed {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts connections on `listener`: one-shot Verify calls are answered here, the rest
/// (gRPC) go to the returned stream, for tonic's server.
pub fn incoming(
    listener: tokio::net::UnixListener,
    service: Arc<Service>,
) -> impl Stream<Item = std::io::Result<Sniffed>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Sniffed>>(64);
    tokio::spawn(async move {
        while !tx.is_closed() {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: say so, wait, go on.
                    tracing::warn!("accepting a connection on the socket failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let tx = tx.clone();
            let service = service.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut stream = stream;
                let mut head = [0u8; 4];
                match tokio::time::timeout(ONESHOT_READ, stream.read_exact(&mut head)).await {
                    Ok(Ok(_)) if &head == api::oneshot::MAGIC => service.oneshot(stream).await,
                    Ok(Ok(_)) => {
                        let sniffed = Sniffed {
                            head,
                            at: 0,
                            inner: stream,
                        };
                        let _ = tx.send(Ok(sniffed)).await;
                    }
                    // Closed, or silent for too long: nothing to serve.
                    _ => {}
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
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
