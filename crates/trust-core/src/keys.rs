//! Public keys as Notary writes them, their IDs, and signature checks.
//!
//! Key types: `ed25519`, `ecdsa` (P-256, PKIX DER), `ecdsa-x509` and `rsa-x509` (a PEM
//! certificate), `rsa` (PKIX DER). Signature methods: `eddsa`, `ecdsa` (raw fixed-width
//! r‖s, as Notary writes it), `rsapss` (SHA-256, salt of 32 bytes) and `rsapkcs1v15`.
//! RSA keys below 2048 bits verify nothing, as in Notary.

use base64::Engine as _;
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use x509_cert::der::{Decode as _, Encode as _};

use crate::canonical::Json;

/// The smallest RSA modulus accepted, and the RSA key parser every format shares.
pub use proof_kit::keys::{rsa_public_key, MIN_RSA_BITS};

/// The key types Notary writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Raw 32-byte Ed25519 public key.
    Ed25519,
    /// P-256 public key, PKIX DER.
    Ecdsa,
    /// P-256 key inside a PEM certificate.
    EcdsaX509,
    /// RSA public key, PKIX DER.
    Rsa,
    /// RSA key inside a PEM certificate.
    RsaX509,
}

impl KeyType {
    fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "ed25519" => KeyType::Ed25519,
            "ecdsa" => KeyType::Ecdsa,
            "ecdsa-x509" => KeyType::EcdsaX509,
            "rsa" => KeyType::Rsa,
            "rsa-x509" => KeyType::RsaX509,
            _ => return None,
        })
    }

    /// The name in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::EcdsaX509 => "ecdsa-x509",
            KeyType::Rsa => "rsa",
            KeyType::RsaX509 => "rsa-x509",
        }
    }
}

/// What a root certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Issuer name, DER.
    pub issuer: Vec<u8>,
    /// Subject name, DER.
    pub subject: Vec<u8>,
    /// The signed part, DER, and the issuer's signature over it.
    pub tbs: Vec<u8>,
    /// Signature algorithm OID, dotted.
    pub signature_algorithm: String,
    /// Signature bytes.
    pub signature: Vec<u8>,
    /// Subject public key, SPKI DER.
    pub spki: Vec<u8>,
    /// Subject common name, which Notary requires to equal the repository name.
    pub common_name: Option<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Verifier {
    Ed25519(ed25519_dalek::VerifyingKey),
    /// The uncompressed SEC1 point, checked on the curve by `p256` when the key was read;
    /// signatures are checked with `ring` (about four times faster than `p256`'s
    /// portable arithmetic, and every repository has four or five ECDSA signatures).
    P256(Box<[u8]>),
    /// PKCS#1 `RSAPublicKey` DER (what `ring` verifies with), at least 2048 bits.
    Rsa(Box<[u8]>),
    /// A key we cannot use; signatures by it never count. Kept so that key IDs still
    /// check and the reason can be reported.
    Unusable(String),
}

/// A public key from metadata, with its recomputed ID.
#[derive(Debug, Clone)]
pub struct PublicKey {
    id: String,
    keytype: Option<KeyType>,
    verifier: Verifier,
    cert: Option<CertInfo>,
}

/// The key ID Notary computes: SHA-256 over the canonical JSON of
/// `{"keytype": T, "keyval": {"private": null, "public": base64(public)}}`.
pub fn key_id(keytype: &str, public: &[u8]) -> String {
    let mut keyval = std::collections::BTreeMap::new();
    keyval.insert("private".to_owned(), Json::Null);
    keyval.insert(
        "public".to_owned(),
        Json::String(base64::engine::general_purpose::STANDARD.encode(public)),
    );
    let mut key = std::collections::BTreeMap::new();
    key.insert("keytype".to_owned(), Json::String(keytype.to_owned()));
    key.insert("keyval".to_owned(), Json::Object(keyval));
    hex::encode(Sha256::digest(Json::Object(key).to_canonical()))
}

impl PublicKey {
    /// Builds a key from its `keytype` and decoded `keyval.public`.
    ///
    /// Never fails: a key of an unknown type, or whose bytes do not parse, is kept as
    /// unusable so that its ID is still known and its signatures simply do not count.
    pub fn new(keytype: &str, public: &[u8]) -> PublicKey {
        let id = key_id(keytype, public);
        let kt = KeyType::parse(keytype);
        let (verifier, cert) = match kt {
            None => (
                Verifier::Unusable(format!("unsupported key type {keytype:?}")),
                None,
            ),
            Some(KeyType::Ed25519) => (ed25519(public), None),
            Some(KeyType::Ecdsa) => (p256_spki(public), None),
            Some(KeyType::Rsa) => (rsa_spki(public), None),
            Some(KeyType::EcdsaX509) | Some(KeyType::RsaX509) => match parse_cert(public) {
                Ok((spki, info)) => {
                    let v = if kt == Some(KeyType::EcdsaX509) {
                        p256_spki(&spki)
                    } else {
                        rsa_spki(&spki)
                    };
                    (v, Some(info))
                }
                Err(e) => (Verifier::Unusable(e), None),
            },
        };
        PublicKey {
            id,
            keytype: kt,
            verifier,
            cert,
        }
    }

