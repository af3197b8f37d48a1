//! Canonical JSON as Notary computes it before checking a signature.
//!
//! Notary verifies a signature over a re-encoding of the `signed` object, not over the
//! bytes on the wire: it decodes the object and marshals it again with the canonical
//! encoder of `github.com/docker/go/canonical/json`. That encoder
//! - sorts object keys by their UTF-8 bytes and writes no whitespace;
//! - escapes only `"` and `\` in strings; control characters, U+2028, U+2029 and
//!   everything else are written as they are (its ordinary mode escapes U+2028 and
//!   U+2029 for JSONP; canonical mode returns before that branch);
//! - refuses numbers that are not integers.
//!
//! [`Json`] is our decoded form. Decoding is stricter than Go's in two ways that only
//! ever reject: an object with the same key twice is an error (Go keeps the last one,
//! which lets two readers see different documents), and a number must be an integer
//! that fits in 64 bits.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A decoded JSON value in the shape the canonical encoder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// An integer; canonical JSON has no other numbers.
    Int(i128),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; keys are kept sorted as the encoder writes them.
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// Decodes `bytes`, rejecting duplicate keys and non-integer numbers.
    pub fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The canonical encoding of this value.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }

    /// The value under `key` when this is an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(map) => map.get(key),
            _ => None,
        }
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_canonical(out);
                }
                out.push(b']');
            }
            Json::Object(map) => {
                out.push(b'{');
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(key, out);
                    out.push(b':');
                    value.write_canonical(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Canonicalises a JSON document given as bytes.
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    Ok(Json::parse(bytes)?.to_canonical())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

/// Floats that are whole numbers are accepted (Go decodes every number as a float and
/// writes integral ones without a fraction); 2^53 bounds the range where that is exact.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        if v.is_finite() && v.fract() == 0.0 && v.abs() <= MAX_EXACT_FLOAT {
            // Exact by the bound above.
            #[allow(clippy::cast_possible_truncation)]
            Ok(Json::Int(v as i128))
        } else {
            Err(E::custom(format!(
                "number {v} is not an integer; canonical JSON has only integers"
            )))
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            out.insert(key, value);
        }
        Ok(Json::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        String::from_utf8(canonicalize(s.as_bytes()).expect("valid json")).expect("utf8")
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            canon(r#"{ "b": 1, "a": [true, null, "x"] }"#),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn sorts_by_bytes_not_by_chars() {
        // 'Z' (0x5a) sorts before 'a' (0x61); 'é' (0xc3 0xa9) after both.
        assert_eq!(canon(r#"{"é":1,"a":2,"Z":3}"#), r#"{"Z":3,"a":2,"é":1}"#);
    }

    #[test]
    fn escapes_only_quote_and_backslash_not_line_separators() {
        assert_eq!(canon(r#"["a\"b\\c"]"#), r#"["a\"b\\c"]"#);
        // No HTML escaping, no escaping of '/'.
        assert_eq!(canon(r#"["<&>\/"]"#), r#"["<&>/"]"#);
        // Control characters are written raw, as docker/go does.
        assert_eq!(canon(r#"["tab\there\nnl"]"#), "[\"tab\there\nnl\"]");
        // U+2028 and U+2029 too: docker/go's canonical mode skips the JSONP escape that
        // its ordinary mode applies, and notary signs the raw UTF-8 bytes.
        assert_eq!(canon(r#"["\u2028\u2029"]"#), "[\"\u{2028}\u{2029}\"]");
        // Escaped non-ASCII comes out as UTF-8.
        assert_eq!(canon(r#"["\u00e9"]"#), "[\"é\"]");
    }

    #[test]
    fn integral_floats_become_integers() {
        assert_eq!(canon("[1.0, 2e3, -0]"), "[1,2000,0]");
    }

    #[test]
    fn rejects_fractions_and_huge_floats() {
        assert!(canonicalize(b"[1.5]").is_err());
        assert!(canonicalize(b"[1e300]").is_err());
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = canonicalize(br#"{"a":1,"a":2}"#).expect_err("duplicate");
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn keeps_big_integers_exactly() {
        assert_eq!(
            canon("[18446744073709551615, -9223372036854775808]"),
            "[18446744073709551615,-9223372036854775808]"
        );
    }
}
