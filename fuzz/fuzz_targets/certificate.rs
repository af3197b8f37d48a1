//! Keys and certificates: a pinned certificate file (PEM or DER), and a public key as
//! metadata lists it (keytype from the first byte). Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = trust_core::keys::parse_pinned_cert(data);
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let keytype = ["ed25519", "ecdsa", "ecdsa-x509", "rsa", "rsa-x509"][usize::from(pick) % 5];
    let key = trust_core::keys::PublicKey::new(keytype, bytes);
    let _ = key.unusable_reason();
    let _ = key.verify("ecdsa", b"message", bytes);
    let _ = key.verify("eddsa", b"message", bytes);
    let _ = key.verify("rsapss", b"message", bytes);
});
