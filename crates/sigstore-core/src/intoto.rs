//! in-toto statements, the DSSE payload of Sigstore bundles, read by one strict parser
//! for image signatures and artifacts alike: a field read here given twice (a statement
//! whose `subject` means one thing to this reader and another to the next) refuses the
//! statement, as sigstore-go's protobuf reader refuses it. The predicate is not read.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The parts of a statement a verifier reads.
#[derive(Debug, Deserialize)]
pub(crate) struct Statement {
    /// `https://in-toto.io/Statement/v1` (or v0.1).
    #[serde(rename = "_type", default)]
    pub(crate) type_: Option<String>,
    /// What the predicate says (cosign's image signatures:
    /// `https://sigstore.dev/cosign/sign/v1`).
    #[serde(rename = "predicateType", default)]
    pub(crate) predicate_type: Option<String>,
    /// What the statement is about.
    #[serde(default)]
    pub(crate) subject: Option<Vec<Subject>>,
}

/// One subject of a statement.
#[derive(Debug, Deserialize)]
pub(crate) struct Subject {
    /// Its digests by algorithm, each algorithm once.
    #[serde(default, deserialize_with = "proof_kit::json::unique_strings")]
    pub(crate) digest: BTreeMap<String, String>,
}

impl Statement {
    /// Reads a statement; the error says why it is not one.
    pub(crate) fn parse(payload: &[u8]) -> Result<Statement, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// The SHA-256 digests (hex) its subjects name, in order.
    pub(crate) fn sha256s(&self) -> impl Iterator<Item = &str> {
        self.subject
            .iter()
            .flatten()
            .filter_map(|s| s.digest.get("sha256").map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::Statement;

    #[test]
    fn a_subject_or_digest_given_twice_refuses_the_statement() {
        let good = br#"{"_type":"t","subject":[{"name":"a","digest":{"sha256":"aa"}},{"digest":{"sha256":"bb"}}],"predicateType":"p","predicate":{"x":1.5}}"#;
        let st = Statement::parse(good).unwrap();
        assert_eq!(st.sha256s().collect::<Vec<_>>(), ["aa", "bb"]);
        assert_eq!(st.predicate_type.as_deref(), Some("p"));
        for twice in [
            &br#"{"_type":"t","subject":[{"digest":{"sha256":"aa","sha256":"bb"}}]}"#[..],
            br#"{"_type":"t","subject":[{"digest":{"sha256":"aa"}}],"subject":[{"digest":{"sha256":"bb"}}]}"#,
            br#"{"_type":"t","_type":"u","subject":[]}"#,
            br#"{"_type":"t","predicateType":"p","predicateType":"q"}"#,
        ] {
            assert!(Statement::parse(twice).is_err(), "{}", String::from_utf8_lossy(twice));
        }
    }
}
