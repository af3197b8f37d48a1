//! Public keys as signers hold them: a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) file, as
//! `cosign generate-key-pair` writes `cosign.pub`, or the key inside a certificate; the
//! signature checks over them (ring, and ed25519-dalek's strict check); PEM blocks.

use sha2::{Digest as _, Sha256};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode as _;
use x509_cert::spki::SubjectPublicKeyInfoRef;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Alg {
    /// Uncompressed point; signatures are ASN.1 DER over SHA-256 (cosign's default).
    P256(Vec<u8>),
    /// Uncompressed point; ASN.1 DER over SHA-384.
    P384(Vec<u8>),
    /// Ed25519 over the message itself.
    Ed25519(Vec<u8>),
    /// PKCS#1 `RSAPublicKey`; PKCS#1 v1.5 with SHA-256, as cosign signs with RSA keys.
    Rsa(Vec<u8>),
}

/// A public key a rule trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    alg: Alg,
    id: String,
    /// The SubjectPublicKeyInfo, DER.
    der: Vec<u8>,
}

/// A signature scheme named by a certificate's or log's algorithm: the hash with which
/// the key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl PublicKey {
    /// A PEM `PUBLIC KEY` block (the first one in `pem`).
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, String> {
        let der = pem_block(pem, "PUBLIC KEY")?;
        PublicKey::from_spki_der(&der)
    }

    /// A DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the key's bit string has unused bits")?;
        let oid = spki.algorithm.oid;
        let alg = if oid == EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|e| format!("EC key without a named curve: {e}"))?;
            // ring checks the point itself when verifying; here only its form.
            match (curve, bits.first()) {
                (c, Some(4)) if c == P256 && bits.len() == 65 => Alg::P256(bits.to_vec()),
                (c, Some(4)) if c == P384 && bits.len() == 97 => Alg::P384(bits.to_vec()),
                (c, _) if c == P256 || c == P384 => {
                    return Err("EC public key is not an uncompressed point".to_owned())
                }
                (c, _) => return Err(format!("EC curve {c} is not P-256 or P-384")),
            }
        } else if oid == ED25519 {
            if bits.len() != 32 {
                return Err(format!("Ed25519 key of {} bytes", bits.len()));
            }
            Alg::Ed25519(bits.to_vec())
        } else if oid == RSA {
            let (pkcs1, size) = rsa_public_key(der)?;
            if size < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {size} bits is below the minimum of {MIN_RSA_BITS}"
                ));
            }
            Alg::Rsa(pkcs1)
        } else {
            return Err(format!("key algorithm {oid} is not ECDSA, Ed25519 or RSA"));
        };
        Ok(PublicKey {
            alg,
            id: hex::encode(Sha256::digest(der)),
            der: der.to_vec(),
        })
    }

    /// A bare PKCS#1 `RSAPublicKey` (some trusted roots list CT log keys so); wrapped in
    /// a SubjectPublicKeyInfo so that it has the same ID as elsewhere.
    pub fn from_pkcs1_rsa(pkcs1: &[u8]) -> Result<PublicKey, String> {
        use x509_cert::der::asn1::BitString;
        use x509_cert::der::Encode as _;
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned {
            algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
                oid: RSA,
                parameters: Some(x509_cert::der::asn1::Null.into()),
            },
            subject_public_key: BitString::from_bytes(pkcs1).map_err(|e| e.to_string())?,
        };
        PublicKey::from_spki_der(&spki.to_der().map_err(|e| e.to_string())?)
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.der
    }

    /// The key's raw bytes when it is Ed25519 (signed notes hash them into key hints).
    pub fn ed25519_raw(&self) -> Option<&[u8]> {
        match &self.alg {
            Alg::Ed25519(k) => Some(k),
            _ => None,
        }
    }

    /// Does `sig` sign `msg` with this key and `hash` (ECDSA: ASN.1 DER signatures; RSA:
    /// PKCS#1 v1.5; Ed25519 ignores `hash`)?
    pub fn verify_with(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        use ring::signature as s;
        let (alg, key): (&dyn s::VerificationAlgorithm, &[u8]) = match (&self.alg, hash) {
            (Alg::P256(k), Hash::Sha256) => (&s::ECDSA_P256_SHA256_ASN1, k),
            (Alg::P256(k), Hash::Sha384) => (&s::ECDSA_P256_SHA384_ASN1, k),
            (Alg::P384(k), Hash::Sha256) => (&s::ECDSA_P384_SHA256_ASN1, k),
            (Alg::P384(k), Hash::Sha384) => (&s::ECDSA_P384_SHA384_ASN1, k),
            (Alg::Rsa(k), Hash::Sha256) => (&s::RSA_PKCS1_2048_8192_SHA256, k),
            (Alg::Rsa(k), Hash::Sha384) => (&s::RSA_PKCS1_2048_8192_SHA384, k),
            (Alg::Rsa(k), Hash::Sha512) => (&s::RSA_PKCS1_2048_8192_SHA512, k),
            (Alg::Ed25519(_), _) => return self.verify(msg, sig),
            _ => return false,
        };
        s::UnparsedPublicKey::new(alg, key).verify(msg, sig).is_ok()
    }

    /// Does `sig` sign `msg` under a JOSE/COSE algorithm name (`ES256`, `ES384`: raw
    /// r‖s; `PS256`, `PS384`, `PS512`: RSASSA-PSS)? Names the key cannot make are false.
    pub fn verify_jose(&self, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
        use ring::signature as s;
        let (a, key): (&dyn s::VerificationAlgorithm, &[u8]) = match (&self.alg, alg) {
            (Alg::P256(k), "ES256") => (&s::ECDSA_P256_SHA256_FIXED, k),
            (Alg::P384(k), "ES384") => (&s::ECDSA_P384_SHA384_FIXED, k),
            (Alg::Rsa(k), "PS256") => (&s::RSA_PSS_2048_8192_SHA256, k),
            (Alg::Rsa(k), "PS384") => (&s::RSA_PSS_2048_8192_SHA384, k),
            (Alg::Rsa(k), "PS512") => (&s::RSA_PSS_2048_8192_SHA512, k),
            _ => return false,
        };
        s::UnparsedPublicKey::new(a, key).verify(msg, sig).is_ok()
    }

    /// Does `sig` sign the message whose SHA-256 is `digest`? Only ECDSA P-256 can be
    /// checked from a digest (ring verifies messages; p256 verifies prehashes).
    pub fn verify_sha256_digest(&self, digest: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        let Alg::P256(point) = &self.alg else {
            return false;
        };
        let (Ok(vk), Ok(sig)) = (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(point),
            p256::ecdsa::Signature::from_der(sig),
        ) else {
            return false;
        };
        digest.len() == 32 && vk.verify_prehash(digest, &sig).is_ok()
    }

    /// The key's ID: hex SHA-256 of its SubjectPublicKeyInfo (DER).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The algorithm, for messages.
    pub fn algorithm(&self) -> &'static str {
        match self.alg {
            Alg::P256(_) => "ecdsa-p256",
            Alg::P384(_) => "ecdsa-p384",
            Alg::Ed25519(_) => "ed25519",
            Alg::Rsa(_) => "rsa",
        }
    }

    /// Does `sig` sign `msg` under this key? A malformed signature is a failed check.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        use ring::signature as s;
        let (alg, key): (&dyn s::VerificationAlgorithm, &[u8]) = match &self.alg {
            Alg::P256(k) => (&s::ECDSA_P256_SHA256_ASN1, k),
            Alg::P384(k) => (&s::ECDSA_P384_SHA384_ASN1, k),
            Alg::Rsa(k) => (&s::RSA_PKCS1_2048_8192_SHA256, k),
            Alg::Ed25519(k) => {
                // ed25519-dalek's strict check refuses small-order keys and
                // non-canonical signatures, which ring's would also accept.
                let Ok(vk) = <[u8; 32]>::try_from(k.as_slice())
                    .map_err(|_| ())
                    .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).map_err(|_| ()))
                else {
                    return false;
                };
                return ed25519_dalek::Signature::from_slice(sig)
                    .map(|s| vk.verify_strict(msg, &s).is_ok())
                    .unwrap_or(false);
            }
        };
        s::UnparsedPublicKey::new(alg, key).verify(msg, sig).is_ok()
    }
}

