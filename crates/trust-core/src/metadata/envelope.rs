//! An envelope (`{"signed": ..., "signatures": [...]}`) read up to its typed body.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{b64, Signature, Signed};
use crate::canonical::{self, Json};
use crate::error::Error;

/// An envelope's members as they are written: `signed` is kept as text, so that
/// canonical text can be checked and read in place; a member given twice is refused.
struct RawEnvelope<'a> {
    members: BTreeMap<String, &'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawEnvelope<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Members<'a> {
            type Value = RawEnvelope<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object with \"signed\" and \"signatures\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // A map, not a list searched for each key: the members are the file's,
                // and a file of many short keys would make that search quadratic.
                let mut members = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if members.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    let value: &'a RawValue = map.next_value()?;
                    members.insert(key, value);
                }
                Ok(RawEnvelope { members })
            }
        }
        d.deserialize_map(Members(std::marker::PhantomData))
    }
}

impl<'a> RawEnvelope<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members.get(key).copied()
    }
}

#[derive(Deserialize)]
struct RawSig {
    keyid: String,
    method: String,
    sig: String,
}

/// An envelope read up to its typed body: the `signed` text, the bytes its signatures
/// cover, and the signatures. The body is read apart so that the signatures can be
/// checked while it is (a large file's two costs, side by side).
pub(crate) struct Opened<'a> {
    pub(crate) signed: &'a str,
    pub(crate) canonical: Vec<u8>,
    pub(crate) signatures: Vec<Signature>,
}

impl Opened<'_> {
    pub(crate) fn with<T>(self, body: T) -> Signed<T> {
        Signed {
            body,
            canonical: self.canonical,
            signatures: self.signatures,
        }
    }
}

/// Reads an envelope up to its typed body.
pub(crate) fn open<'a>(role: &str, bytes: &'a [u8]) -> Result<Opened<'a>, Error> {
    let malformed = |e: serde_json::Error| Error::malformed(role, e);
    let raw: RawEnvelope<'a> = serde_json::from_slice(bytes).map_err(malformed)?;
    // Every member is held to canonical JSON's rules (no key twice, integers only), as
    // when the whole document was decoded into one tree.
    for (key, value) in &raw.members {
        if key != "signed" {
            Json::parse(value.get().as_bytes()).map_err(malformed)?;
        }
    }
    let signed = raw
        .get("signed")
        .ok_or_else(|| Error::malformed(role, "no \"signed\" object"))?
        .get();
    if !signed.starts_with('{') {
        return Err(Error::malformed(role, "\"signed\" is not an object"));
    }
    // What the signatures cover is the re-encoding of `signed`. Text that already is
    // exactly that (Notary writes it so) is taken as it is: strictly ordered keys mean
    // no key twice, so the typed reading sees the same document. Anything else is
    // decoded (refusing a key given twice) and encoded again.
    let canonical = if canonical::is_canonical(signed) {
        signed.as_bytes().to_vec()
    } else {
        Json::parse(signed.as_bytes())
            .map_err(malformed)?
            .to_canonical()
    };
    let sigs = raw
        .get("signatures")
        .ok_or_else(|| Error::malformed(role, "missing field `signatures`"))?;
    let sigs: Vec<RawSig> = serde_json::from_str(sigs.get()).map_err(malformed)?;
    let signatures = sigs
        .into_iter()
        .map(|s| Signature {
            keyid: s.keyid,
            method: s.method.to_ascii_lowercase(),
            sig: b64(&s.sig),
        })
        .collect();
    Ok(Opened {
        signed,
        canonical,
        signatures,
    })
}

/// The typed reading of an opened envelope's `signed` text.
pub(super) fn typed<'a, T: Deserialize<'a>>(role: &str, signed: &'a str) -> Result<T, Error> {
    serde_json::from_str(signed).map_err(|e| Error::malformed(role, e))
}
