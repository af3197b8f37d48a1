//! One NRI connection: register, be configured, answer containerd's calls.
//!
//! containerd is the ttrpc client of the plugin's service on [`PLUGIN_CONN`] and the
//! server of its runtime service on [`RUNTIME_CONN`]; both run over the one socket at
//! once (containerd configures the plugin while the registration call is still open).

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{Mutex, Semaphore};

use crate::api;
use crate::mux::{self, Demux, PLUGIN_CONN, RUNTIME_CONN};
use crate::ttrpc::{self, code, Message, Request, Response, Status};
use crate::Error;

const PLUGIN_SERVICE: &str = "nri.pkg.api.v1alpha1.Plugin";
const RUNTIME_SERVICE: &str = "nri.pkg.api.v1alpha1.Runtime";
/// The registration call's stream (the first odd ID; it is the only call we make).
const REGISTER_STREAM: u32 = 1;
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(5);
/// containerd's default `plugin_request_timeout`, until Configure says otherwise.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Calls answered at once; more are refused with an error (containerd serialises its
/// calls, so only a misbehaving peer gets there).
const MAX_IN_FLIGHT: usize = 64;
const READ_CHUNK: usize = 64 * 1024;

/// The plugin's identity in containerd: `INDEX-NAME` (NRI calls plugins in index
/// order; the index is two digits).
#[derive(Debug, Clone)]
pub struct Plugin {
    /// Name (`pullguard`): what `required_plugins` in containerd's NRI validator names.
    pub name: String,
    /// Two digits, `00`–`99`.
    pub index: String,
}

/// What containerd said about itself when it configured the plugin.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// `containerd`.
    pub name: String,
    /// containerd's version.
    pub version: String,
    /// NRI version containerd runs.
    pub nri_version: String,
    /// containerd's `plugin_registration_timeout`.
    pub registration_timeout: Duration,
    /// containerd's `plugin_request_timeout`: an answer later than this is not waited
    /// for (containerd then drops the plugin and goes on without it).
    pub request_timeout: Duration,
}

