//! Importing the key files Notary and Docker write, and storing keys encrypted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use key_store::{Error, KeyAlgorithm, KeyDir, SigningKey};

fn shared_compat() -> PathBuf {
    // Kept in the repository (tests/fixtures/README.md says where they come from).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/notary-compat")
}

fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(key_files(&p));
        } else if p.extension().is_some_and(|x| x == "key") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Notary names a key file after the key's ID (0.1 adds `_role`).
fn id_from_name(p: &Path) -> String {
    let stem = p.file_stem().and_then(|s| s.to_str()).expect("name");
    stem.split('_').next().expect("id").to_owned()
}

fn verifies(key: &SigningKey) -> bool {
    let msg = b"pullguard signs this";
    let (method, sig) = key.sign(msg);
    trust_core::keys::PublicKey::new(key.keytype(), &key.public()).verify(method, msg, &sig)
}

/// The compatibility README says "randompass" for both; the 0.3 files are in fact
/// encrypted with "password" (checked with `openssl ec -passin`).
fn compat_keys() -> Vec<(PathBuf, &'static [u8])> {
    let v01 = key_files(&shared_compat().join("notary0.1/private"))
        .into_iter()
        .map(|p| (p, &b"randompass"[..]));
    let v03 = key_files(&shared_compat().join("notary0.3/private"))
        .into_iter()
        .map(|p| (p, &b"password"[..]));
    v01.chain(v03).collect()
}

#[test]
fn imports_notary_0_1_and_0_3_keys_with_the_ids_notary_gave_them() {
    let files = compat_keys();
    assert_eq!(files.len(), 7, "{files:?}");
    let mut roles = Vec::new();
    for (f, pass) in &files {
        let bytes = std::fs::read(f).expect("read");
        let key = SigningKey::from_pem(&bytes, pass, &f.display().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(key.key_id(), id_from_name(f), "{}", f.display());
        assert!(verifies(&key), "{}", f.display());
        roles.push((key.keytype(), key.role.clone()));
    }
    // 0.3's targets/releases key is RSA, the others ECDSA; 0.3 writes role headers.
    assert!(
        roles.contains(&("rsa", Some("targets/releases".to_owned()))),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("ecdsa", Some("root".to_owned()))),
        "{roles:?}"
    );
}

/// RSA signatures are checked by ring since `rsa` left trust-core: a Notary 0.3 RSA key's
/// PSS signature verifies, and a changed byte, another message or the PKCS#1 v1.5 method
/// on a PSS signature does not.
#[test]
fn rsa_signatures_verify_and_tampered_ones_do_not() {
    let (f, pass) = compat_keys()
        .into_iter()
        .find(|(f, pass)| {
            SigningKey::from_pem(&std::fs::read(f).expect("read"), pass, "k")
                .is_ok_and(|k| k.keytype() == "rsa")
        })
        .expect("notary 0.3's RSA key");
    let key = SigningKey::from_pem(&std::fs::read(&f).expect("read"), pass, "k").unwrap();
    let public = trust_core::keys::PublicKey::new("rsa", &key.public());
    assert_eq!(public.unusable_reason(), None);
    let msg = b"pullguard signs this";
    let (method, sig) = key.sign(msg);
    assert_eq!(method, "rsapss");
    assert!(public.verify(method, msg, &sig));
    let mut flipped = sig.clone();
    flipped[10] ^= 1;
    assert!(!public.verify(method, msg, &flipped));
    assert!(!public.verify(method, b"pullguard signs that", &sig));
    assert!(!public.verify("rsapkcs1v15", msg, &sig));
    assert!(!public.verify("ecdsa", msg, &sig));
}

#[test]
fn wrong_passphrase_is_reported_as_such() {
    for (f, _) in compat_keys() {
        let bytes = std::fs::read(&f).expect("read");
        match SigningKey::from_pem(&bytes, b"not-the-passphrase", "k") {
            Err(Error::BadPassphrase { .. }) => {}
            other => panic!("{}: {other:?}", f.display()),
        }
    }
}

fn notary07_passphrase(role: &str) -> &'static [u8] {
    match role {
        "root" => b"pullguard-test-root",
        "targets" => b"pullguard-test-targets",
        "snapshot" => b"pullguard-test-snapshot",
        _ => b"pullguard-test-delegation",
    }
}

#[test]
fn imports_keys_the_current_notary_cli_wrote() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/notary-real/private");
    let files = key_files(&dir);
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let role = text
            .lines()
            .find_map(|l| l.strip_prefix("role: "))
            .expect("role header")
            .to_owned();
        let key = SigningKey::from_pem(text.as_bytes(), notary07_passphrase(&role), "k")
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(key.key_id(), id_from_name(&f));
        assert_eq!(key.role.as_deref(), Some(role.as_str()));
        assert!(verifies(&key));
    }
}

#[test]
fn stored_keys_are_encrypted_private_and_round_trip() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = KeyDir::open(&tmp.path().join("private")).expect("open");
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Ecdsa] {
        let key = SigningKey::generate(
            alg,
            Some("targets/releases".into()),
            Some("registry.test/a".into()),
        );
        let path = dir.store(&key, b"correct horse").expect("store");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: registry.test/a\nrole: targets/releases\n"), "{text}");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let back = dir.load(&key.key_id(), b"correct horse").expect("load");
        assert_eq!(back.key_id(), key.key_id());
        assert!(verifies(&back));
        assert!(matches!(
            dir.load(&key.key_id(), b"wrong"),
            Err(Error::BadPassphrase { .. })
        ));
    }
    let listed = dir.list().expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|k| k.role.as_deref() == Some("targets/releases")));
}
