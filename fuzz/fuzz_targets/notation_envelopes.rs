//! What a registry hands pullguardd as Notation signatures: JWS and COSE envelopes (and
//! the CBOR inside). Never panics, and nothing vouches for a manifest nothing signs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use notation_core::{envelope, Level, Target, Trust};

fuzz_target!(|data: &[u8]| {
    let _ = notation_core::cbor::decode(data);
    let target = Target {
        digest: "sha256:abababababababababababababababababababababababababababababababab",
        size: 7,
        media_type: "application/vnd.oci.image.manifest.v1+json",
    };
    let ids = ["*".to_owned()];
    let trust = Trust {
        ca: &[],
        signing_authority: &[],
        tsa: &[],
        identities: &ids,
        level: Level::Audit,
        now: time::OffsetDateTime::UNIX_EPOCH,
    };
    for media in [envelope::JWS, envelope::COSE] {
        let _ = envelope::parse(media, data);
        assert!(notation_core::verify(media, data, &target, &trust).is_err());
    }
});
