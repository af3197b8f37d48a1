//! The plugin session against a scripted peer speaking NRI's wire protocol: the paths a
//! real containerd never takes (oversized and undecodable calls, unknown services, a
//! refused or unanswered registration). The session under a real containerd 2.x:
//! crates/daemon/tests/nri.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use nri::ttrpc::{self, code, Message, Request, Response};
use nri::{api, mux, Error, Handler, Plugin, Runtime};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

/// Allows containers whose image annotation says "ok", refuses the rest.
struct Stub;

impl Handler for Stub {
    fn configured(&self, _: &Runtime) {}
    fn synchronized(&self, _: usize, _: usize) {}
    async fn create_container(
        &self,
        request: api::CreateContainerRequest,
        _: Duration,
    ) -> Result<(), String> {
        let image = request
            .container
            .and_then(|c| c.annotations.get(nri::IMAGE_NAME_ANNOTATION).cloned());
        match image.as_deref() {
            Some("ok") => Ok(()),
            other => Err(format!("refused {other:?}")),
        }
    }
}

/// containerd's side of one connection.
struct Peer {
    conn: UnixStream,
    demux: mux::Demux,
    plugin: ttrpc::Reader,
    runtime: ttrpc::Reader,
}

impl Peer {
    async fn send(&mut self, conn: u32, stream: u32, kind: u8, body: &[u8]) {
        let mut msg = Vec::new();
        ttrpc::encode(stream, kind, 0, body, &mut msg).unwrap();
        let mut wire = Vec::new();
        mux::encode(conn, &msg, &mut wire);
        self.conn.write_all(&wire).await.unwrap();
    }

    /// The next message on `conn` (1: the plugin's answers, 2: its calls).
    async fn next(&mut self, conn: u32) -> (u32, Vec<u8>) {
        let mut buf = [0u8; 4096];
        loop {
            let reader = if conn == mux::PLUGIN_CONN {
                &mut self.plugin
            } else {
                &mut self.runtime
            };
            if let Some(Message::Whole { stream, body, .. }) = reader.next_message() {
                return (stream, body);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.conn.read(&mut buf))
                .await
                .expect("the plugin answers")
                .unwrap();
            assert!(n > 0, "the plugin closed the connection");
            self.demux.push(&buf[..n]);
            while let Some(f) = self.demux.next_frame().unwrap() {
                match f.conn {
                    mux::PLUGIN_CONN => self.plugin.push(&f.payload),
                    mux::RUNTIME_CONN => self.runtime.push(&f.payload),
                    other => panic!("frame for conn {other}"),
                }
            }
        }
    }

    /// Calls the plugin's service; returns its answer.
    async fn call(
        &mut self,
        stream: u32,
        service: &str,
        method: &str,
        payload: Vec<u8>,
    ) -> Response {
        let req = Request {
            service: service.to_owned(),
            method: method.to_owned(),
            payload,
            timeout_nano: 2_000_000_000,
            metadata: vec![],
        };
        self.send(
            mux::PLUGIN_CONN,
            stream,
            ttrpc::REQUEST,
            &req.encode_to_vec(),
        )
        .await;
        let (s, body) = self.next(mux::PLUGIN_CONN).await;
        assert_eq!(s, stream);
        Response::decode(body.as_slice()).unwrap()
    }
}

const PLUGIN: &str = "nri.pkg.api.v1alpha1.Plugin";

/// A listening "containerd" and the plugin's session running against it.
async fn connected(
    answer_registration: Option<i32>,
) -> (Peer, tokio::task::JoinHandle<Error>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nri.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let plugin = Plugin {
        name: "pullguard".into(),
        index: "00".into(),
    };
    let session = tokio::spawn(async move { nri::serve(&path, &plugin, Arc::new(Stub)).await });
    let (conn, _) = listener.accept().await.unwrap();
    let mut peer = Peer {
        conn,
        demux: mux::Demux::new(),
        plugin: ttrpc::Reader::new(),
        runtime: ttrpc::Reader::new(),
    };
    let (stream, body) = peer.next(mux::RUNTIME_CONN).await;
    let reg = Request::decode(body.as_slice()).unwrap();
    assert_eq!(
        (reg.service.as_str(), reg.method.as_str()),
        ("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin")
    );
    let r = api::RegisterPluginRequest::decode(reg.payload.as_slice()).unwrap();
    assert_eq!(
        (r.plugin_name.as_str(), r.plugin_idx.as_str()),
        ("pullguard", "00")
    );
    if let Some(c) = answer_registration {
        let status = (c != code::OK).then(|| ttrpc::Status {
            code: c,
            message: "plugin name taken".into(),
        });
        let answer = Response {
            status,
            payload: vec![],
        };
        peer.send(
            mux::RUNTIME_CONN,
            stream,
            ttrpc::RESPONSE,
            &answer.encode_to_vec(),
        )
        .await;
    }
    (peer, session, dir)
}

