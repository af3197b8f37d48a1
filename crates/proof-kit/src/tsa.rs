//! RFC 3161 timestamps: a timestamp authority's signed statement that a signature
//! existed at `genTime`, which then stands for the signing time. Sigstore names its
//! authorities by their chains in a trusted root; Notation by root certificates in a
//! `tsa` trust store, the token carrying its signing certificate.

use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::der::asn1::{ObjectIdentifier, OctetStringRef};
use x509_cert::der::{Decode as _, Encode as _};

use crate::keys::Hash;
use crate::x509::{hash_of, Cert};
use crate::Error;

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// Certificates a timestamp token verified by root certificates may carry.
const MAX_TOKEN_CERTS: usize = 10;

fn bad(m: impl Into<String>) -> Error {
    Error::Timestamp(m.into())
}

/// A period of trust; an open end is "still trusted".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// From when.
    pub start: OffsetDateTime,
    /// Until when (open-ended when absent).
    pub end: Option<OffsetDateTime>,
}

impl Validity {
    /// Is `t` inside it (both ends inclusive)?
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        t >= self.start && self.end.is_none_or(|e| t <= e)
    }
}

/// A certificate authority (Fulcio) or a timestamp authority: a chain, issuer first,
/// root last, in DER.
#[derive(Debug, Clone)]
pub struct Authority {
    /// The certificates, the issuing one first, the root last.
    pub chain: Vec<Vec<u8>>,
    /// When certificates from it count.
    pub valid: Validity,
    /// Where the authority serves (informational).
    pub url: String,
}

fn digest(alg: ObjectIdentifier, data: &[u8]) -> Option<(Hash, Vec<u8>)> {
    Some(match alg {
        a if a == SHA256 => (Hash::Sha256, Sha256::digest(data).to_vec()),
        a if a == SHA384 => (Hash::Sha384, Sha384::digest(data).to_vec()),
        a if a == SHA512 => (Hash::Sha512, Sha512::digest(data).to_vec()),
        _ => return None,
    })
}

/// Who may sign timestamps.
#[derive(Debug, Clone, Copy)]
pub enum Authorities<'a> {
    /// Authorities by their chains (a Sigstore trusted root's timestamp authorities): the
    /// token is signed by the first certificate of one's chain, valid then.
    Chains(&'a [Authority]),
    /// Root certificates (a Notation `tsa` trust store): the token carries its signing
    /// certificate, which must chain to one of them and be a timestamping certificate.
    Roots(&'a [Cert]),
}

/// Verifies a DER TimeStampResp (as Sigstore bundles carry it) over `signature` (the
/// bytes the timestamp must cover) against `authorities`; returns the time it states.
pub fn verify(
    response: &[u8],
    signature: &[u8],
    authorities: &[Authority],
) -> Result<OffsetDateTime, Error> {
    let resp = x509_tsp::TimeStampResp::from_der(response)
        .map_err(|e| bad(format!("not a TimeStampResp: {e}")))?;
    if !matches!(
        resp.status.status,
        cmpv2::status::PkiStatus::Accepted | cmpv2::status::PkiStatus::GrantedWithMods
    ) {
        return Err(bad("the authority did not grant it"));
    }
    let token: ContentInfo = resp.time_stamp_token.ok_or_else(|| bad("no token"))?;
    verify_contents(token, signature, Authorities::Chains(authorities)).map(|(s, _)| s.time)
}

/// A verified timestamp: the time it states, and how far off it may be (its accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The time the authority vouches for.
    pub time: OffsetDateTime,
    /// Its accuracy (zero when the token gives none).
    pub accuracy: time::Duration,
}

impl Stamp {
    /// The earliest and latest moments it stands for.
    pub fn range(&self) -> (OffsetDateTime, OffsetDateTime) {
        // An absurd accuracy (a trusted authority's own bytes) reaches the ends of
        // time instead of overflowing: no certificate is valid over that range.
        let far = |t: Option<OffsetDateTime>, end: time::Date| {
            t.unwrap_or_else(|| end.midnight().assume_utc())
        };
        (
            far(self.time.checked_sub(self.accuracy), time::Date::MIN),
            far(self.time.checked_add(self.accuracy), time::Date::MAX),
        )
    }
}

