//! SHA-256 digests and key IDs as text: 64 hex digits. Parsed once where they come in
//! (containerd, a pull's reference, the command line, anchors), one rule everywhere.
//! Also the hashes a parent role lists for a file.

use std::fmt;

/// 64 hex digits in either case, as lower case; `None` for anything else. Key IDs and
/// SHA-256 digests are both spelled this way.
pub fn hex64(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// A SHA-256 digest, the only kind Notary trust data vouches for. Displayed as
/// `sha256:HEX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(String);

impl Sha256 {
    /// From 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<Sha256> {
        hex64(hex).map(Sha256)
    }

    /// From `sha256:HEX`, as containerd and OCI write digests.
    pub fn from_prefixed(digest: &str) -> Option<Sha256> {
        digest.strip_prefix("sha256:").and_then(Sha256::from_hex)
    }

    /// The lowercase hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A file's hashes by algorithm name (decoded), in the order the parent lists them
/// (sorted when its text is canonical; a name given twice is refused either way, by the
/// canonical check or by the decoder the other text goes through). A list, not a map:
/// with 10,000 targets of one hash each, a map's node per target was the largest single
/// cost of reading and dropping them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashes(pub(crate) Vec<(String, Vec<u8>)>);

impl Hashes {
    /// The hash listed for `algorithm`.
    pub fn get(&self, algorithm: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(a, _)| a == algorithm)
            .map(|(_, h)| h.as_slice())
    }

    /// Every hash listed, as (algorithm, hash).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(a, h)| (a.as_str(), h.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_hex_digits_and_lower_case_out() {
        let upper = "AB".repeat(32);
        assert_eq!(hex64(&upper), Some("ab".repeat(32)));
        assert_eq!(hex64(&"a".repeat(63)), None);
        assert_eq!(hex64(&"g".repeat(64)), None);
        assert_eq!(hex64(&format!("{}\"", "a".repeat(63))), None);
        let d = Sha256::from_prefixed(&format!("sha256:{upper}")).expect("digest");
        assert_eq!(d.to_string(), format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(
            Sha256::from_prefixed(&format!("sha512:{}", "a".repeat(64))),
            None
        );
        assert_eq!(
            Sha256::from_prefixed(&"a".repeat(64)),
            None,
            "the prefix is required"
        );
    }
}