fn create(image: Option<&str>) -> Vec<u8> {
    api::CreateContainerRequest {
        pod: None,
        container: Some(api::Container {
            name: "app".into(),
            annotations: image
                .map(|i| [(nri::IMAGE_NAME_ANNOTATION.to_owned(), i.to_owned())].into())
                .unwrap_or_default(),
            ..Default::default()
        }),
    }
    .encode_to_vec()
}

fn code_of(r: &Response) -> i32 {
    r.status.as_ref().map_or(code::OK, |s| s.code)
}

#[tokio::test]
async fn configure_subscribes_to_create_container_and_refusals_carry_the_handlers_text() {
    let (mut peer, _session, _dir) = connected(Some(code::OK)).await;
    let r = peer
        .call(
            1,
            PLUGIN,
            "Configure",
            api::ConfigureRequest::default().encode_to_vec(),
        )
        .await;
    assert_eq!(code_of(&r), code::OK);
    assert_eq!(
        api::ConfigureResponse::decode(r.payload.as_slice())
            .unwrap()
            .events,
        8
    );

    let r = peer
        .call(3, PLUGIN, "CreateContainer", create(Some("ok")))
        .await;
    assert_eq!(code_of(&r), code::OK);
    let r = peer
        .call(5, PLUGIN, "CreateContainer", create(Some("bad")))
        .await;
    let s = r.status.unwrap();
    assert_eq!(
        (s.code, s.message.as_str()),
        (code::PERMISSION_DENIED, "refused Some(\"bad\")")
    );
}

#[tokio::test]
async fn undecodable_oversized_and_unknown_calls_never_let_a_container_through() {
    let (mut peer, _session, _dir) = connected(Some(code::OK)).await;
    // A CreateContainer whose body does not decode: refused, not allowed.
    let r = peer
        .call(1, PLUGIN, "CreateContainer", vec![0xff, 0xff, 0xff])
        .await;
    assert_eq!(code_of(&r), code::INTERNAL);
    assert!(r.status.unwrap().message.contains("refused"));
    // Another service: unimplemented.
    let r = peer
        .call(3, "some.Other", "CreateContainer", create(Some("ok")))
        .await;
    assert_eq!(code_of(&r), code::UNIMPLEMENTED);
    // A call over ttrpc's 4 MiB: answered with an error, and the session goes on.
    let body = vec![0u8; ttrpc::MAX_MESSAGE + 1];
    let mut msg = (u32::try_from(body.len()).unwrap()).to_be_bytes().to_vec();
    msg.extend_from_slice(&7u32.to_be_bytes());
    msg.extend_from_slice(&[ttrpc::REQUEST, 0]);
    msg.extend_from_slice(&body);
    let mut wire = Vec::new();
    mux::encode(mux::PLUGIN_CONN, &msg, &mut wire);
    peer.conn.write_all(&wire).await.unwrap();
    let (stream, answer) = peer.next(mux::PLUGIN_CONN).await;
    assert_eq!(stream, 7);
    assert_eq!(
        code_of(&Response::decode(answer.as_slice()).unwrap()),
        code::RESOURCE_EXHAUSTED
    );
    let r = peer
        .call(9, PLUGIN, "CreateContainer", create(Some("ok")))
        .await;
    assert_eq!(code_of(&r), code::OK);
}

#[tokio::test]
async fn a_refused_registration_ends_the_session_with_containerds_reason() {
    let (_peer, session, _dir) = connected(Some(code::INTERNAL)).await;
    let e = session.await.unwrap();
    assert!(
        matches!(&e, Error::Registration(m) if m == "plugin name taken"),
        "{e}"
    );
}

#[tokio::test]
async fn an_oversized_multiplexer_frame_ends_the_session() {
    let (mut peer, session, _dir) = connected(Some(code::OK)).await;
    let mut wire = mux::PLUGIN_CONN.to_be_bytes().to_vec();
    wire.extend_from_slice(&u32::MAX.to_be_bytes());
    peer.conn.write_all(&wire).await.unwrap();
    let e = session.await.unwrap();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
}

#[tokio::test]
async fn a_closed_connection_ends_the_session() {
    let (peer, session, _dir) = connected(Some(code::OK)).await;
    drop(peer);
    assert!(matches!(session.await.unwrap(), Error::Closed));
}