/// What the plugin does with containerd's calls.
pub trait Handler: Send + Sync + 'static {
    /// containerd configured the plugin (after registering it).
    fn configured(&self, runtime: &Runtime);
    /// containerd sent the pods and containers it has; from now on the plugin is asked
    /// about every container created.
    fn synchronized(&self, pods: usize, containers: usize);
    /// A container is about to be created: `Ok` lets it be, `Err(text)` stops it, and
    /// containerd hands `text` to the CRI caller. The answer must come within `budget`
    /// (containerd's deadline for this call).
    fn create_container(
        &self,
        request: api::CreateContainerRequest,
        budget: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The write half, shared by the tasks answering calls.
#[derive(Clone)]
struct Writer(Arc<Mutex<OwnedWriteHalf>>);

impl Writer {
    async fn send(&self, conn: u32, stream: u32, kind: u8, body: &[u8]) -> Result<(), Error> {
        let mut message = Vec::with_capacity(ttrpc::HEADER_LEN + body.len());
        ttrpc::encode(stream, kind, 0, body, &mut message)?;
        let mut frames = Vec::with_capacity(mux::HEADER_LEN + message.len());
        mux::encode(conn, &message, &mut frames);
        let mut w = self.0.lock().await;
        w.write_all(&frames).await?;
        Ok(())
    }

    /// Answers call `stream` of the plugin's service.
    async fn answer(&self, stream: u32, answer: &Response) -> Result<(), Error> {
        self.send(
            PLUGIN_CONN,
            stream,
            ttrpc::RESPONSE,
            &answer.encode_to_vec(),
        )
        .await
    }
}

/// Runs one connection to containerd's NRI socket until it ends; returns why. The
/// caller reconnects (with backoff) and so registers again.
pub async fn serve<H: Handler>(socket: &Path, plugin: &Plugin, handler: Arc<H>) -> Error {
    match run(socket, plugin, handler).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn run<H: Handler>(
    socket: &Path,
    plugin: &Plugin,
    handler: Arc<H>,
) -> Result<std::convert::Infallible, Error> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| Error::Connect {
            path: socket.to_owned(),
            source,
        })?;
    let (mut read, write) = stream.into_split();
    let writer = Writer(Arc::new(Mutex::new(write)));
    let register = Request {
        service: RUNTIME_SERVICE.to_owned(),
        method: "RegisterPlugin".to_owned(),
        payload: api::RegisterPluginRequest {
            plugin_name: plugin.name.clone(),
            plugin_idx: plugin.index.clone(),
            nri_version: String::new(),
        }
        .encode_to_vec(),
        timeout_nano: i64::try_from(REGISTRATION_TIMEOUT.as_nanos()).unwrap_or(i64::MAX),
        metadata: Vec::new(),
    };
    writer
        .send(
            RUNTIME_CONN,
            REGISTER_STREAM,
            ttrpc::REQUEST,
            &register.encode_to_vec(),
        )
        .await?;

    let request_timeout = Arc::new(AtomicU64::new(
        u64::try_from(DEFAULT_REQUEST_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
    ));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut demux = Demux::new();
    let mut plugin_conn = ttrpc::Reader::new();
    let mut runtime_conn = ttrpc::Reader::new();
    let mut registered = false;
    let registration_deadline = tokio::time::sleep(REGISTRATION_TIMEOUT);
    tokio::pin!(registration_deadline);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            n = read.read(&mut buf) => n?,
            () = &mut registration_deadline, if !registered => {
                return Err(Error::RegistrationTimeout(REGISTRATION_TIMEOUT));
            }
        };
        if n == 0 {
            return Err(Error::Closed);
        }
        demux.push(buf.get(..n).unwrap_or_default());
        while let Some(frame) = demux.next_frame()? {
            match frame.conn {
                PLUGIN_CONN => plugin_conn.push(&frame.payload),
                RUNTIME_CONN => runtime_conn.push(&frame.payload),
                // Conns nobody opened: nothing is listening there.
                other => tracing::debug!(conn = other, "NRI frame for an unknown conn dropped"),
            }
        }
        while let Some(message) = runtime_conn.next_message() {
            if let Some(outcome) = registration_answer(message) {
                outcome?;
                registered = true;
            }
        }
        while let Some(message) = plugin_conn.next_message() {
            let (stream, request) = match message {
                Message::Whole {
                    stream,
                    kind: ttrpc::REQUEST,
                    body,
                    ..
                } => (stream, Request::decode(body.as_slice())),
                Message::Oversized {
                    stream,
                    kind: ttrpc::REQUEST,
                    len,
                } => {
                    let answer = failure(
                        code::RESOURCE_EXHAUSTED,
                        format!(
                            "pullguard: a call of {len} bytes is over ttrpc's {}-byte limit",
                            ttrpc::MAX_MESSAGE
                        ),
                    );
                    writer.answer(stream, &answer).await?;
                    continue;
                }
                // containerd only calls on this conn; anything else is not for us.
                _ => continue,
            };
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let answer = failure(
                    code::RESOURCE_EXHAUSTED,
                    "pullguard: too many NRI calls at once".to_owned(),
                );
                writer.answer(stream, &answer).await?;
                continue;
            };
            let (writer, handler, timeout) =
                (writer.clone(), handler.clone(), request_timeout.clone());
            tokio::spawn(async move {
                let answer = match request {
                    Ok(request) => answer(&*handler, request, &timeout).await,
                    Err(e) => failure(
                        code::INTERNAL,
                        format!("pullguard: cannot decode the ttrpc call: {e}"),
                    ),
                };
                // A failed write breaks the connection, which the read loop then sees
                // (and reports as nri.disconnected); the answer is bounded, so only a
                // broken socket fails it.
                if let Err(e) = writer.answer(stream, &answer).await {
                    tracing::error!(error = %e, stream, "an NRI answer could not be sent");
                }
                drop(permit);
            });
        }
    }
}

/// The registration call's answer, if `message` is it.
fn registration_answer(message: Message) -> Option<Result<(), Error>> {
    match message {
        Message::Whole {
            stream: REGISTER_STREAM,
            kind: ttrpc::RESPONSE,
            body,
            ..
        } => Some(match Response::decode(body.as_slice()) {
            Ok(Response {
                status: Some(Status { code, message }),
                ..
            }) if code != code::OK => Err(Error::Registration(message)),
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Protocol(format!(
                "cannot decode the registration's answer: {e}"
            ))),
        }),
        Message::Oversized { len, .. } => Some(Err(Error::Protocol(format!(
            "an answer of {len} bytes from the runtime service"
        )))),
        Message::Whole { .. } => None,
    }
}

