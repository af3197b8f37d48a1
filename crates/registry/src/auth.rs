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

/// Where an address is, for deciding where credentials may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Public,
    /// Loopback, RFC 1918, unique-local, CGNAT, unspecified: the node's own networks.
    Internal,
    /// 169.254/16, fe80::/10: cloud metadata services live here.
    LinkLocal,
}

fn place(ip: std::net::IpAddr) -> Place {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) if a.is_link_local() => Place::LinkLocal,
        IpAddr::V4(a)
            if a.is_loopback()
                || a.is_private()
                || a.is_unspecified()
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64) =>
        {
            Place::Internal
        }
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Place::LinkLocal,
        IpAddr::V6(a)
            if a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xfe00) == 0xfc00 =>
        {
            Place::Internal
        }
        _ => Place::Public,
    }
}

/// The addresses `url`'s host resolves to (an IP literal is its own).
async fn addresses(url: &reqwest::Url) -> Result<Vec<std::net::SocketAddr>, String> {
    let host = url
        .host_str()
        .ok_or_else(|| format!("{} names no host", codes::text::capped(url.as_str(), 200)))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(vec![std::net::SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<_> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("{} does not resolve: {e}", codes::text::capped(host, 200)))?
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "{} resolves to no address",
            codes::text::capped(host, 200)
        ));
    }
    Ok(addrs)
}

/// Whether a token service at `realm` may be asked by the registry that sent the
/// challenge from `asker`: never over plain HTTP for a registry reached over HTTPS
/// (the login would cross the network in clear), never another scheme, and never on a
/// link-local or internal address unless the registry itself is on one of that kind (a
/// hostile registry pointing its realm at a metadata service or an internal host would
/// otherwise make pullguardd send the node's credentials, or its requests, there).
/// cosign refuses plain-HTTP realms too.
///
/// Returns the realm's addresses that were checked: the request must connect to those
/// and no others, or a name that resolves to a public address for the check and to a
/// metadata address for the request (DNS rebinding) walks around it.
pub async fn check_realm(
    asker: &reqwest::Url,
    realm: &reqwest::Url,
) -> Result<Vec<std::net::SocketAddr>, String> {
    match (asker.scheme(), realm.scheme()) {
        (_, "https") | ("http", "http") => {}
        ("https", "http") => {
            return Err("over plain HTTP although the registry is reached over HTTPS".to_owned())
        }
        (_, other) => return Err(format!("over the scheme {other:?}")),
    }
    let theirs = addresses(realm).await?;
    let ours: Vec<Place> = addresses(asker)
        .await?
        .into_iter()
        .map(|a| place(a.ip()))
        .collect();
    for a in &theirs {
        let p = place(a.ip());
        let ok = match p {
            Place::Public => true,
            Place::Internal => ours.iter().all(|o| *o != Place::Public),
            Place::LinkLocal => ours.iter().all(|o| *o == Place::LinkLocal),
        };
        if !ok {
            return Err(format!(
                "on a {} address while the registry is not",
                if p == Place::LinkLocal {
                    "link-local"
                } else {
                    "loopback or private"
                }
            ));
        }
    }
    Ok(theirs)
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

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn credentials_in_clear_plain_http_realms_are_refused_for_https_registries() {
        let reg = url("https://203.0.113.7/v2/app/manifests/v1");
        let err = check_realm(&reg, &url("http://203.0.113.8/token"))
            .await
            .unwrap_err();
        assert!(err.contains("plain HTTP"), "{err}");
        assert!(check_realm(&reg, &url("ftp://203.0.113.8/token"))
            .await
            .is_err());
        check_realm(&reg, &url("https://203.0.113.8/token"))
            .await
            .unwrap();
        // A registry the operator reaches over plain HTTP may have a plain-HTTP realm.
        check_realm(
            &url("http://10.0.0.5:5000/v2/"),
            &url("http://10.0.0.5:5001/token"),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn credentials_to_internal_hosts_realms_on_metadata_or_private_addresses_are_refused() {
        let public = url("https://203.0.113.7/v2/");
        for realm in [
            "https://169.254.169.254/latest/meta-data",
            "https://[fe80::1]/token",
            "https://10.1.2.3/token",
            "https://192.168.1.1/token",
            "https://127.0.0.1:8080/token",
            "https://[::1]/token",
            "https://[fd00::1]/token",
            "https://[::ffff:169.254.169.254]/token",
            "https://100.64.0.1/token",
            "https://localhost/token",
        ] {
            assert!(check_realm(&public, &url(realm)).await.is_err(), "{realm}");
        }
        // A registry on the node's own network may use a token service there, but not a
        // metadata address.
        let internal = url("https://10.0.0.5/v2/");
        check_realm(&internal, &url("https://10.0.0.6/token"))
            .await
            .unwrap();
        check_realm(&internal, &url("https://127.0.0.1:5001/token"))
            .await
            .unwrap();
        assert!(check_realm(&internal, &url("https://169.254.169.254/"))
            .await
            .is_err());
    }
}
