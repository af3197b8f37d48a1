//! The certificate profile of the Notary Project specification, check by check as
//! notation-core-go v1.3.0 applies it (`x509/codesigning_cert_validations.go`) to the
//! chain an envelope carries, and as notation-go v1.3.2 applies it to trust-store
//! certificates (`verifier/truststore`). Where pullguard is stricter, the check says so
//! and `docs/notation-differences.md` lists it.

use sigstore_core::certs::Cert;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// Extended key usages a code-signing leaf must not have.
const FORBIDDEN_EKUS: [(&str, &str); 5] = [
    ("1.3.6.1.5.5.7.3.1", "serverAuth"),
    ("1.3.6.1.5.5.7.3.2", "clientAuth"),
    ("1.3.6.1.5.5.7.3.4", "emailProtection"),
    ("1.3.6.1.5.5.7.3.8", "timeStamping"),
    ("1.3.6.1.5.5.7.3.9", "OCSPSigning"),
];
const TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const EC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const RSA_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// The kind and size of a certificate's key, as Notation names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// ECDSA on P-256, P-384 or P-521 (bits).
    Ec(u16),
    /// RSA of this many modulus bits.
    Rsa(usize),
}

impl KeySpec {
    /// The only signature algorithm Notation accepts for a key of this spec.
    pub fn algorithm(self) -> Option<&'static str> {
        Some(match self {
            KeySpec::Ec(256) => "ES256",
            KeySpec::Ec(384) => "ES384",
            KeySpec::Ec(521) => "ES512",
            KeySpec::Rsa(2048) => "PS256",
            KeySpec::Rsa(3072) => "PS384",
            KeySpec::Rsa(4096) => "PS512",
            _ => return None,
        })
    }
}

/// The key spec of `c`'s public key, if Notation knows it (EC on P-256/384/521, RSA).
pub fn key_spec(c: &Cert) -> Option<KeySpec> {
    let spki = &c.certificate().tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid == EC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())?;
        return match curve {
            c if c == P256 => Some(KeySpec::Ec(256)),
            c if c == P384 => Some(KeySpec::Ec(384)),
            c if c == P521 => Some(KeySpec::Ec(521)),
            _ => None,
        };
    }
    if spki.algorithm.oid == RSA_KEY {
        let bits = rsa_modulus_bits(spki.subject_public_key.raw_bytes())?;
        return Some(KeySpec::Rsa(bits));
    }
    None
}

/// The modulus length of a PKCS #1 RSAPublicKey (`SEQUENCE { INTEGER n, INTEGER e }`),
/// rounded to bytes as Go's `Size() << 3` does.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (tag, seq, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, n, _) = tlv(seq)?;
    if tag != 0x02 {
        return None;
    }
    let n = match n {
        [0, rest @ ..] => rest,
        n => n,
    };
    Some(n.len() * 8)
}

/// One DER element: tag, contents, what follows.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// An extension's value and whether it is critical.
fn extension(c: &Cert, oid: ObjectIdentifier) -> Option<(&[u8], bool)> {
    c.certificate()
        .tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| (e.extn_value.as_bytes(), e.critical))
}

fn basic_constraints(c: &Cert) -> Option<BasicConstraints> {
    extension(c, BASIC_CONSTRAINTS).and_then(|(v, _)| BasicConstraints::from_der(v).ok())
}

/// The subject's name, for messages.
fn who(c: &Cert) -> String {
    let s = c.certificate().tbs_certificate.subject.to_string();
    s.chars().take(200).collect()
}

/// Raw subject equals raw issuer.
fn self_issued(c: &Cert) -> bool {
    let tbs = &c.certificate().tbs_certificate;
    match (tbs.subject.to_der(), tbs.issuer.to_der()) {
        (Ok(s), Ok(i)) => s == i,
        _ => false,
    }
}

/// The certificate's signature verifies under its own key (names aside).
fn signs_itself(c: &Cert) -> bool {
    // `signed_by` compares issuer and subject names too: only self-issued ones pass.
    self_issued(c) && c.signed_by(c)
}

/// Go's `CheckSignatureFrom(parent)` also wants the parent to be a CA with keyCertSign
/// when it has key usages.
fn may_sign_certificates(parent: &Cert) -> bool {
    let ca = basic_constraints(parent).is_some_and(|b| b.ca);
    let ku_ok = match extension(parent, KEY_USAGE) {
        Some((v, _)) => KeyUsage::from_der(v).is_ok_and(|k| k.key_cert_sign()),
        None => true,
    };
    ca && ku_ok
}

