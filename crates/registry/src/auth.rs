//! Credentials as a docker `config.json` holds them (`auths.HOST.auth`, or `username` and
//! `password`), and the answer to a registry's `WWW-Authenticate` challenge: Basic, or a
//! Bearer token from the registry's token service. Credential helpers (`credsStore`,
//! `credHelpers`) are not run: pullguardd would execute a program named by a file; such
//! entries are reported, not silently skipped.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::Error;

const MAX_CONFIG: u64 = 1 << 20;

/// Basic credentials per registry host.
#[derive(Clone, Default)]
pub struct Credentials {
    by_host: BTreeMap<String, (String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_list().entries(self.by_host.keys()).finish()
    }
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Credentials {
    /// Reads a docker config.json. Returns the credentials and warnings for what is
    /// present but not used (credential helpers, entries without a password).
    pub fn load(path: &Path) -> Result<(Credentials, Vec<String>), Error> {
        let bad = |detail: String| Error::AuthFile {
            path: path.display().to_string(),
            detail,
        };
        let text = crate::hosts::read_small(path, MAX_CONFIG).map_err(bad)?;
        let raw: RawConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut warnings = Vec::new();
        if let Some(store) = raw.creds_store {
            warnings.push(format!("{}: credsStore {store:?} is not run by pullguardd; write the registry's credentials into auths", path.display()));
        }
        for (host, helper) in raw.cred_helpers {
            warnings.push(format!("{}: credHelpers {host} = {helper:?} is not run by pullguardd; write the registry's credentials into auths", path.display()));
        }
        let mut by_host = BTreeMap::new();
        for (key, a) in raw.auths {
            let pair = match (a.auth, a.username, a.password) {
                (Some(auth), _, _) if !auth.is_empty() => base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))),
                (_, Some(u), Some(p)) => Some((u, p)),
                _ => None,
            };
            match pair {
                Some(pair) => {
                    by_host.insert(host_of(&key), pair);
                }
                None => warnings.push(format!(
                    "{}: auths entry {key:?} has no usable auth or username and password",
                    path.display()
                )),
            }
        }
        Ok((Credentials { by_host }, warnings))
    }

    /// The credentials for a registry host, as the reference names it.
    pub fn for_host(&self, host: &str) -> Option<&(String, String)> {
        self.by_host.get(host)
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `registry.test:5000` as it is; also the
/// host of an endpoint URL.
pub fn host_of(key: &str) -> String {
    let h = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

/// The `Authorization` value for Basic credentials.
pub fn basic((user, pass): &(String, String)) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// `realm="https://auth.example/token",service="reg",scope="repository:a:pull,push"` as
/// pairs; commas inside quotes belong to the value.
pub fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_owned()));
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_keep_commas_inside_quotes() {
        let p = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/alpine:pull,push".into()),
            ]
        );
        let p = challenge_params("realm=https://a/t, service=x");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://a/t".into()),
                ("service".into(), "x".into())
            ]
        );
    }

    #[test]
    fn docker_config_entries_and_what_is_not_used() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        std::fs::write(
            &f,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"reg.test:5000":{{"username":"a","password":"b"}},"empty.test":{{}}}},"credsStore":"desktop"}}"#),
        )
        .unwrap();
        let (c, w) = Credentials::load(&f).unwrap();
        assert_eq!(c.for_host("docker.io"), Some(&("u".into(), "p:w".into())));
        assert_eq!(c.for_host("reg.test:5000"), Some(&("a".into(), "b".into())));
        assert_eq!(c.for_host("empty.test"), None);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(!format!("{c:?}").contains("p:w"));
        // Endpoints are looked up by their own host: Docker Hub's API host is docker.io's,
        // a mirror is itself.
        assert_eq!(host_of("https://registry-1.docker.io"), "docker.io");
        assert_eq!(host_of("http://mirror.test:5000/v2"), "mirror.test:5000");
    }
}
