//! Fulcio signing certificates: the chain to a certificate authority of the trusted root,
//! the code-signing usage, the identity (SAN and OIDC issuer extension), and the signed
//! certificate timestamp (SCT) of a trusted CT log embedded in the certificate.

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};

use crate::keys::Hash;
use crate::trust_root::TrustedRoot;
use crate::{Error, Reason};
pub use proof_kit::x509::Cert;

const SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");

/// What a Fulcio certificate says of its signer.
pub trait Fulcio {
    /// The SAN values (URIs and e-mail addresses) and the OIDC issuer extension.
    fn identity(&self) -> (Vec<String>, Option<String>);
}

impl Fulcio for Cert {
    fn identity(&self) -> (Vec<String>, Option<String>) {
        use x509_cert::ext::pkix::name::GeneralName;
        let mut sans = Vec::new();
        if let Some(v) = self.extension(SAN) {
            if let Ok(san) = x509_cert::ext::pkix::SubjectAltName::from_der(v) {
                for n in san.0 {
                    match n {
                        GeneralName::UniformResourceIdentifier(u) => sans.push(u.to_string()),
                        GeneralName::Rfc822Name(m) => sans.push(m.to_string()),
                        _ => {}
                    }
                }
            }
        }
        (sans, issuer(self))
    }
}

/// The OIDC issuer: Fulcio's v2 extension (a DER UTF8String) or its deprecated v1 (the
/// raw string); both when both are there, and then they must agree. A v2 that is not
/// DER, or two that disagree, name no issuer: readers differ on which to believe
/// (cosign's classic path reads only v1, sigstore-go the one that comes last).
fn issuer(c: &Cert) -> Option<String> {
    let v2 = match c.extension(ISSUER_V2) {
        Some(v) => Some(
            x509_cert::der::asn1::Utf8StringRef::from_der(v)
                .ok()?
                .to_string(),
        ),
        None => None,
    };
    let v1 = match c.extension(ISSUER_V1) {
        Some(v) => Some(std::str::from_utf8(v).ok()?.to_owned()),
        None => None,
    };
    match (v2, v1) {
        (Some(a), Some(b)) if a != b => None,
        (a, b) => a.or(b),
    }
}

fn bad(m: impl Into<String>) -> Error {
    Error::new(Reason::BadSignature, m)
}

/// A certificate from DER, or why not, as a refusal of the signature.
pub(crate) fn parse(der: &[u8]) -> Result<Cert, Error> {
    Cert::parse(der).map_err(|e| Error::new(Reason::BadSignature, e.to_string()))
}

/// A certificate's key, or why it cannot be used, as a refusal of the signature.
pub(crate) fn key_of(c: &Cert) -> Result<crate::PublicKey, Error> {
    c.public_key()
        .map_err(|e| Error::new(Reason::BadSignature, e.to_string()))
}

/// Verifies `leaf` at signing time `t`: it chains to a certificate authority of the
/// trusted root valid at `t` (through that authority's own chain, every certificate valid
/// at `t`), it is a code-signing certificate and not a CA, and it carries an SCT from a
/// trusted CT log. Returns the issuing authority's index.
pub fn verify_leaf(leaf: &Cert, root: &TrustedRoot, t: OffsetDateTime) -> Result<usize, Error> {
    if leaf.is_ca() || !leaf.code_signing() {
        return Err(bad(
            "the signing certificate is not a code-signing leaf certificate",
        ));
    }
    if !leaf.valid_at(t) {
        let (nb, na) = leaf.validity();
        return Err(Error::new(
            Reason::CertificateExpired,
            format!(
                "the signing certificate was valid from {nb} to {na}, not at the signing time {t}"
            ),
        ));
    }
    let mut last =
        bad("the signing certificate chains to no certificate authority of the trusted root");
    for (i, ca) in root.cas.iter().enumerate() {
        let chain: Result<Vec<Cert>, Error> = ca.chain.iter().map(|d| parse(d)).collect();
        let Ok(chain) = chain else { continue };
        let Some(first) = chain.first() else { continue };
        if !leaf.signed_by(first) {
            continue;
        }
        if !ca.valid.contains(t) {
            last = Error::new(
                Reason::CertificateExpired,
                format!(
                    "the certificate authority {} was not trusted at the signing time {t}",
                    ca.url
                ),
            );
            continue;
        }
        let linked = chain.windows(2).all(|w| w[0].signed_by(&w[1]));
        let top_ok = chain
            .last()
            .is_some_and(|r| !r.self_signed() || r.signed_by(r));
        let all_ca = chain.iter().all(Cert::is_ca);
        let all_valid = chain.iter().all(|c| c.valid_at(t));
        if linked && top_ok && all_ca && all_valid {
            verify_sct(leaf, first, root)?;
            return Ok(i);
        }
        last = Error::new(
            Reason::CertificateExpired,
            format!(
                "the chain of certificate authority {} is not valid at the signing time {t}",
                ca.url
            ),
        );
    }
    Err(last)
}

