//! The policy file: any text parses to a policy or to problems with positions; a valid
//! policy lints and matches references without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = policy::Policy::parse(std::path::Path::new("fuzz.toml"), text) {
        let _ = p.lint();
        if let Ok(r) = policy::ImageRef::parse("registry.test/team/app:v1") {
            let _ = p.candidates(&r);
        }
    }
});
