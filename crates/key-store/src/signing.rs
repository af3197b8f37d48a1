//! Private signing keys: generated here or imported from Notary and Docker, stored
//! encrypted at rest.
//!
//! Stored form: PKCS#8 `ENCRYPTED PRIVATE KEY` PEM (PBES2: PBKDF2-HMAC-SHA256 and
//! AES-256-CBC) with Notary's `role:` and `gun:` headers, named `<key ID>.key`, mode 0600.
//! Notary 0.6 and later write and read the same form.
//!
//! Imported forms: that one (also with PBKDF2-HMAC-SHA1, Notary's default), unencrypted
//! PKCS#8, and the legacy OpenSSL form Notary 0.1–0.5 wrote (`Proc-Type: 4,ENCRYPTED`,
//! `DEK-Info: AES-256-CBC,…`) around SEC1 EC or PKCS#1 RSA keys.
//!
//! Secrets are zeroized when dropped and never logged or shown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use zeroize::Zeroizing;

use crate::fsutil::{private_dir, read_secure, write_atomic};
use crate::{Error, Result};

const PBKDF2_ITERATIONS: u32 = 600_000;
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Algorithms new keys can be generated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519.
    Ed25519,
    /// ECDSA on P-256.
    Ecdsa,
}

enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A private key with the role and repository it is for.
pub struct SigningKey {
    secret: Secret,
    /// Role (`root`, `targets`, `targets/releases`, …), from the PEM header.
    pub role: Option<String>,
    /// Repository, from the PEM header.
    pub gun: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("SigningKey")
            .field("id", &self.key_id())
            .field("keytype", &self.keytype())
            .field("role", &self.role)
            .field("gun", &self.gun)
            .finish()
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate(
        algorithm: KeyAlgorithm,
        role: Option<String>,
        gun: Option<String>,
    ) -> SigningKey {
        let mut rng = rand_core::OsRng;
        let secret = match algorithm {
            KeyAlgorithm::Ed25519 => {
                use rand_core::RngCore as _;
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(seed.as_mut());
                Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            KeyAlgorithm::Ecdsa => Secret::P256(p256::ecdsa::SigningKey::random(&mut rng)),
        };
        SigningKey { secret, role, gun }
    }

    /// The TUF key type of the public key: `ed25519`, `ecdsa` or `rsa`.
    pub fn keytype(&self) -> &'static str {
        match self.secret {
            Secret::Ed25519(_) => "ed25519",
            Secret::P256(_) => "ecdsa",
            Secret::Rsa(_) => "rsa",
        }
    }