    /// The recomputed key ID (hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key type, if known.
    pub fn keytype(&self) -> Option<KeyType> {
        self.keytype
    }

    /// The certificate, for x509 key types.
    pub fn cert(&self) -> Option<&CertInfo> {
        self.cert.as_ref()
    }

    /// Why this key can verify nothing, if so.
    pub fn unusable_reason(&self) -> Option<&str> {
        match &self.verifier {
            Verifier::Unusable(why) => Some(why),
            _ => None,
        }
    }

    /// The key itself, as its signatures are checked (Ed25519 bytes, the uncompressed
    /// P-256 point, the RSA key): equal for every ID under which one key is listed.
    /// `None` for a key that cannot be used.
    pub fn material(&self) -> Option<&[u8]> {
        match &self.verifier {
            Verifier::Ed25519(vk) => Some(vk.as_bytes()),
            Verifier::P256(point) => Some(point),
            Verifier::Rsa(pkcs1) => Some(pkcs1),
            Verifier::Unusable(_) => None,
        }
    }

    /// Checks `sig` over `msg` with `method`. A method that does not fit the key is a
    /// failed check, not an error.
    pub fn verify(&self, method: &str, msg: &[u8], sig: &[u8]) -> bool {
        match (&self.verifier, method) {
            (Verifier::Ed25519(vk), "eddsa") => ed25519_dalek::Signature::from_slice(sig)
                .map(|s| vk.verify_strict(msg, &s).is_ok())
                .unwrap_or(false),
            (Verifier::P256(point), "ecdsa") => {
                // Notary writes raw r‖s; 64 bytes for P-256.
                sig.len() == 64
                    && ring::signature::UnparsedPublicKey::new(
                        &ring::signature::ECDSA_P256_SHA256_FIXED,
                        point,
                    )
                    .verify(msg, sig)
                    .is_ok()
            }
            // Notary's PSS salt is the hash's length, the only one ring accepts.
            (Verifier::Rsa(pk), "rsapss") => {
                rsa_verify(&ring::signature::RSA_PSS_2048_8192_SHA256, pk, msg, sig)
            }
            (Verifier::Rsa(pk), "rsapkcs1v15") => {
                rsa_verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, pk, msg, sig)
            }
            _ => false,
        }
    }
}

fn ed25519(public: &[u8]) -> Verifier {
    match <[u8; 32]>::try_from(public)
        .ok()
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
    {
        Some(vk) => Verifier::Ed25519(vk),
        None => Verifier::Unusable(format!(
            "ed25519 key of {} bytes is not a valid point",
            public.len()
        )),
    }
}

fn p256_spki(der: &[u8]) -> Verifier {
    match p256::ecdsa::VerifyingKey::from_public_key_der(der) {
        Ok(vk) => Verifier::P256(vk.to_encoded_point(false).as_bytes().into()),
        Err(e) => Verifier::Unusable(format!("not a P-256 public key: {e}")),
    }
}

fn rsa_spki(der: &[u8]) -> Verifier {
    match rsa_public_key(der) {
        Ok((pkcs1, bits)) if bits >= MIN_RSA_BITS => Verifier::Rsa(pkcs1.into()),
        Ok((_, bits)) => Verifier::Unusable(format!(
            "RSA key of {bits} bits is below the minimum of {MIN_RSA_BITS}"
        )),
        Err(e) => Verifier::Unusable(format!("not an RSA public key: {e}")),
    }
}

fn rsa_verify(
    alg: &'static ring::signature::RsaParameters,
    pkcs1: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> bool {
    ring::signature::UnparsedPublicKey::new(alg, pkcs1)
        .verify(msg, sig)
        .is_ok()
}

/// The DER inside one PEM `CERTIFICATE` block. Our own decoder: the `der` crate's PEM
/// reader loops without end on some malformed input (found by fuzz/certificate), and
/// certificates arrive from trust servers inside root.json.
fn pem_certificate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "certificate PEM is not text".to_owned())?;
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("-----BEGIN CERTIFICATE-----") {
        return Err("certificate PEM does not start with -----BEGIN CERTIFICATE-----".to_owned());
    }
    let mut body = String::new();
    for line in lines {
        if line == "-----END CERTIFICATE-----" {
            return proof_kit::b64::padded(&body)
                .map_err(|e| format!("certificate PEM is not base64: {e}"));
        }
        if line.contains(':') {
            // RFC 7468 allows no headers in CERTIFICATE blocks.
            return Err("certificate PEM has headers".to_owned());
        }
        body.push_str(line);
    }
    Err("certificate PEM has no -----END CERTIFICATE----- line".to_owned())
}