/// Verifies a DER TimeStampToken (a ContentInfo, as Notation's countersignatures carry
/// it) over `signature`; returns the time it states, with its accuracy. Every certificate
/// of the authority's chain must be valid over the whole range.
pub fn verify_token(
    token: &[u8],
    signature: &[u8],
    authorities: Authorities<'_>,
) -> Result<Stamp, Error> {
    verify_token_chain(token, signature, authorities).map(|(s, _)| s)
}

/// [`verify_token`], with the chain that vouched for it: its signing certificate first,
/// the root last (for a profile its caller holds the chain to, as Notation does).
pub fn verify_token_chain(
    token: &[u8],
    signature: &[u8],
    authorities: Authorities<'_>,
) -> Result<(Stamp, Vec<Cert>), Error> {
    let token =
        ContentInfo::from_der(token).map_err(|e| bad(format!("not a TimeStampToken: {e}")))?;
    verify_contents(token, signature, authorities)
}

const TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");

fn verify_contents(
    token: ContentInfo,
    signature: &[u8],
    authorities: Authorities<'_>,
) -> Result<(Stamp, Vec<Cert>), Error> {
    if token.content_type != SIGNED_DATA {
        return Err(bad("the token is not SignedData"));
    }
    let sd: SignedData = token
        .content
        .decode_as()
        .map_err(|e| bad(format!("SignedData: {e}")))?;
    if sd.encap_content_info.econtent_type != TST_INFO {
        return Err(bad("the token does not hold a TSTInfo"));
    }
    let econtent = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| bad("the token holds no TSTInfo"))?;
    let tst_der = OctetStringRef::from_der(&econtent.to_der().map_err(|e| bad(e.to_string()))?)
        .map_err(|e| bad(format!("TSTInfo wrapper: {e}")))?
        .as_bytes()
        .to_vec();
    let tst = x509_tsp::TstInfo::from_der(&tst_der).map_err(|e| bad(format!("TSTInfo: {e}")))?;
    let (_, imprint) = digest(tst.message_imprint.hash_algorithm.oid, signature)
        .ok_or_else(|| bad("the message imprint's hash is not SHA-2"))?;
    if imprint != tst.message_imprint.hashed_message.as_bytes() {
        return Err(bad("it covers other bytes than the signature"));
    }
    let gen_time =
        OffsetDateTime::from_unix_timestamp(tst.gen_time.to_unix_duration().as_secs() as i64)
            .map_err(|e| bad(e.to_string()))?;

    // The signer: one SignerInfo, its signed attributes binding the TSTInfo, its
    // signature by the leaf certificate of a trusted authority's chain.
    let si = sd
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| bad("no signer"))?;
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad("no signed attributes"))?;
    let (hash_alg, tst_digest) =
        digest(si.digest_alg.oid, &tst_der).ok_or_else(|| bad("digest algorithm is not SHA-2"))?;
    let attr = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    let ct = attr(CONTENT_TYPE)
        .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| bad("no content-type attribute"))?;
    let md = attr(MESSAGE_DIGEST)
        .and_then(|v| {
            v.decode_as::<OctetStringRef<'_>>()
                .ok()
                .map(|o| o.as_bytes().to_vec())
        })
        .ok_or_else(|| bad("no message-digest attribute"))?;
    if ct != TST_INFO || md != tst_digest {
        return Err(bad("its signed attributes do not bind the TSTInfo"));
    }
    let signed = attrs.to_der().map_err(|e| bad(e.to_string()))?;
    let sig_hash = hash_of(si.signature_algorithm.oid).unwrap_or(hash_alg);
    let sig = si.signature.as_bytes();
    let chains = match authorities {
        Authorities::Chains(chains) => chains,
        Authorities::Roots(roots) => {
            let accuracy = tst.accuracy.as_ref().map_or(time::Duration::ZERO, |a| {
                time::Duration::seconds(
                    i64::try_from(a.seconds.unwrap_or(0)).unwrap_or(i64::MAX / 2),
                ) + time::Duration::milliseconds(i64::from(a.millis.unwrap_or(0).max(0)))
                    + time::Duration::microseconds(i64::from(a.micros.unwrap_or(0).max(0)))
            });
            let stamp = Stamp {
                time: gen_time,
                accuracy,
            };
            return verify_embedded(&sd, &signed, sig_hash, sig, roots, stamp);
        }
    };
    let mut last = bad("it is signed by no timestamp authority of the trusted root");
    for tsa in chains {
        let chain: Result<Vec<Cert>, Error> = tsa
            .chain
            .iter()
            .map(|d| Cert::parse(d).map_err(|e| bad(e.to_string())))
            .collect();
        let Ok(chain) = chain else { continue };
        let Some(leaf) = chain.first() else { continue };
        let Ok(key) = leaf.public_key() else { continue };
        if !key.verify_with(sig_hash, &signed, sig) {
            continue;
        }
        if !tsa.valid.contains(gen_time) {
            last = bad(format!(
                "the authority {} was not trusted at {gen_time}",
                tsa.url
            ));
            continue;
        }
        let linked = chain.windows(2).all(|w| w[0].signed_by(&w[1]));
        if !linked || !chain.iter().all(|c| c.valid_at(gen_time)) {
            last = bad(format!(
                "the chain of authority {} is not valid at {gen_time}",
                tsa.url
            ));
            continue;
        }
        return Ok((
            Stamp {
                time: gen_time,
                accuracy: time::Duration::ZERO,
            },
            chain,
        ));
    }
    Err(last)
}

