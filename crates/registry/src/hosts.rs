//! containerd's registry host configuration (`config_path`, e.g. `/etc/containerd/certs.d`):
//! `DIR/HOST[:PORT]/hosts.toml`, else `DIR/_default/hosts.toml`, else the host itself over
//! HTTPS. Read the way containerd reads it, for what a signature fetch needs: `server`,
//! and `[host."URL"]` tables with `capabilities`, `ca`, `skip_verify` and `override_path`.
//! Other keys (`client`, `header`, `dial_timeout`) are refused by name rather than ignored,
//! so that an operator never believes a setting applies when it does not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// The largest hosts.toml read.
const MAX_HOSTS_FILE: u64 = 64 * 1024;

/// One place to ask, in the order containerd would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Scheme, host and port, and a path prefix when `override_path` says so.
    pub url: String,
    /// `override_path = true`: `url` already ends in the API root (no `/v2` added).
    pub override_path: bool,
    /// May answer tag lookups (`resolve`).
    pub resolve: bool,
    /// May serve content by digest (`pull`).
    pub pull: bool,
    /// CA files (PEM) trusted for it besides the system's roots.
    pub ca: Vec<PathBuf>,
    /// Its TLS certificate is not checked (containerd's `skip_verify`).
    pub skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHosts {
    server: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    ca: Option<OneOrMany>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    override_path: Option<bool>,
    #[serde(default)]
    host: BTreeMap<String, RawHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    ca: Option<OneOrMany>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    override_path: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn paths(self, dir: &Path) -> Vec<PathBuf> {
        let list = match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        list.into_iter()
            .map(|p| {
                let p = PathBuf::from(p);
                if p.is_absolute() {
                    p
                } else {
                    dir.join(p)
                }
            })
            .collect()
    }
}

/// The endpoints for `host` (as the reference names it), in the order to try them.
pub fn endpoints(config_path: Option<&Path>, host: &str) -> Result<Vec<Endpoint>, Error> {
    let default = || Endpoint {
        url: format!("https://{}", api_host(host)),
        override_path: false,
        resolve: true,
        pull: true,
        ca: Vec::new(),
        skip_verify: false,
    };
    let Some(dir) = config_path else {
        return Ok(vec![default()]);
    };
    let mut file = None;
    for name in [host_dir(host), "_default".to_owned()] {
        let f = dir.join(&name).join("hosts.toml");
        if f.is_file() {
            file = Some((dir.join(name), f));
            break;
        }
    }
    let Some((hdir, file)) = file else {
        return Ok(vec![default()]);
    };
    let bad = |detail: String| Error::HostsFile {
        path: file.display().to_string(),
        detail,
    };
    let text = read_small(&file, MAX_HOSTS_FILE).map_err(bad)?;
    let raw: RawHosts = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
    // containerd tries mirrors in the file's order; the map sorted them.
    let mut hosts: Vec<(String, RawHost)> = raw.host.into_iter().collect();
    hosts.sort_by_key(|(url, _)| text.find(&format!("\"{url}\"")).unwrap_or(usize::MAX));
    let mut out = Vec::new();
    for (url, h) in hosts {
        let caps = h
            .capabilities
            .unwrap_or_else(|| vec!["pull".into(), "resolve".into()]);
        out.push(endpoint(&url, caps, h.ca, h.skip_verify, h.override_path, &hdir).map_err(bad)?);
    }
    let server = match raw.server {
        Some(s) => endpoint(
            &s,
            raw.capabilities
                .unwrap_or_else(|| vec!["pull".into(), "resolve".into(), "push".into()]),
            raw.ca,
            raw.skip_verify,
            raw.override_path,
            &hdir,
        )
        .map_err(bad)?,
        None => default(),
    };
    out.push(server);
    Ok(out)
}

fn endpoint(
    url: &str,
    caps: Vec<String>,
    ca: Option<OneOrMany>,
    skip_verify: Option<bool>,
    override_path: Option<bool>,
    dir: &Path,
) -> Result<Endpoint, String> {
    let url = if url.contains("://") {
        url.trim_end_matches('/').to_owned()
    } else {
        format!("https://{}", url.trim_end_matches('/'))
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("host {url:?} is not an http:// or https:// URL"));
    }
    Ok(Endpoint {
        url,
        override_path: override_path.unwrap_or(false),
        resolve: caps.iter().any(|c| c == "resolve"),
        pull: caps.iter().any(|c| c == "pull"),
        ca: ca.map(|c| c.paths(dir)).unwrap_or_default(),
        skip_verify: skip_verify.unwrap_or(false),
    })
}

/// The directory name containerd looks for: the host as written, `docker.io` as such.
fn host_dir(host: &str) -> String {
    host.to_owned()
}

/// Where a registry's API is served: Docker Hub's is not at `docker.io`.
pub fn api_host(host: &str) -> &str {
    if host == "docker.io" {
        "registry-1.docker.io"
    } else {
        host
    }
}

pub(crate) fn read_small(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    f.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > limit {
        return Err(format!("over {limit} bytes"));
    }
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn write(dir: &Path, host: &str, text: &str) {
        std::fs::create_dir_all(dir.join(host)).unwrap();
        std::fs::write(dir.join(host).join("hosts.toml"), text).unwrap();
    }

    #[test]
    fn mirrors_first_then_the_server_and_unknown_keys_refused() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "registry.test:5000",
            "server = \"http://127.0.0.1:5000\"\n[host.\"https://mirror.test\"]\ncapabilities = [\"pull\"]\nca = \"m.pem\"\n",
        );
        let e = endpoints(Some(d.path()), "registry.test:5000").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].url, "https://mirror.test");
        assert!(e[0].pull && !e[0].resolve);
        assert_eq!(e[0].ca, vec![d.path().join("registry.test:5000/m.pem")]);
        assert_eq!(e[1].url, "http://127.0.0.1:5000");
        assert!(e[1].pull && e[1].resolve);

        // No file for the host: HTTPS to the host itself; Docker Hub at its API host.
        let e = endpoints(Some(d.path()), "docker.io").unwrap();
        assert_eq!(e[0].url, "https://registry-1.docker.io");

        write(
            d.path(),
            "bad.test",
            "server = \"https://x\"\n[host.\"https://m\"]\nheader = {a = \"b\"}\n",
        );
        let err = endpoints(Some(d.path()), "bad.test")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("header") && err.contains("bad.test/hosts.toml"),
            "{err}"
        );
        write(d.path(), "ftp.test", "server = \"ftp://x\"\n");
        assert!(endpoints(Some(d.path()), "ftp.test").is_err());
    }

    #[test]
    fn the_default_directory_applies_to_hosts_without_their_own() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "_default", "server = \"http://127.0.0.1:1\"\n");
        let e = endpoints(Some(d.path()), "any.test").unwrap();
        assert_eq!(e[0].url, "http://127.0.0.1:1");
    }
}
