//! The verifier's one-shot framing (api::oneshot) on pullguardd's socket: the same
//! verdicts as gRPC's Verify, and hostile frames get an error or nothing, never a
//! verdict, while other callers are served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use daemon::api::oneshot::{self, Reply};
use daemon::api::VerifyRequest;
use harness::{verify, Daemon, World};

fn rules() -> &'static str {
    "[[rule]]\nname = \"blocked\"\nmatch = \"registry.test/blocked/**\"\nrequire = \"reject\"\n\n\
     [[rule]]\nname = \"open\"\nmatch = \"registry.test/open/**\"\nrequire = \"any\"\n"
}

fn call(world: &World, req: &VerifyRequest) -> Reply {
    let s = UnixStream::connect(&world.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    oneshot::call(&s, req).unwrap()
}

/// Raw bytes after the magic; what came back (empty when the daemon just closed).
fn raw(world: &World, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(&world.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(oneshot::MAGIC).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shot_verdicts_are_the_grpc_verdicts() {
    let world = World::new();
    world.write_config(&format!("{}{}", world.daemon_section(""), rules()));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let digest = format!("sha256:{}", "a".repeat(64));
    for (image, digest) in [
        ("registry.test/blocked/app:v1", digest.as_str()),
        ("registry.test/open/app:v1", digest.as_str()),
        ("registry.test/nobody/app:v1", ""),
        ("Not A Reference", ""),
        ("registry.test/open/app:v1", "sha512:00"),
    ] {
        let req = VerifyRequest {
            image: image.into(),
            digest: digest.into(),
            source: "test".into(),
            ..VerifyRequest::default()
        };
        let Reply::Verdict(one) = call(&world, &req) else {
            panic!("{image}: a verdict");
        };
        let grpc = verify(&mut c, image, digest).await;
        assert_eq!(
            (one.allowed, &one.reason, &one.rule, &one.image),
            (grpc.allowed, &grpc.reason, &grpc.rule, &grpc.image),
            "{image}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_frames_get_an_error_or_nothing_and_others_are_still_served() {
    let world = World::new();
    world.write_config(&format!("{}{}", world.daemon_section(""), rules()));
    let daemon = Daemon::start(&world);
    // Connections that never say anything hold no one up (each gives up after 5 s).
    let silent: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&world.socket).unwrap())
        .collect();
    // A length of 4 GiB: refused before anything is read or allocated.
    let huge = raw(&world, &[0xff, 0xff, 0xff, 0xff]);
    let Reply::Status(code, message) = oneshot::read_reply(huge.as_slice()).unwrap() else {
        panic!("a status for a 4 GiB length: {huge:?}");
    };
    assert_eq!(tonic::Code::from(code), tonic::Code::InvalidArgument);
    assert!(message.contains("over 262144"), "{message}");
    // A body that is not a VerifyRequest.
    let mut garbage = 6u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 6]);
    let bad = raw(&world, &garbage);
    let Reply::Status(code, _) = oneshot::read_reply(bad.as_slice()).unwrap() else {
        panic!("a status for an undecodable body");
    };
    assert_eq!(tonic::Code::from(code), tonic::Code::InvalidArgument);
    // Cut short: an error, never a verdict.
    for cut in [&[0u8, 0][..], &[0, 0, 0, 9, 1][..]] {
        let back = raw(&world, cut);
        match oneshot::read_reply(back.as_slice()).unwrap() {
            Reply::Status(code, _) => {
                assert_eq!(tonic::Code::from(code), tonic::Code::InvalidArgument);
            }
            other => panic!("{cut:?}: {other:?}"),
        }
    }
    // Meanwhile both framings answer at once.
    let started = Instant::now();
    let req = VerifyRequest {
        image: "registry.test/blocked/app:v1".into(),
        ..VerifyRequest::default()
    };
    assert!(matches!(call(&world, &req), Reply::Verdict(v) if !v.allowed));
    let mut c = daemon.client().await;
    assert!(
        !verify(&mut c, "registry.test/blocked/app:v1", "")
            .await
            .allowed
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
