//! A Verify request off the socket: protobuf decoding, then the checks the server makes
//! before the engine sees it (sizes, reference, digest form).
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = api::VerifyRequest::decode(data) {
        let _ = policy::ImageRef::parse(&req.image);
        let _ = req.digest.strip_prefix("sha256:").map(|h| h.len() == 64);
    }
    let _ = api::StatusRequest::decode(data);
});
