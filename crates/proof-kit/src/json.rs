//! JSON read strictly where serde's defaults are lax: a map whose keys must be unique
//! (serde_json keeps the last of two equal keys, where another reader may take the
//! first: a signed document must mean one thing to every reader).

use std::collections::BTreeMap;

use serde::de::{Deserializer, MapAccess, Visitor};

/// A map of strings whose keys are each given once (`#[serde(deserialize_with)]`).
pub fn unique_strings<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of strings, each key once")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = a.next_entry::<String, String>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "key {:?} is given twice",
                        k.chars().take(100).collect::<String>()
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct M {
        #[serde(deserialize_with = "super::unique_strings")]
        m: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn a_key_given_twice_is_refused_and_named() {
        let e = serde_json::from_str::<M>(r#"{"m":{"a":"1","a":"2"}}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("\"a\" is given twice"), "{e}");
        let ok = serde_json::from_str::<M>(r#"{"m":{"a":"1","b":"2"}}"#).unwrap();
        assert_eq!(ok.m.len(), 2);
    }
}