/// Parses a PEM (or DER) certificate: its public key (SPKI DER) and what it says.
fn parse_cert(bytes: &[u8]) -> Result<(Vec<u8>, CertInfo), String> {
    let der_owned;
    let der_in = if bytes.starts_with(b"-----") {
        der_owned = pem_certificate(bytes)?;
        &der_owned[..]
    } else {
        bytes
    };
    let cert = x509_cert::Certificate::from_der(der_in)
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let spki = tbs
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("certificate key does not encode: {e}"))?;
    let der = cert
        .to_der()
        .map_err(|e| format!("certificate does not encode: {e}"))?;
    let to_time = |t: x509_cert::time::Time| {
        OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
            .map_err(|e| format!("certificate time out of range: {e}"))
    };
    let enc = |e: x509_cert::der::Error| format!("certificate does not encode: {e}");
    let info = CertInfo {
        issuer: tbs.issuer.to_der().map_err(enc)?,
        subject: tbs.subject.to_der().map_err(enc)?,
        tbs: tbs.to_der().map_err(enc)?,
        signature_algorithm: cert.signature_algorithm.oid.to_string(),
        signature: cert.signature.raw_bytes().to_vec(),
        spki: spki.clone(),
        common_name: common_name(&tbs.subject),
        not_before: to_time(tbs.validity.not_before)?,
        not_after: to_time(tbs.validity.not_after)?,
        der,
    };
    Ok((spki, info))
}

fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    use x509_cert::der::{Tag, Tagged as _};
    const CN: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| match atv.value.tag() {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                std::str::from_utf8(atv.value.value())
                    .ok()
                    .map(str::to_owned)
            }
            _ => None,
        })
}

const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";

impl CertInfo {
    /// Whether `ca` issued this certificate: names match and the CA's key verifies the
    /// signature (ECDSA P-256 or RSA PKCS#1 v1.5, both with SHA-256). Validity periods
    /// are the caller's to check.
    pub fn issued_by(&self, ca: &CertInfo) -> bool {
        if self.issuer != ca.subject {
            return false;
        }
        match self.signature_algorithm.as_str() {
            ECDSA_WITH_SHA256 => {
                use p256::ecdsa::signature::Verifier as _;
                match (
                    p256::ecdsa::VerifyingKey::from_public_key_der(&ca.spki),
                    p256::ecdsa::Signature::from_der(&self.signature),
                ) {
                    (Ok(vk), Ok(sig)) => vk.verify(&self.tbs, &sig).is_ok(),
                    _ => false,
                }
            }
            SHA256_WITH_RSA => match rsa_public_key(&ca.spki) {
                Ok((pkcs1, bits)) if bits >= MIN_RSA_BITS => rsa_verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    &pkcs1,
                    &self.tbs,
                    &self.signature,
                ),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Parses a pinned certificate given by an operator (PEM or DER).
pub fn parse_pinned_cert(bytes: &[u8]) -> Result<CertInfo, String> {
    parse_cert(bytes).map(|(_, info)| info)
}

#[cfg(test)]
mod rsa_keys {
    use base64::Engine as _;

    use super::PublicKey;

    /// A 1024-bit RSA public key (SubjectPublicKeyInfo DER, made with `openssl genrsa
    /// 1024`): below the minimum, so unusable whatever it signs.
    const RSA_1024: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCxQKWV1VnP0f4xtMMf/+5TNJLPEtaCScJ5fW6/mVSAAnGt7EdEPPUczRSq+BnKT8YrC4z0HMnLy0QnvlrnODrl5OWhOUceBEp78v+YYT5ceJoFXQE2OWMu7GlU2g8d/BZoIA7iLjqO1JBXZ1+NXlTJ87cyZAzK6VrrnJraBz4cAwIDAQAB";

    #[test]
    fn rsa_keys_below_2048_bits_are_unusable_and_garbage_is_no_rsa_key() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(RSA_1024)
            .unwrap_or_default();
        let k = PublicKey::new("rsa", &der);
        let why = k.unusable_reason().unwrap_or_default();
        assert!(why.contains("1024 bits"), "{why}");
        let k = PublicKey::new("rsa", b"not DER");
        assert!(
            k.unusable_reason()
                .unwrap_or_default()
                .contains("not an RSA public key"),
            "{:?}",
            k.unusable_reason()
        );
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::parse_pinned_cert;

    /// fuzz/certificate found this: a PEM block whose DER declares a length it does not
    /// have made the `der` crate's PEM reader loop forever. It must fail at once.
    #[test]
    fn fuzz_certificate_pem_with_truncated_der_length_fails_at_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = parse_pinned_cert(
                b"-----BEGIN CERTIFICATE-----\nMIO6\n-----END CERTIFICATE-----\n",
            );
            let _ = tx.send(r.is_err());
        });
        let failed = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("parsing did not finish"));
        assert!(failed);
        for bad in [
            &b"-----BEGIN CERTIFICATE-----\nMIO6\n"[..],
            b"-----BEGIN CERTIFICATE-----\nProc-Type: 4\n\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(parse_pinned_cert(bad).is_err());
        }
    }
}
