//! What the verifier reads back on the one-shot framing (api::oneshot) from whatever
//! answers on the socket: bounded (a length over the cap is an error, never an
//! allocation of it), never panics; and a frame it writes reads back as itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = api::oneshot::read_reply(data);
    if let Ok(req) = <api::VerifyRequest as prost::Message>::decode(data) {
        let frame = api::oneshot::request_frame(&req);
        assert_eq!(&frame[..4], api::oneshot::MAGIC);
    }
});