/// A key usage extension that must be present and critical; its value.
fn critical_key_usage(c: &Cert) -> Result<KeyUsage, String> {
    key_usage_of(c, true)
}

/// A key usage extension that must be present, critical or not; its value.
fn present_key_usage(c: &Cert) -> Result<KeyUsage, String> {
    key_usage_of(c, false)
}

fn key_usage_of(c: &Cert, critical: bool) -> Result<KeyUsage, String> {
    match extension(c, KEY_USAGE) {
        None => Err(format!(
            "certificate {:?}: the key usage extension must be present",
            who(c)
        )),
        Some((_, false)) if critical => Err(format!(
            "certificate {:?}: the key usage extension must be marked critical",
            who(c)
        )),
        Some((v, _)) => {
            KeyUsage::from_der(v).map_err(|e| format!("certificate {:?}: key usage: {e}", who(c)))
        }
    }
}

/// The code-signing leaf's rules.
fn check_leaf(c: &Cert) -> Result<(), String> {
    if basic_constraints(c).is_some_and(|b| b.ca) {
        return Err(format!(
            "certificate {:?}: a signing certificate must not be a CA",
            who(c)
        ));
    }
    signs_only(c, &critical_key_usage(c)?)?;
    // Notation accepts a leaf without extended key usages; pullguard wants codeSigning
    // (stricter, listed in docs/notation-differences.md).
    let eku = extension(c, EKU)
        .and_then(|(v, _)| ExtendedKeyUsage::from_der(v).ok())
        .map(|e| e.0)
        .unwrap_or_default();
    for (oid, name) in FORBIDDEN_EKUS {
        if eku.iter().any(|e| e.to_string() == oid) {
            return Err(format!(
                "certificate {:?}: the extended key usage must not contain {name}",
                who(c)
            ));
        }
    }
    if !eku.contains(&CODE_SIGNING) {
        return Err(format!(
            "certificate {:?}: not a code-signing certificate (no codeSigning extended key usage)",
            who(c)
        ));
    }
    accepted_key(c)
}

/// A leaf's key usage: digitalSignature, and nothing else.
fn signs_only(c: &Cert, ku: &KeyUsage) -> Result<(), String> {
    if !ku.digital_signature() {
        return Err(format!(
            "certificate {:?}: the key usage must include digitalSignature",
            who(c)
        ));
    }
    let other = [
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ];
    if let Some((_, name)) = other.iter().find(|(set, _)| *set) {
        return Err(format!(
            "certificate {:?}: the key usage must be digitalSignature only, but has {name}",
            who(c)
        ));
    }
    Ok(())
}

/// A leaf's key: a kind and size Notation signs with.
fn accepted_key(c: &Cert) -> Result<(), String> {
    match key_spec(c) {
        Some(k) if k.algorithm().is_some() => Ok(()),
        Some(KeySpec::Rsa(bits)) => Err(format!(
            "certificate {:?}: an RSA key of {bits} bits (Notation accepts 2048, 3072, 4096)",
            who(c)
        )),
        _ => Err(format!(
            "certificate {:?}: a key type Notation does not accept",
            who(c)
        )),
    }
}

/// A CA certificate at chain index `i` (1 = the leaf's issuer); its key usage read by
/// `key_usage` (critical for code signing, present for timestamping).
fn check_ca(
    c: &Cert,
    i: usize,
    key_usage: fn(&Cert) -> Result<KeyUsage, String>,
) -> Result<(), String> {
    let Some(bc) = basic_constraints(c).filter(|b| b.ca) else {
        return Err(format!(
            "certificate {:?}: an issuing certificate must be a CA (basic constraints cA = true)",
            who(c)
        ));
    };
    // Certificates below this one that are not the leaf: its path length must allow them.
    let below = i - 1;
    if let Some(len) = bc.path_len_constraint {
        if usize::from(len) < below {
            return Err(format!(
                "certificate {:?}: its path length constraint {len} allows fewer than the {below} CA certificates below it",
                who(c)
            ));
        }
    }
    let ku = key_usage(c)?;
    if !ku.key_cert_sign() {
        return Err(format!(
            "certificate {:?}: an issuing certificate's key usage must include keyCertSign",
            who(c)
        ));
    }
    Ok(())
}

