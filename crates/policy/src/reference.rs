//! Image references, normalised as containerd and Docker do.
//!
//! `alpine` → `docker.io/library/alpine:latest`, `user/app:v1` → `docker.io/user/app:v1`,
//! `index.docker.io/x` → `docker.io/library/x`. A first component with a `.` or `:`, or
//! `localhost`, is a registry. Repository paths must be lowercase; digests must be
//! `sha256:` and 64 hex digits, since nothing else can be checked against trust data.

use std::fmt;

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {why}")]
pub struct ReferenceError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong.
    pub why: String,
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (and port), e.g. `docker.io`.
    pub domain: String,
    /// Repository path, e.g. `library/alpine`.
    pub path: String,
    /// Tag, if any (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// SHA-256 digest, lowercase hex, if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises `reference`.
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let err = |why: &str| ReferenceError {
            reference: reference.to_owned(),
            why: why.to_owned(),
        };
        if reference.is_empty() || reference.len() > 4096 {
            return Err(err("empty or longer than 4096 bytes"));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(err("contains whitespace or control characters"));
        }
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| err("only sha256 digests can be checked against trust data"))?;
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(err("a sha256 digest is 64 lowercase hex digits"));
                }
                (n, Some(hex.to_owned()))
            }
            None => (reference, None),
        };
        // A tag follows the last ':' after the last '/', so "host:5000/app" has none.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(err(
                    "a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let domain = match domain.as_str() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
            _ => domain,
        };
        if domain.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("registry host must be lowercase"));
        }
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        };
        if !path.split('/').all(component_ok) {
            return Err(err(
                "repository path components are lowercase letters, digits and . _ -",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `docker.io/library/alpine`: the repository, which is also the Notary GUN.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@sha256:{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(
            norm("docker.io/library/alpine:3.20"),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(
            norm("index.docker.io/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(
            norm("127.0.0.1:5000/demo/app:v3"),
            "127.0.0.1:5000/demo/app:v3"
        );
        assert_eq!(
            norm("registry.example.com:5000/app"),
            "registry.example.com:5000/app:latest"
        );
        let d = "a".repeat(64);
        assert_eq!(
            norm(&format!("app@sha256:{d}")),
            format!("docker.io/library/app@sha256:{d}")
        );
        assert_eq!(
            norm(&format!("app:v1@sha256:{d}")),
            format!("docker.io/library/app:v1@sha256:{d}")
        );
    }

    #[test]
    fn refuses_what_cannot_be_checked() {
        for bad in [
            "",
            "Alpine",
            "docker.io/Library/alpine",
            "app@sha512:abcd",
            "app@sha256:ABCDEF",
            "app@sha256:abc",
            "app:",
            "app:-x",
            "a b",
            "REGISTRY.example.com/app",
            "app//x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn repository_is_the_gun() {
        assert_eq!(
            ImageRef::parse("alpine:3").map(|r| r.repository()),
            Ok("docker.io/library/alpine".to_owned())
        );
    }
}
