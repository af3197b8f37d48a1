//! Image references, normalised as containerd and Docker do.
//!
//! `alpine` → `docker.io/library/alpine:latest`, `user/app:v1` → `docker.io/user/app:v1`,
//! `index.docker.io/x` → `docker.io/library/x`. A first component with a `.` or `:`, or
//! `localhost`, is a registry. Repository paths must be lowercase; digests must be
//! `sha256:` and 64 hex digits, since nothing else can be checked against trust data.

use std::fmt;

/// Docker's `NameTotalLengthMax`: registry and path together, as normalised.
pub const MAX_REPOSITORY_LEN: usize = 255;

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
            Some((first, rest)) if names_a_host(first) => {
                let host = canonical_host(first).map_err(|why| err(&why))?;
                // `REGISTRY/app` or `registry./app` name a host by Docker's rule, but
                // written as `registry/app` it would be a Docker Hub repository: refused
                // rather than given two meanings.
                if !(host.contains(['.', ':']) || host == "localhost") {
                    return Err(err(
                        "a registry host needs a dot or a port (or is localhost); this one would read as a Docker Hub repository",
                    ));
                }
                (host, rest.to_owned())
            }
            _ => {
                if name.starts_with("sha256:") || name == "sha256" {
                    return Err(err(
                        "a bare digest names no repository; write REPOSITORY@sha256:HEX",
                    ));
                }
                ("docker.io".to_owned(), name.to_owned())
            }
        };
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
        // Docker's limit on a repository name, counted as normalised: it also keeps the
        // normal form itself parseable (a 4090-byte `aaa…` grows past the input limit).
        if domain.len() + 1 + path.len() > MAX_REPOSITORY_LEN {
            return Err(err(
                "the repository name (registry/path, as normalised) is longer than 255 bytes",
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

/// Docker's rule for where the registry ends: whether a name's first component (before
/// its first `/`) names a host — it has a `.` or `:`, is `localhost`, or has an
/// upper-case letter. Otherwise the name is a Docker Hub repository.
pub fn names_a_host(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// A registry host as one spelling: lower case, no trailing dot, no leading zeros in the
/// port, no `:443` (the scheme's default), Docker Hub's aliases folded into `docker.io`.
/// Anything but ASCII letters, digits, `-` and `.` (and a port) is refused: a registry
/// reached under another spelling must not reach another rule.
pub fn canonical_host(host: &str) -> Result<String, String> {
    let lower = host.to_ascii_lowercase();
    let (name, port) = match lower.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (lower.as_str(), None),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "registry host {host:?} is not a DNS name or IPv4 address of ASCII letters, digits, '-' and '.'"
        ));
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n = (!p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u32>().ok())
                .flatten()
                .filter(|n| (1..=65535).contains(n))
                .ok_or_else(|| {
                    format!("registry port in {host:?} is not a number from 1 to 65535")
                })?;
            (n != 443).then_some(n)
        }
    };
    let joined = match port {
        Some(p) => format!("{name}:{p}"),
        None => name.to_owned(),
    };
    Ok(match joined.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => joined,
    })
}