/// The longest status message answered, in bytes: with the rest of the answer, well
/// inside one ttrpc message, so that a refusal always arrives (an answer that cannot be
/// sent leaves containerd to create the container when its deadline passes).
pub const MAX_STATUS_MESSAGE: usize = 2048;

fn failure(code: i32, mut message: String) -> Response {
    if message.len() > MAX_STATUS_MESSAGE {
        let mut end = MAX_STATUS_MESSAGE - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    Response {
        status: Some(Status { code, message }),
        payload: Vec::new(),
    }
}

fn success(payload: Vec<u8>) -> Response {
    Response {
        status: None,
        payload,
    }
}

/// The answer to one call of the plugin's service.
async fn answer<H: Handler>(handler: &H, request: Request, timeout_ms: &AtomicU64) -> Response {
    if request.service != PLUGIN_SERVICE {
        return failure(
            code::UNIMPLEMENTED,
            format!("pullguard: no service {}", request.service),
        );
    }
    let body = request.payload.as_slice();
    match request.method.as_str() {
        "Configure" => match api::ConfigureRequest::decode(body) {
            Ok(c) => {
                let runtime = Runtime {
                    name: c.runtime_name,
                    version: c.runtime_version,
                    nri_version: c.nri_version,
                    registration_timeout: millis(c.registration_timeout),
                    request_timeout: millis(c.request_timeout),
                };
                if c.request_timeout > 0 {
                    timeout_ms.store(c.request_timeout.unsigned_abs(), Ordering::Relaxed);
                }
                handler.configured(&runtime);
                success(
                    api::ConfigureResponse {
                        events: create_container_mask(),
                    }
                    .encode_to_vec(),
                )
            }
            Err(e) => failure(code::INTERNAL, format!("pullguard: bad Configure call: {e}")),
        },
        "Synchronize" => match api::SynchronizeRequest::decode(body) {
            Ok(s) => {
                if !s.more {
                    handler.synchronized(s.pods.len(), s.containers.len());
                }
                success(
                    api::SynchronizeResponse {
                        update: Vec::new(),
                        more: s.more,
                    }
                    .encode_to_vec(),
                )
            }
            Err(e) => failure(code::INTERNAL, format!("pullguard: bad Synchronize call: {e}")),
        },
        "CreateContainer" => match api::CreateContainerRequest::decode(body) {
            Ok(c) => {
                let budget = if request.timeout_nano > 0 {
                    Duration::from_nanos(request.timeout_nano.unsigned_abs())
                } else {
                    Duration::from_millis(timeout_ms.load(Ordering::Relaxed))
                };
                match handler.create_container(c, budget).await {
                    Ok(()) => success(api::CreateContainerResponse::default().encode_to_vec()),
                    Err(text) => failure(code::PERMISSION_DENIED, text),
                }
            }
            // Fail closed: a container pullguard cannot read about is not created.
            Err(e) => failure(
                code::INTERNAL,
                format!("pullguard: cannot decode the CreateContainer call, so the container is refused: {e}"),
            ),
        },
        // Events not subscribed to, Shutdown, validation: every response message of the
        // plugin service is valid empty (no adjustments, nothing rejected).
        _ => success(Vec::new()),
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.unsigned_abs())
}

/// The subscription: bit `event - 1` per event; CreateContainer only.
fn create_container_mask() -> i32 {
    1 << (api::Event::CreateContainer as i32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_is_create_container_alone() {
        // NRI's EventMask: CreateContainer is event 4, bit 3.
        assert_eq!(create_container_mask(), 8);
    }

    #[test]
    fn long_refusal_closes_plugin_a_refusal_is_bounded_whatever_it_quotes() {
        for len in [
            10,
            MAX_STATUS_MESSAGE,
            MAX_STATUS_MESSAGE + 1,
            6_000,
            5 << 20,
        ] {
            let r = failure(
                code::PERMISSION_DENIED,
                "é".repeat(len / 2) + &"x".repeat(len % 2),
            );
            let status = r.status.clone().unwrap();
            assert!(status.message.len() <= MAX_STATUS_MESSAGE, "{len}");
            assert!(r.encode_to_vec().len() <= MAX_STATUS_MESSAGE + 16, "{len}");
            assert_eq!(status.code, code::PERMISSION_DENIED);
            if len > MAX_STATUS_MESSAGE {
                assert!(status.message.ends_with('…'), "{len}");
            }
        }
    }
}