    /// The public key as metadata lists it (`keyval.public`, decoded).
    pub fn public(&self) -> Vec<u8> {
        match &self.secret {
            Secret::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            Secret::P256(k) => k
                .verifying_key()
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
            Secret::Rsa(k) => rsa::RsaPublicKey::from(k.as_ref())
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The key ID Notary gives this key (over the public key, not a certificate).
    pub fn key_id(&self) -> String {
        trust_core::keys::key_id(self.keytype(), &self.public())
    }

    /// A self-signed certificate (PEM) for this key with common name `cn`, valid for
    /// `days` from now: what Notary lists root keys as (`ecdsa-x509`), with the
    /// repository as the common name. P-256 keys only.
    pub fn self_signed_cert(&self, cn: &str, days: u32) -> Result<String> {
        use std::str::FromStr as _;
        use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
        use x509_cert::der::EncodePem as _;
        let unsupported = |detail: String| Error::UnsupportedKey {
            what: self.key_id(),
            detail,
        };
        let Secret::P256(key) = &self.secret else {
            return Err(unsupported(
                "root certificates are made for ECDSA P-256 keys only".to_owned(),
            ));
        };
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::try_from(self.public().as_slice())
            .map_err(|e| unsupported(e.to_string()))?;
        // Quotes and separators would change the name's meaning; a GUN has none.
        if cn.contains([',', '+', '=', '"', '\\', '<', '>', ';']) {
            return Err(unsupported(format!("{cn:?} cannot be a certificate name")));
        }
        let subject = x509_cert::name::Name::from_str(&format!("CN={cn}"))
            .map_err(|e| unsupported(e.to_string()))?;
        let validity = x509_cert::time::Validity::from_now(std::time::Duration::from_secs(
            u64::from(days) * 86_400,
        ))
        .map_err(|e| unsupported(e.to_string()))?;
        let mut serial = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
        serial[0] &= 0x7f; // positive
        let serial = x509_cert::serial_number::SerialNumber::new(&serial)
            .map_err(|e| unsupported(e.to_string()))?;
        // A leaf (not a CA), self-issued: Notary takes only leaf certificates as root keys.
        let profile = Profile::Leaf {
            issuer: subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let cert = CertificateBuilder::new(profile, serial, validity, subject, spki, key)
            .map_err(|e| unsupported(e.to_string()))?
            .build::<p256::ecdsa::DerSignature>()
            .map_err(|e| unsupported(e.to_string()))?;
        cert.to_pem(x509_cert::der::pem::LineEnding::LF)
            .map_err(|e| unsupported(e.to_string()))
    }

    /// The public key as a PEM `PUBLIC KEY` (for `notary delegation add` and peers).
    pub fn public_pem(&self) -> String {
        let der = match &self.secret {
            Secret::Ed25519(k) => k
                .verifying_key()
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec()),
            _ => Ok(self.public()),
        }
        .unwrap_or_default();
        pem_encode("PUBLIC KEY", &BTreeMap::new(), &der)
    }

    fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let doc = match &self.secret {
            Secret::Ed25519(k) => k.to_pkcs8_der(),
            Secret::P256(k) => k.to_pkcs8_der(),
            Secret::Rsa(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| Error::UnsupportedKey {
            what: self.key_id(),
            detail: format!("cannot encode: {e}"),
        })?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The encrypted PEM this key is stored as.
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> Result<String> {
        use rand_core::RngCore as _;
        let der = self.pkcs8_der()?;
        let info =
            pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| Error::UnsupportedKey {
                what: self.key_id(),
                detail: e.to_string(),
            })?;
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut salt);
        rand_core::OsRng.fill_bytes(&mut iv);
        let params =
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
                .map_err(|e| Error::UnsupportedKey {
                    what: self.key_id(),
                    detail: e.to_string(),
                })?;
        let enc =
            info.encrypt_with_params(params, passphrase)
                .map_err(|e| Error::UnsupportedKey {
                    what: self.key_id(),
                    detail: format!("cannot encrypt: {e}"),
                })?;
        let mut headers = BTreeMap::new();
        if let Some(g) = &self.gun {
            headers.insert("gun".to_owned(), g.clone());
        }
        if let Some(r) = &self.role {
            headers.insert("role".to_owned(), r.clone());
        }
        Ok(pem_encode(
            "ENCRYPTED PRIVATE KEY",
            &headers,
            enc.as_bytes(),
        ))
    }

    /// Reads a key file in any supported form. `what` names it in errors.
    pub fn from_pem(bytes: &[u8], passphrase: &[u8], what: &str) -> Result<SigningKey> {
        let unsupported = |detail: String| Error::UnsupportedKey {
            what: what.to_owned(),
            detail,
        };
        let pem = pem_decode(bytes).ok_or_else(|| unsupported("not a PEM file".to_owned()))?;
        let role = pem.headers.get("role").cloned();
        let gun = pem.headers.get("gun").cloned();
        let bad_pass = || Error::BadPassphrase {
            what: what.to_owned(),
        };
        let secret = match (pem.label.as_str(), pem.headers.get("DEK-Info")) {
            ("ENCRYPTED PRIVATE KEY", _) => {
                let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(pem.body.as_slice())
                    .map_err(|e| unsupported(format!("not PKCS#8: {e}")))?;
                let doc = enc.decrypt(passphrase).map_err(|_| bad_pass())?;
                from_pkcs8(doc.as_bytes()).map_err(|_| bad_pass())?
            }
            ("PRIVATE KEY", None) => from_pkcs8(&pem.body).map_err(unsupported)?,
            (label @ ("EC PRIVATE KEY" | "RSA PRIVATE KEY"), dek) => {
                let der = match dek {
                    Some(dek) => Zeroizing::new(
                        legacy_decrypt(dek, &pem.body, passphrase).ok_or_else(bad_pass)?,
                    ),
                    None => Zeroizing::new(pem.body.clone()),
                };
                let parsed = if label == "EC PRIVATE KEY" {
                    p256::SecretKey::from_sec1_der(&der)
                        .map(|k| Secret::P256(k.into()))
                        .ok()
                } else {
                    use rsa::pkcs1::DecodeRsaPrivateKey as _;
                    rsa::RsaPrivateKey::from_pkcs1_der(&der)
                        .map(|k| Secret::Rsa(Box::new(k)))
                        .ok()
                };
                // With a DEK-Info, a parse failure almost always means a wrong passphrase.
                match (parsed, dek) {
                    (Some(s), _) => s,
                    (None, Some(_)) => return Err(bad_pass()),
                    (None, None) => return Err(unsupported(format!("{label} does not parse"))),
                }
            }
            (other, _) => {
                return Err(unsupported(format!(
                    "PEM type {other:?} is not a private key we read"
                )))
            }
        };
        Ok(SigningKey { secret, role, gun })
    }

    /// Signs `msg` the way Notary does for this key type; returns (method, signature).
    pub fn sign(&self, msg: &[u8]) -> (&'static str, Vec<u8>) {
        match &self.secret {
            Secret::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                ("eddsa", k.sign(msg).to_bytes().to_vec())
            }
            Secret::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.sign(msg);
                ("ecdsa", sig.to_bytes().to_vec())
            }
            Secret::Rsa(k) => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(msg);
                let sig = k
                    .sign_with_rng(
                        &mut rand_core::OsRng,
                        rsa::Pss::new_with_salt::<sha2::Sha256>(32),
                        &digest,
                    )
                    .unwrap_or_default();
                ("rsapss", sig)
            }
        }
    }
}

