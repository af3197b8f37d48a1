//! Base64 in each variant the signature formats write, one function each, so that every
//! tolerance is a decision written down once (and held to the reference verifiers by the
//! differential suites) instead of an engine picked at each call.

use crate::Error;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;

fn checked(r: Result<Vec<u8>, base64::DecodeError>) -> Result<Vec<u8>, Error> {
    r.map_err(|e| Error::Base64(e.to_string()))
}

/// RFC 4648 base64, standard alphabet, canonical padding, nothing else: TUF metadata,
/// PEM bodies, X.509 certificates in JWS headers.
pub fn padded(s: &str) -> Result<Vec<u8>, Error> {
    checked(STANDARD.decode(s))
}

/// Standard alphabet with padding or without, surrounding white space ignored: cosign's
/// signature annotations and DSSE signatures (Go's cosign tries both).
pub fn padding_optional(s: &str) -> Result<Vec<u8>, Error> {
    let s = s.trim();
    checked(STANDARD.decode(s).or_else(|_| STANDARD_NO_PAD.decode(s)))
}

/// Base64 as protobuf JSON writers emit it: standard alphabet, padded, possibly wrapped
/// in lines (Go's decoder skips CR and LF; so does this one, and nothing else).
pub fn line_wrapped(s: &str) -> Result<Vec<u8>, Error> {
    let joined: String = s
        .trim()
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    checked(STANDARD.decode(joined))
}

/// base64url without padding (RFC 7515's JWS segments).
pub fn url_unpadded(s: &str) -> Result<Vec<u8>, Error> {
    checked(URL_SAFE_NO_PAD.decode(s))
}

/// Standard alphabet, padded: what the formats write.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_takes_what_its_format_writes_and_refuses_the_rest() {
        assert_eq!(padded("aGk=").unwrap(), b"hi");
        for not in ["aGk", " aGk=", "aGk=\n", "aGl=", "aG-=", "aGk=="] {
            assert!(padded(not).is_err(), "{not:?}");
        }
        for ok in ["aGk=", "aGk", " aGk=\n"] {
            assert_eq!(padding_optional(ok).unwrap(), b"hi", "{ok:?}");
        }
        assert!(padding_optional("aG k=").is_err());
        assert_eq!(line_wrapped("aGVs\r\nbG8=\n").unwrap(), b"hello");
        assert!(line_wrapped("aGVs bG8=").is_err());
        assert!(line_wrapped("aGk").is_err());
        assert_eq!(url_unpadded("_-8").unwrap(), [0xff, 0xef]);
        for not in ["/+8", "_-8=", " _-8"] {
            assert!(url_unpadded(not).is_err(), "{not:?}");
        }
        assert_eq!(encode(b"hi"), "aGk=");
    }
}
