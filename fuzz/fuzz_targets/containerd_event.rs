//! containerd event payloads as the watcher receives them: an envelope's Any (type URL
//! from the first bytes, up to a 0xff byte) decoded into an image event. Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (url, value) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"containerd.services.images.v1.ImageCreate"[..], data),
    };
    let any = prost_types::Any {
        type_url: String::from_utf8_lossy(url).into_owned(),
        value: value.to_vec(),
    };
    let _ = daemon::watcher::decode(&any);
});