/// Notary writes PKCS#8 with `version` 1 (RFC 5958 v2) but no public key, which v2
/// requires. Such a structure is read as what it is, a v1 one.
fn notary_pkcs8_as_v1(der: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let header = match der.get(1)? {
        n if *n < 0x80 => 2,
        0x81 => 3,
        0x82 => 4,
        _ => return None,
    };
    if der.first() != Some(&0x30) || der.get(header..header + 3)? != [0x02, 0x01, 0x01] {
        return None;
    }
    let mut fixed = Zeroizing::new(der.to_vec());
    fixed[header + 2] = 0;
    Some(fixed)
}

fn from_pkcs8(der: &[u8]) -> Result<Secret, String> {
    if pkcs8::PrivateKeyInfo::try_from(der).is_err() {
        if let Some(fixed) = notary_pkcs8_as_v1(der) {
            if pkcs8::PrivateKeyInfo::try_from(fixed.as_slice()).is_ok() {
                return from_pkcs8(&fixed);
            }
        }
    }
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| format!("not PKCS#8: {e}"))?;
    match info.algorithm.oid.to_string().as_str() {
        "1.2.840.10045.2.1" => p256::ecdsa::SigningKey::from_pkcs8_der(der)
            .map(Secret::P256)
            .map_err(|e| format!("not a P-256 key: {e}")),
        "1.3.101.112" => ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(Secret::Ed25519)
            .map_err(|e| format!("not an Ed25519 key: {e}")),
        "1.2.840.113549.1.1.1" => rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map(|k| Secret::Rsa(Box::new(k)))
            .map_err(|e| format!("not an RSA key: {e}")),
        other => Err(format!("key algorithm {other} is not supported")),
    }
}

/// OpenSSL's legacy PEM encryption: key = EVP_BytesToKey(MD5, passphrase, salt = the
/// first 8 bytes of the IV, one round), then AES-CBC with PKCS#7 padding.
fn legacy_decrypt(dek_info: &str, body: &[u8], passphrase: &[u8]) -> Option<Vec<u8>> {
    use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut as _, KeyIvInit as _};
    use md5::Digest as _;
    let (cipher, iv_hex) = dek_info.split_once(',')?;
    let iv = hex::decode(iv_hex.trim()).ok()?;
    let key_len = match cipher.trim() {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        _ => return None,
    };
    let iv: [u8; 16] = iv.try_into().ok()?;
    let mut key = Zeroizing::new(Vec::with_capacity(48));
    let mut prev: Vec<u8> = Vec::new();
    while key.len() < key_len {
        let mut h = md5::Md5::new();
        h.update(&prev);
        h.update(passphrase);
        h.update(&iv[..8]);
        prev = h.finalize().to_vec();
        key.extend_from_slice(&prev);
    }
    key.truncate(key_len);
    let mut buf = body.to_vec();
    let out = match key_len {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .to_vec(),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .to_vec(),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .to_vec(),
    };
    zeroize::Zeroize::zeroize(&mut buf);
    Some(out)
}

