//! X.509 certificates as the signature formats read them: parsed once with their DER,
//! an extension given twice refused (RFC 5280 §4.2; two readers of one that appears
//! twice could each take another), the subject's key, validity, extensions, and whether
//! another certificate's key signed it. Chains and profiles are each format's own
//! (Fulcio's in sigstore-core, Notation's in notation-core), built on these.

use time::OffsetDateTime;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::Certificate;

use crate::keys::{Hash, PublicKey};
use crate::Error;

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ED25519_SIG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

fn bad(m: impl Into<String>) -> Error {
    Error::Certificate(m.into())
}

/// A parsed certificate with its DER. The two are made together, by [`Cert::parse`],
/// and cannot be changed apart.
#[derive(Debug, Clone)]
pub struct Cert {
    der: Vec<u8>,
    cert: Certificate,
}

impl Cert {
    /// The certificate's DER, as signed.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// Parses DER.
    pub fn parse(der: &[u8]) -> Result<Cert, Error> {
        let cert = Certificate::from_der(der)
            .map_err(|e| bad(format!("certificate does not parse: {e}")))?;
        // The algorithm named outside the signed part must be the one signed inside it
        // (Go's parser refuses the certificate otherwise, RFC 5280 §4.1.1.2).
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(bad(
                "the certificate's outer and inner signature algorithms differ".to_owned(),
            ));
        }
        // RFC 5280 §4.2: an extension appears at most once. Two readers of one that
        // appears twice (an issuer, a SAN) could each take another (Go refuses it too).
        if let Some(exts) = &cert.tbs_certificate.extensions {
            let mut seen = std::collections::BTreeSet::new();
            if exts.iter().any(|e| !seen.insert(e.extn_id)) {
                return Err(bad("the certificate has an extension twice".to_owned()));
            }
        }
        Ok(Cert {
            der: der.to_vec(),
            cert,
        })
    }

    /// The subject's public key.
    pub fn public_key(&self) -> Result<PublicKey, Error> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| bad(e.to_string()))?;
        PublicKey::from_spki_der(&spki).map_err(|e| bad(format!("certificate key: {e}")))
    }

    /// The subject's SubjectPublicKeyInfo, DER (empty if it does not encode).
    pub fn spki_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap_or_default()
    }

    /// notBefore and notAfter.
    pub fn validity(&self) -> (OffsetDateTime, OffsetDateTime) {
        let v = &self.cert.tbs_certificate.validity;
        let t = |x: x509_cert::time::Time| {
            OffsetDateTime::from_unix_timestamp(x.to_unix_duration().as_secs() as i64)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        };
        (t(v.not_before), t(v.not_after))
    }

    /// Was it valid at `t` (both ends inclusive, as X.509 says)?
    pub fn valid_at(&self, t: OffsetDateTime) -> bool {
        let (nb, na) = self.validity();
        nb <= t && t <= na
    }

    /// The value of an extension, DER.
    pub fn extension(&self, oid: ObjectIdentifier) -> Option<&[u8]> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// Is it a CA (basicConstraints cA = true)?
    pub fn is_ca(&self) -> bool {
        self.extension(BASIC_CONSTRAINTS)
            .and_then(|v| x509_cert::ext::pkix::BasicConstraints::from_der(v).ok())
            .is_some_and(|b| b.ca)
    }

    /// Issuer and subject are the same name.
    pub fn self_signed(&self) -> bool {
        self.cert.tbs_certificate.issuer == self.cert.tbs_certificate.subject
    }

    /// Did `issuer` sign this certificate?
    pub fn signed_by(&self, issuer: &Cert) -> bool {
        self.cert.tbs_certificate.issuer == issuer.cert.tbs_certificate.subject
            && self.signed_by_key_of(issuer)
    }

    /// Does this certificate's signature verify under `holder`'s key (names aside)?
    pub fn signed_by_key_of(&self, holder: &Cert) -> bool {
        let Ok(key) = holder.public_key() else {
            return false;
        };
        let Ok(tbs) = self.cert.tbs_certificate.to_der() else {
            return false;
        };
        let Some(sig) = self.cert.signature.as_bytes() else {
            return false;
        };
        match hash_of(self.cert.signature_algorithm.oid) {
            Some(h) => key.verify_with(h, &tbs, sig),
            None => false,
        }
    }

    /// Has the code-signing extended key usage.
    pub fn code_signing(&self) -> bool {
        self.extension(EKU)
            .and_then(|v| x509_cert::ext::pkix::ExtendedKeyUsage::from_der(v).ok())
            .is_some_and(|e| e.0.contains(&CODE_SIGNING))
    }
}

/// The hash a certificate signature algorithm signs with, if it is one checked here.
pub fn hash_of(oid: ObjectIdentifier) -> Option<Hash> {
    match oid {
        o if o == ECDSA_SHA256 || o == RSA_SHA256 || o == ED25519_SIG => Some(Hash::Sha256),
        o if o == ECDSA_SHA384 || o == RSA_SHA384 => Some(Hash::Sha384),
        o if o == ECDSA_SHA512 || o == RSA_SHA512 => Some(Hash::Sha512),
        _ => None,
    }
}