/// The DER inside the first PEM block labelled `label`. Our own small decoder: the
/// input comes from registries, and the `der` crate's PEM reader has looped on
/// malformed input before (see trust-core).
pub fn pem_block(pem: &[u8], label: &str) -> Result<Vec<u8>, String> {
    pem_blocks(pem, label)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("no PEM block -----BEGIN {label}-----"))
}

/// The DER of every PEM block labelled `label`, in order.
pub fn pem_blocks(pem: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "PEM is not text".to_owned())?;
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match &mut body {
            None if line == begin => body = Some(String::new()),
            None => {}
            Some(b) if line == end => {
                let der =
                    crate::b64::padded(b).map_err(|e| format!("PEM {label} is not base64: {e}"))?;
                out.push(der);
                body = None;
            }
            Some(b) => b.push_str(line),
        }
    }
    if body.is_some() {
        return Err(format!("PEM {label} block has no END line"));
    }
    Ok(out)
}

/// The PKCS#1 `RSAPublicKey` inside an RSA SubjectPublicKeyInfo, and its modulus' size in
/// bits. Only parsing here: the arithmetic is ring's (the `rsa` crate's private-key
/// timing advisory has no business in a verifier).
pub fn rsa_public_key(spki_der: &[u8]) -> Result<(Vec<u8>, usize), String> {
    use x509_cert::der::{asn1::UintRef, Reader as _, SliceReader};
    let spki =
        x509_cert::spki::SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| e.to_string())?;
    if spki.algorithm.oid != RSA {
        return Err(format!(
            "algorithm {} is not rsaEncryption",
            spki.algorithm.oid
        ));
    }
    let pkcs1 = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the key's bit string has unused bits")?;
    let modulus = SliceReader::new(pkcs1)
        .and_then(|mut r| {
            let n = r.sequence(|r| {
                let n = UintRef::decode(r)?;
                UintRef::decode(r)?;
                Ok(n)
            })?;
            r.finish(n)
        })
        .map_err(|e| format!("RSAPublicKey: {e}"))?;
    let n = modulus.as_bytes();
    let bits = (n.len() * 8).saturating_sub(n.first().map_or(0, |b| b.leading_zeros() as usize));
    Ok((pkcs1.to_vec(), bits))
}
