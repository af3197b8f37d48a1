//! Image references as pulls name them (untrusted: pod specs, ctr arguments): parsing
//! never panics, and a parsed reference normalises to a fixed point.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = policy::ImageRef::parse(text) {
        let normal = r.to_string();
        let again = policy::ImageRef::parse(&normal).expect("a normalised reference parses");
        assert_eq!(normal, again.to_string(), "normalisation is idempotent");
        let _ = r.repository();
    }
});