/// A trust anchor's repository (`keys pin`, the keys directory's `index.toml`) as the
/// node names repositories, which is the Notary GUN: a name as [`ImageRef::repository`]
/// gives it, or a prefix ending in `*` whose registry host is spelled as
/// [`canonical_host`] spells it. An anchor spelled otherwise (`docker.io/alpine`,
/// `Registry.example.com/team/*`) would match no repository, and the rule's trust on
/// first use would decide instead of the pin.
pub fn anchor_repository(pattern: &str) -> Result<String, String> {
    if let Some(prefix) = pattern.strip_suffix('*') {
        // `*` alone (every repository) and a prefix of a host name are compared as
        // written, in lower case: no host spelling to fold there.
        let Some((host, rest)) = prefix.split_once('/') else {
            return Ok(pattern.to_ascii_lowercase());
        };
        if !names_a_host(host) {
            return Err(format!(
                "{pattern:?}: {host:?} is not a registry host, so this is a Docker Hub name; write it as the node names it, e.g. \"docker.io/library/{prefix}*\""
            ));
        }
        let host = canonical_host(host).map_err(|e| format!("{pattern:?}: {e}"))?;
        return Ok(format!("{host}/{}*", rest.to_ascii_lowercase()));
    }
    let last = pattern.rsplit('/').next().unwrap_or(pattern);
    if pattern.contains('@') || last.contains(':') {
        return Err(format!(
            "{pattern:?}: an anchor names a repository with its registry host, without a tag or digest (e.g. \"docker.io/library/alpine\")"
        ));
    }
    ImageRef::parse(pattern)
        .map(|r| r.repository())
        .map_err(|e| format!("{pattern:?} is not a repository name ({e})"))
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
        assert_eq!(
            norm("REGISTRY.example.com/app"),
            "registry.example.com/app:latest"
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
            "app//x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// Found by the image_ref fuzz target: a long Docker Hub name grew past the input
    /// limit when normalised, so its own normal form no longer parsed.
    #[test]
    fn repository_names_longer_than_dockers_limit_are_refused_as_normalised() {
        // "docker.io/library/" is 18 bytes: 237 more make 255.
        let fits = "a".repeat(237);
        let normal = norm(&fits);
        assert_eq!(normal, format!("docker.io/library/{fits}:latest"));
        assert_eq!(norm(&normal), normal);
        for bad in [
            "a".repeat(238),
            "a".repeat(4090),
            format!("registry.example.com/{}", "b".repeat(235)),
        ] {
            assert!(ImageRef::parse(&bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// Every spelling of one registry that containerd reaches as that registry must get
    /// the same rule: the red team reached a catch-all with each of these.
    #[test]
    fn host_spellings_of_one_registry_fold_into_one() {
        for (spelling, canonical) in [
            (
                "registry.example.com:443/prod/app:v1",
                "registry.example.com/prod/app:v1",
            ),
            (
                "registry.example.com:0443/prod/app:v1",
                "registry.example.com/prod/app:v1",
            ),
            (
                "registry.example.com./prod/app:v1",
                "registry.example.com/prod/app:v1",
            ),
            (
                "registry.example.com.:443/prod/app:v1",
                "registry.example.com/prod/app:v1",
            ),
            (
                "Registry.Example.COM/prod/app:v1",
                "registry.example.com/prod/app:v1",
            ),
            ("localhost:05000/app:v1", "localhost:5000/app:v1"),
            ("localhost./app:v1", "localhost/app:v1"),
            ("LOCALHOST/app:v1", "localhost/app:v1"),
            (
                "docker.io:443/library/alpine:3",
                "docker.io/library/alpine:3",
            ),
            ("index.docker.io:443/alpine:3", "docker.io/library/alpine:3"),
            (
                "registry-1.docker.io/alpine:3",
                "docker.io/library/alpine:3",
            ),
            (
                "registry.hub.docker.com/alpine:3",
                "docker.io/library/alpine:3",
            ),
        ] {
            assert_eq!(norm(spelling), canonical, "{spelling}");
        }
    }

    #[test]
    fn hosts_outside_ascii_letters_digits_dash_and_dot_are_refused() {
        for bad in [
            "ｒｅｇｉｓｔｒｙ.example.com/prod/app:v1",
            "registry.exämple.com/prod/app:v1",
            "registry.example.com\u{ff0e}/prod/app:v1",
            "[::1]:5000/app:v1",
            "registry..example.com/app",
            ".registry.example.com/app",
            "registry.example.com:/app",
            "registry.example.com:0/app",
            "registry.example.com:65536/app",
            "registry.example.com:+443/app",
            "registry_x.example.com/app",
            "-registry.example.com/app",
            "REGISTRY/app:v1",
            "registry./app:v1",
        ] {
            let r = ImageRef::parse(bad);
            assert!(r.is_err(), "{bad:?} should be refused, got {r:?}");
        }
    }

    /// containerd's CRI ID records are named `sha256:<id>`; that is no repository.
    #[test]
    fn a_bare_digest_is_not_a_reference() {
        let hex = "a".repeat(64);
        let e = ImageRef::parse(&format!("sha256:{hex}")).expect_err("bare digest");
        assert!(e.why.contains("bare digest"), "{e}");
        assert!(ImageRef::parse("sha256").is_err());
    }

    #[test]
    fn repository_is_the_gun() {
        assert_eq!(
            ImageRef::parse("alpine:3").map(|r| r.repository()),
            Ok("docker.io/library/alpine".to_owned())
        );
    }
}
