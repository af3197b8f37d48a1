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
    /// Decodes `bytes`, rejecting duplicate keys and non-integer numbers, and text of
    /// more than [`MAX_VALUES`] values.
    pub fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        let values = values_at_most(bytes);
        if values > MAX_VALUES {
            return Err(de::Error::custom(format!(
                "more than {MAX_VALUES} JSON values ({values})"
            )));
        }
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

/// Values (keys included) a decoded document may hold. Each takes 32 bytes or more in
/// [`Json`], so text like `[0,0,0,…]` would take 16 times its size in memory, before
/// any signature over it is checked; real documents (Notary's 10,000-tag targets, a
/// Notation payload) hold well under a tenth of this.
pub const MAX_VALUES: usize = 1_000_000;

/// An upper bound on the values (and keys) in JSON text, without decoding it: every one
/// after the first follows a `,`, a `:`, a `[` or a `{` outside a string.
fn values_at_most(bytes: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (1, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b':' | b'[' | b'{' => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// Canonicalises a JSON document given as bytes.
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    Ok(Json::parse(bytes)?.to_canonical())
}

/// Deepest nesting [`is_canonical`] follows; deeper text is re-encoded instead. The
/// typed read after it (serde_json, whose limit is one level less) refuses text this
/// deep either way.
const MAX_DEPTH: usize = 128;

/// Is `text` exactly what [`Json::to_canonical`] writes for the value it holds? Then a
/// signature can be checked over the bytes as they are, without decoding them into a
/// tree and encoding them again (a 10,000-target `targets.json` is 1.5 MB). `false` is
/// no error, only "re-encode instead": the check says `true` for no text whose
/// re-encoding differs, and leaves the rarer canonical forms (a key with an escape in
/// it) to the re-encoding. What it demands: no whitespace; object keys without escapes
/// in strictly increasing byte order (so none twice); strings escaping only `"` and
/// `\`, with no raw control character (which JSON forbids); integers in their shortest
/// form within 64 bits; nesting within [`MAX_DEPTH`].
pub fn is_canonical(text: &str) -> bool {
    let mut c = Check {
        b: text.as_bytes(),
        i: 0,
    };
    c.value(0) && c.i == c.b.len()
}

/// A cursor over text being checked.
struct Check<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Check<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let here = self.peek() == Some(byte);
        self.i += usize::from(here);
        here
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') if depth < MAX_DEPTH => self.object(depth),
            Some(b'[') if depth < MAX_DEPTH => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let here = self.b[self.i..].starts_with(word);
        self.i += if here { word.len() } else { 0 };
        here
    }

    /// The string at the cursor: its raw content and whether it has an escape.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let b: &'a [u8] = self.b;
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            match *b.get(self.i)? {
                b'"' => break,
                // The encoder escapes exactly these two, and nothing else.
                b'\\' if matches!(b.get(self.i + 1), Some(b'"' | b'\\')) => {
                    escaped = true;
                    self.i += 2;
                }
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        let content = &b[start..self.i];
        self.i += 1;
        Some((content, escaped))
    }

    /// An integer as the encoder writes it: no sign on zero, no leading zero, no
    /// fraction or exponent, and within what the decoder keeps exactly (64 bits).
    fn integer(&mut self) -> bool {
        let start = self.i;
        self.eat(b'-');
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let text = &self.b[start..self.i];
        let digits = &self.b[digits..self.i];
        let shortest = match digits {
            [] => false,
            [b'0'] => text.len() == 1,
            [first, ..] => *first != b'0',
        };
        let Ok(text) = std::str::from_utf8(text) else {
            return false;
        };
        // A fraction or exponent after it fails where the caller wants `,`, `]`, `}`
        // or the end.
        shortest && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok())
    }

    fn array(&mut self, depth: usize) -> bool {
        self.i += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        self.i += 1;
        if self.eat(b'}') {
            return true;
        }
        let mut previous: Option<&'a [u8]> = None;
        loop {
            if self.peek() != Some(b'"') {
                return false;
            }
            // A key with an escape sorts by its decoded bytes: left to the re-encoding.
            let Some((key, false)) = self.string() else {
                return false;
            };
            if previous.is_some_and(|p| p >= key) {
                return false;
            }
            previous = Some(key);
            if !self.eat(b':') || !self.value(depth + 1) {
                return false;
            }
            if self.eat(b'}') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }
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

    /// `is_canonical` may only say yes where re-encoding gives the same bytes.
    fn sound(text: &str) {
        if is_canonical(text) {
            let again = canonicalize(text.as_bytes()).expect("text said canonical parses");
            assert_eq!(
                String::from_utf8_lossy(&again),
                text,
                "said canonical but re-encodes differently"
            );
        }
    }

    #[test]
    fn canonical_text_is_recognised() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":[true,false,null,"x",0,-1,18446744073709551615,-9223372036854775808],"b":{}}"#,
            r#"{"Z":3,"a":2,"é":1}"#,
            r#"["a\"b\\c","<&>/","é","\u{2028}"]"#,
            r#"{"signed":{"_type":"Targets","expires":"2030-01-01T00:00:00Z","targets":{"v1":{"hashes":{"sha256":"AA=="},"length":2}},"version":3}}"#,
        ] {
            let text = text.replace("\\u{2028}", "\u{2028}");
            assert!(is_canonical(&text), "{text}");
            sound(&text);
        }
    }

    #[test]
    fn anything_the_encoder_would_write_otherwise_is_left_to_it() {
        for text in [
            r#"{ "a":1}"#,
            "{\"a\":1}\n",
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"["\/"]"#,
            r#"["\u0041"]"#,
            r#"["\n"]"#,
            "[\"\u{1}\"]",
            r#"{"a\"":1}"#,
            r#"[1.0]"#,
            r#"[1e2]"#,
            r#"[-0]"#,
            r#"[01]"#,
            r#"[-]"#,
            r#"[18446744073709551616]"#,
            r#"[-9223372036854775809]"#,
            r#"[True]"#,
            r#"[nul]"#,
            r#"[1,]"#,
            r#"{"a":1,}"#,
            r#"{"a"}"#,
            r#"{1:2}"#,
            r#"[1]]"#,
            r#"["abc"#,
            "",
        ] {
            assert!(!is_canonical(text), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!is_canonical(&deep));
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(is_canonical(&fine));
    }

    /// A small deterministic generator (xorshift), so the test needs no crate and
    /// always runs the same cases.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const PIECES: [&str; 12] = [
        "a", "b", "Z", "é", "\"", "\\", "/", "\u{2028}", "\n", " ", "0", "𝄞",
    ];

    fn text(rng: &mut Rng) -> String {
        (0..rng.below(4))
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect()
    }

    fn value(rng: &mut Rng, depth: usize) -> Json {
        match rng.below(if depth > 3 { 4 } else { 7 }) {
            0 => Json::Null,
            1 => Json::Bool(rng.below(2) == 1),
            2 => Json::Int(match rng.below(4) {
                0 => 0,
                1 => i128::from(u64::MAX),
                2 => i128::from(i64::MIN),
                _ => i128::from(rng.next() as i64 % 1000),
            }),
            3 => Json::String(text(rng)),
            4 | 5 => Json::Object(
                (0..rng.below(4))
                    .map(|_| (text(rng), value(rng, depth + 1)))
                    .collect(),
            ),
            _ => Json::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        }
    }

    fn escaped_key(v: &Json) -> bool {
        match v {
            Json::Object(m) => m
                .iter()
                .any(|(k, v)| k.contains(['"', '\\']) || escaped_key(v)),
            Json::Array(a) => a.iter().any(escaped_key),
            _ => false,
        }
    }

    #[test]
    fn generated_documents_and_their_mutants_agree_with_the_encoder() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut recognised = 0;
        for _ in 0..20_000 {
            let v = value(&mut rng, 0);
            let text = String::from_utf8(v.to_canonical()).expect("the encoder writes UTF-8");
            // Keys with an escape are left to the encoder; raw control characters are
            // not JSON. Everything else the encoder writes is recognised.
            if !text.bytes().any(|b| b < 0x20) && !escaped_key(&v) {
                assert!(is_canonical(&text), "{text}");
                recognised += 1;
            }
            sound(&text);
            // One edit anywhere: the check must never call the result canonical unless
            // the encoder agrees.
            let mut bytes = text.clone().into_bytes();
            let at = rng.below(bytes.len() + 1);
            match rng.below(4) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, b" \\\"0-.e,:{}[]"[rng.below(13)]),
                2 if at + 1 < bytes.len() => bytes.swap(at, at + 1),
                _ => bytes.insert(at, b'\\'),
            }
            if let Ok(mutant) = String::from_utf8(bytes) {
                sound(&mutant);
            }
        }
        assert!(recognised > 5_000, "only {recognised} recognised");
    }
}
