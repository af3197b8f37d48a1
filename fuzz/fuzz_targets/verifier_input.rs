//! What containerd hands pullguard-verifier: argv (NUL-separated in the input) and the
//! descriptor on stdin (after the first 0xff byte). Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use verifier::input::{parse_args, read_descriptor};

fuzz_target!(|data: &[u8]| {
    let (argv, stdin) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let argv: Vec<String> = argv
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if let Ok(args) = parse_args(&argv) {
        let _ = read_descriptor(&args, stdin);
    }
});