/// The chain an envelope carries, leaf first, checked as Notation checks it: it ends
/// with a self-signed root, each other certificate is issued by the next and not
/// self-signed, the leaf is a code-signing certificate, the others CAs whose path length
/// and key usage allow what they issued. (Validity in time is checked by the caller, at
/// the time that counts.)
pub fn check_chain(chain: &[Cert]) -> Result<(), String> {
    check_path(chain, check_leaf, critical_key_usage)
}

/// A countersignature's chain, its signing certificate first and the root last, checked
/// as notation-go v1.3.2 checks it after verifying the token (notation-core-go's
/// `ValidateTimestampingCertChain`): the same path rules, a leaf that is no CA, whose
/// key usage is digitalSignature only and whose one extended key usage is timeStamping,
/// marked critical (RFC 3161 2.3); CAs with keyCertSign (present, not necessarily
/// critical) and path lengths that allow what they issued.
pub fn check_tsa_chain(chain: &[Cert]) -> Result<(), String> {
    check_path(chain, check_tsa_leaf, present_key_usage)
}

/// A timestamping certificate's own rules.
fn check_tsa_leaf(c: &Cert) -> Result<(), String> {
    if basic_constraints(c).is_some_and(|b| b.ca) {
        return Err(format!(
            "certificate {:?}: a timestamping certificate must not be a CA",
            who(c)
        ));
    }
    signs_only(c, &present_key_usage(c)?)?;
    let (eku, critical) = extension(c, EKU)
        .and_then(|(v, critical)| Some((ExtendedKeyUsage::from_der(v).ok()?.0, critical)))
        .unwrap_or_default();
    if eku != [TIME_STAMPING] {
        return Err(format!(
            "certificate {:?}: a timestamping certificate's only extended key usage must be timeStamping",
            who(c)
        ));
    }
    if !critical {
        return Err(format!(
            "certificate {:?}: a timestamping certificate's extended key usage must be marked critical",
            who(c)
        ));
    }
    accepted_key(c)
}

/// The rules every chain shares: it ends with a self-signed root, each other
/// certificate is issued by the next and not self-signed; `leaf` checks the first,
/// [`check_ca`] (reading key usages with `ca_usage`) the others.
fn check_path(
    chain: &[Cert],
    leaf_rules: fn(&Cert) -> Result<(), String>,
    ca_usage: fn(&Cert) -> Result<KeyUsage, String>,
) -> Result<(), String> {
    let Some((leaf, _)) = chain.split_first() else {
        return Err("the certificate chain is empty".to_owned());
    };
    if chain.len() == 1 {
        if !signs_itself(leaf) {
            return Err(format!(
                "a chain of one certificate must be self-signed, and {:?} is not",
                who(leaf)
            ));
        }
        return leaf_rules(leaf);
    }
    for (i, c) in chain.iter().enumerate() {
        match chain.get(i + 1) {
            None => {
                if !signs_itself(c) {
                    return Err(format!(
                        "the chain must end with a self-signed root certificate, and {:?} is not one",
                        who(c)
                    ));
                }
            }
            Some(parent) => {
                if signs_itself(c) {
                    return Err(format!(
                        "certificate {:?} is self-signed but not the chain's last",
                        who(c)
                    ));
                }
                if !c.signed_by(parent) || !may_sign_certificates(parent) {
                    return Err(format!(
                        "certificate {:?} is not issued by the next one, {:?}",
                        who(c),
                        who(parent)
                    ));
                }
            }
        }
        if i == 0 {
            leaf_rules(c)?;
        } else {
            check_ca(c, i, ca_usage)?;
        }
    }
    Ok(())
}

/// The kind of trust store a certificate sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `ca` or `signingAuthority`.
    Signing,
    /// `tsa`.
    Tsa,
}

/// A trust store's certificate, as notation-go accepts it: a CA, or a certificate that
/// signs itself (`ca`, `signingAuthority`); a self-issued, self-signed CA (`tsa`). A
/// store holding only a leaf is refused.
pub fn check_store_certificate(c: &Cert, kind: StoreKind) -> Result<(), String> {
    let ok = match kind {
        StoreKind::Signing => basic_constraints(c).is_some_and(|b| b.ca) || c.signed_by_key_of(c),
        StoreKind::Tsa => self_issued(c) && c.signed_by(c) && may_sign_certificates(c),
    };
    if ok {
        Ok(())
    } else if kind == StoreKind::Tsa {
        Err(format!("certificate {:?} is not a root CA certificate (a tsa store holds self-signed CAs only)", who(c)))
    } else {
        Err(format!(
            "certificate {:?} is neither a CA nor self-signed (Notation refuses such a trust store)",
            who(c)
        ))
    }
}