/// The token's own signing certificate: it signed, it is a timestamping certificate, and
/// it chains (through certificates the token carries) to one of `roots`, every one valid
/// over the stamp's whole range.
fn verify_embedded(
    sd: &SignedData,
    signed: &[u8],
    hash: Hash,
    sig: &[u8],
    roots: &[Cert],
    stamp: Stamp,
) -> Result<(Stamp, Vec<Cert>), Error> {
    // Each certificate the token carries may cost a signature check per step of the
    // path: real tokens carry a few.
    let carried = sd.certificates.as_ref().map_or(0, |set| set.0.len());
    if carried > MAX_TOKEN_CERTS {
        return Err(bad(format!(
            "it carries {carried} certificates; at most {MAX_TOKEN_CERTS} are read"
        )));
    }
    let embedded: Vec<Cert> = sd
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => {
                        c.to_der().ok().and_then(|d| Cert::parse(&d).ok())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let signer = embedded
        .iter()
        .find(|c| {
            c.public_key()
                .is_ok_and(|k| k.verify_with(hash, signed, sig))
        })
        .ok_or_else(|| bad("no certificate it carries signed it"))?;
    let stamps = signer
        .extension(EKU)
        .and_then(|v| x509_cert::ext::pkix::ExtendedKeyUsage::from_der(v).ok())
        .is_some_and(|e| e.0.contains(&TIME_STAMPING));
    if !stamps {
        return Err(bad(
            "its signing certificate is not a timestamping certificate",
        ));
    }
    let mut path = vec![signer];
    loop {
        let cur = path[path.len() - 1];
        if let Some(r) = roots
            .iter()
            .find(|r| r.der() == cur.der() || cur.signed_by(r))
        {
            if r.der() != cur.der() {
                path.push(r);
            }
            break;
        }
        match embedded
            .iter()
            .find(|c| c.der() != cur.der() && c.is_ca() && cur.signed_by(c))
        {
            Some(next) if path.len() < 8 => path.push(next),
            _ => {
                return Err(bad(
                    "its signing certificate leads to no root of the rule's tsa trust stores",
                ))
            }
        }
    }
    let (from, to) = stamp.range();
    if let Some(c) = path.iter().find(|c| !c.valid_at(from) || !c.valid_at(to)) {
        let (nb, na) = c.validity();
        return Err(bad(format!(
            "a certificate of its chain is valid from {nb} to {na}, not over {from} to {to}"
        )));
    }
    Ok((stamp, path.into_iter().cloned().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_accuracy_reaches_the_ends_of_time_instead_of_overflowing() {
        let stamp = Stamp {
            time: OffsetDateTime::UNIX_EPOCH,
            accuracy: time::Duration::seconds(i64::MAX / 2),
        };
        let (from, to) = stamp.range();
        assert_eq!(from.date(), time::Date::MIN);
        assert_eq!(to.date(), time::Date::MAX);
    }
}
