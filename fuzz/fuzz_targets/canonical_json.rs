//! Canonical JSON (what every signature is over): parsing arbitrary bytes never panics;
//! both entry points agree; canonical output free of control characters (which
//! Notary's encoder writes raw, so such output is not JSON) parses back to itself; and
//! text `is_canonical` takes as it is re-encodes to exactly itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trust_core::canonical::{canonicalize, is_canonical, Json};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Json::parse(data) {
        let once = v.to_canonical();
        assert_eq!(canonicalize(data).ok().as_deref(), Some(once.as_slice()));
        if !once.iter().any(|b| *b < 0x20) {
            let again = Json::parse(&once).expect("canonical output parses");
            assert_eq!(once, again.to_canonical(), "canonical form is stable");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if is_canonical(text) {
            let again = canonicalize(data).expect("text taken as canonical parses");
            assert_eq!(again, data, "text taken as canonical re-encodes to itself");
        }
    }
});
