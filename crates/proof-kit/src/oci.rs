//! OCI image manifests as the signature formats store them (cosign's classic signature
//! manifests and bundle referrers, Notation's signature manifests), read by one strict
//! parser: a field given twice, an key given twice or a field of the wrong type
//! refuses the manifest (a lax reader would let the last duplicate win where another
//! reader takes the first), and a manifest lists at most [`MAX_LAYERS`] layers.

use std::collections::BTreeMap;

use crate::Error;
use serde::Deserialize;

/// The most layers a signature manifest may list (cosign writes one per signature,
/// Notation one).
pub const MAX_LAYERS: usize = 64;

/// A content descriptor: what a manifest says of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type (empty when the manifest gives none).
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>` (not checked here: the registry client checks what it fetches).
    pub digest: String,
    /// Its size in bytes, as claimed.
    pub size: u64,
    /// Its annotations.
    #[serde(default, deserialize_with = "crate::json::unique_strings")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest, the parts the signature formats read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Its media type, when it says.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Its artifact type, when it says.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Its layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest it refers to (OCI 1.1 referrers).
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Its annotations.
    #[serde(default, deserialize_with = "crate::json::unique_strings")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads a manifest; see the module's documentation for what refuses one.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, Error> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::Manifest(format!("not an OCI image manifest: {e}")))?;
        if m.layers.len() > MAX_LAYERS {
            return Err(Error::Manifest(format!(
                "the manifest lists {} layers, over the limit of {MAX_LAYERS}",
                m.layers.len()
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn layer(extra: &str) -> String {
        format!(r#"{{"mediaType":"t","digest":"{D}","size":3{extra}}}"#)
    }

    #[test]
    fn a_manifest_is_read_with_its_layers_subject_and_annotations() {
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"m","artifactType":"a","config":{{"mediaType":"c","digest":"{D}","size":2}},"layers":[{}],"subject":{},"annotations":{{"k":"v"}}}}"#,
            layer(r#","annotations":{"s":"sig"}"#),
            layer("")
        );
        let m = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("a"));
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].annotations["s"], "sig");
        assert_eq!(m.layers[0].size, 3);
        assert_eq!(m.subject.unwrap().digest, D);
        assert_eq!(m.annotations["k"], "v");
    }

    #[test]
    fn duplicates_wrong_types_and_too_many_layers_refuse_the_manifest() {
        let twice_annotation = format!(
            r#"{{"layers":[{}]}}"#,
            layer(r#","annotations":{"s":"good","s":"evil"}"#)
        );
        let twice_field = format!(r#"{{"layers":[],"layers":[{}]}}"#, layer(""));
        let twice_in_layer = format!(
            r#"{{"layers":[{}]}}"#,
            layer(&format!(r#","digest":"{D}""#))
        );
        let string_size = format!(r#"{{"layers":[{{"digest":"{D}","size":"3"}}]}}"#);
        let no_digest = r#"{"layers":[{"size":3}]}"#.to_owned();
        let many = format!(
            r#"{{"layers":[{}]}}"#,
            vec![layer(""); MAX_LAYERS + 1].join(",")
        );
        for (what, text) in [
            ("annotation twice", twice_annotation),
            ("field twice", twice_field),
            ("layer field twice", twice_in_layer),
            ("size as a string", string_size),
            ("no digest", no_digest),
            ("too many layers", many),
            ("not JSON", "{".to_owned()),
        ] {
            assert!(Manifest::parse(text.as_bytes()).is_err(), "{what}");
        }
        let at_limit = format!(
            r#"{{"layers":[{}]}}"#,
            vec![layer(""); MAX_LAYERS].join(",")
        );
        assert_eq!(
            Manifest::parse(at_limit.as_bytes()).unwrap().layers.len(),
            MAX_LAYERS
        );
    }
}