struct Pem {
    label: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Drop for Pem {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

/// A PEM block with RFC 1421 headers (`Name: value` lines before a blank line).
fn pem_decode(bytes: &[u8]) -> Option<Pem> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines().map(str::trim_end);
    let label = lines
        .by_ref()
        .find_map(|l| {
            l.strip_prefix("-----BEGIN ")
                .and_then(|r| r.strip_suffix("-----"))
        })?
        .to_owned();
    let mut headers = BTreeMap::new();
    let mut b64 = Zeroizing::new(String::new());
    let end = format!("-----END {label}-----");
    for line in lines {
        if line == end {
            let body = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .ok()?;
            return Some(Pem {
                label,
                headers,
                body,
            });
        }
        match line.split_once(": ") {
            Some((k, v)) if b64.is_empty() && !k.contains(' ') => {
                headers.insert(k.to_owned(), v.to_owned());
            }
            _ => b64.push_str(line.trim()),
        }
    }
    None
}

fn pem_encode(label: &str, headers: &BTreeMap<String, String>, der: &[u8]) -> String {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = format!("-----BEGIN {label}-----\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\n"));
    }
    if !headers.is_empty() {
        out.push('\n');
    }
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A stored key, as listed (no passphrase needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Key ID (the file name).
    pub id: String,
    /// Role header.
    pub role: Option<String>,
    /// Repository header.
    pub gun: Option<String>,
    /// The file.
    pub path: PathBuf,
}

/// The directory private keys are kept in (`<keys dir>/private`).
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// Opens (creating, 0700) the directory.
    pub fn open(dir: &Path) -> Result<KeyDir> {
        private_dir(dir)?;
        Ok(KeyDir {
            dir: dir.to_path_buf(),
        })
    }

    /// Stores `key` encrypted with `passphrase`; returns its path.
    pub fn store(&self, key: &SigningKey, passphrase: &[u8]) -> Result<PathBuf> {
        let path = self.dir.join(format!("{}.key", key.key_id()));
        write_atomic(&path, key.to_encrypted_pem(passphrase)?.as_bytes())?;
        Ok(path)
    }

    /// Reads and decrypts the key with this ID.
    pub fn load(&self, id: &str, passphrase: &[u8]) -> Result<SigningKey> {
        let path = self.dir.join(format!("{id}.key"));
        let bytes = read_secure(&path, MAX_KEY_FILE)?.ok_or_else(|| Error::NoSuchKey {
            id: id.to_owned(),
            dir: self.dir.clone(),
        })?;
        let bytes = Zeroizing::new(bytes);
        SigningKey::from_pem(&bytes, passphrase, &path.display().to_string())
    }

    /// The stored keys, by ID.
    pub fn list(&self) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|source| Error::Io {
            op: "list",
            path: self.dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let path = e.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
            else {
                continue;
            };
            let bytes = read_secure(&path, MAX_KEY_FILE)?.unwrap_or_default();
            let pem = pem_decode(&bytes);
            out.push(KeyEntry {
                id: id.to_owned(),
                role: pem.as_ref().and_then(|p| p.headers.get("role").cloned()),
                gun: pem.as_ref().and_then(|p| p.headers.get("gun").cloned()),
                path,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_headers_round_trip() {
        let mut h = BTreeMap::new();
        h.insert("role".to_owned(), "targets/releases".to_owned());
        let text = pem_encode("ENCRYPTED PRIVATE KEY", &h, &[1, 2, 3, 250]);
        let p = pem_decode(text.as_bytes()).expect("parses");
        assert_eq!(p.label, "ENCRYPTED PRIVATE KEY");
        assert_eq!(
            p.headers.get("role").map(String::as_str),
            Some("targets/releases")
        );
        assert_eq!(p.body, vec![1, 2, 3, 250]);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = SigningKey::generate(KeyAlgorithm::Ed25519, None, None);
        let shown = format!("{k:?}");
        let secret = match &k.secret {
            Secret::Ed25519(s) => hex::encode(s.to_bytes()),
            _ => unreachable!(),
        };
        assert!(!shown.contains(&secret));
        assert!(shown.contains(&k.key_id()));
    }
}