/// Checks an embedded SCT (RFC 6962 §3.2, precertificate entry) from a CT log of the
/// trusted root, signed over the certificate without its SCT extension.
fn verify_sct(leaf: &Cert, issuer: &Cert, root: &TrustedRoot) -> Result<(), Error> {
    let missing = || bad("the signing certificate carries no SCT from a trusted CT log");
    let ext = leaf.extension(SCT_LIST).ok_or_else(missing)?;
    let list = x509_cert::der::asn1::OctetStringRef::from_der(ext)
        .map_err(|_| bad("the SCT extension is not an OCTET STRING"))?;
    let scts = parse_sct_list(list.as_bytes()).ok_or_else(|| bad("the SCT list does not parse"))?;
    let mut tbs = leaf.certificate().tbs_certificate.clone();
    if let Some(exts) = tbs.extensions.as_mut() {
        exts.retain(|e| e.extn_id != SCT_LIST);
    }
    let tbs = tbs.to_der().map_err(|e| bad(e.to_string()))?;
    let issuer_key_hash = Sha256::digest(issuer.spki_der());
    for sct in scts {
        let Some(log) = root.ctlogs.iter().find(|l| l.id == sct.log_id) else {
            continue;
        };
        let Ok(when) =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(sct.timestamp) * 1_000_000)
        else {
            continue;
        };
        if !log.valid.contains(when) {
            continue;
        }
        let mut signed = vec![0u8, 0u8];
        signed.extend_from_slice(&sct.timestamp.to_be_bytes());
        signed.extend_from_slice(&1u16.to_be_bytes());
        signed.extend_from_slice(&issuer_key_hash);
        let len = u32::try_from(tbs.len()).unwrap_or(u32::MAX).to_be_bytes();
        signed.extend_from_slice(&len[1..]);
        signed.extend_from_slice(&tbs);
        signed.extend_from_slice(
            &u16::try_from(sct.extensions.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        signed.extend_from_slice(&sct.extensions);
        let hash = match sct.hash {
            4 => Hash::Sha256,
            5 => Hash::Sha384,
            6 => Hash::Sha512,
            _ => continue,
        };
        if log.key.verify_with(hash, &signed, &sct.signature) {
            return Ok(());
        }
    }
    Err(missing())
}

struct Sct {
    log_id: Vec<u8>,
    timestamp: u64,
    extensions: Vec<u8>,
    hash: u8,
    signature: Vec<u8>,
}

/// The TLS-encoded SignedCertificateTimestampList.
fn parse_sct_list(b: &[u8]) -> Option<Vec<Sct>> {
    let mut r = Reader(b);
    let mut list = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let mut s = Reader(list.vec16()?);
        if s.take(1)? != [0] {
            continue; // only v1 SCTs exist
        }
        let log_id = s.take(32)?.to_vec();
        let timestamp = u64::from_be_bytes(s.take(8)?.try_into().ok()?);
        let extensions = s.vec16()?.to_vec();
        let hash = s.take(1)?[0];
        let _sig_alg = s.take(1)?[0];
        let signature = s.vec16()?.to_vec();
        out.push(Sct {
            log_id,
            timestamp,
            extensions,
            hash,
            signature,
        });
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        self.take(usize::from(n))
    }
}

/// A signer identity a rule accepts: the OIDC issuer and the certificate's SAN, each
/// exactly or matching an anchored regular expression.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The OIDC issuer the certificate must name.
    pub issuer: Subject,
    /// The SAN the certificate must carry.
    pub subject: Subject,
}

/// How a SAN or an issuer is matched.
#[derive(Debug, Clone)]
pub enum Subject {
    /// Equal to this string.
    Exact(String),
    /// Anchored: the whole SAN must match.
    Regex(regex::Regex),
}

impl Identity {
    /// An exact identity.
    pub fn exact(subject: &str, issuer: &str) -> Identity {
        Identity {
            issuer: Subject::Exact(issuer.to_owned()),
            subject: Subject::Exact(subject.to_owned()),
        }
    }

    /// An identity whose SAN must match `pattern` as a whole (`^(?:pattern)$`).
    pub fn regex(pattern: &str, issuer: &str) -> Result<Identity, String> {
        Ok(Identity {
            issuer: Subject::Exact(issuer.to_owned()),
            subject: Subject::Regex(anchored(pattern, "subject_regex")?),
        })
    }

    /// The same, with the issuer matched by `pattern` as a whole instead.
    pub fn with_issuer_regex(self, pattern: &str) -> Result<Identity, String> {
        Ok(Identity {
            issuer: Subject::Regex(anchored(pattern, "issuer_regex")?),
            ..self
        })
    }

    fn matches(&self, sans: &[String], issuer: Option<&str>) -> bool {
        issuer.is_some_and(|i| self.issuer.matches(i))
            && sans.iter().any(|s| self.subject.matches(s))
    }
}

impl Subject {
    fn matches(&self, s: &str) -> bool {
        match self {
            Subject::Exact(e) => s == e,
            Subject::Regex(r) => r.is_match(s),
        }
    }
}

/// `^(?:pattern)$`, bounded in size (regex guarantees linear-time matching).
fn anchored(pattern: &str, key: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("{key} {pattern:?}: {e}"))
}

/// Does the certificate's identity match one of `accepted`?
pub fn check_identity(leaf: &Cert, accepted: &[Identity]) -> Result<(), Error> {
    let (sans, issuer) = leaf.identity();
    if accepted.iter().any(|i| i.matches(&sans, issuer.as_deref())) {
        return Ok(());
    }
    let shown: Vec<String> = sans.iter().map(|s| s.chars().take(200).collect()).collect();
    Err(Error::new(
        Reason::IdentityMismatch,
        format!(
            "the signing certificate names {shown:?} from issuer {:?}, which none of the {} accepted identities matches",
            issuer.unwrap_or_default().chars().take(200).collect::<String>(),
            accepted.len()
        ),
    ))
}
