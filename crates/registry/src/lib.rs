//! The OCI distribution API, read-only, as pullguardd needs it to find signatures stored
//! beside images: manifests by tag or digest, blobs by digest, and the OCI 1.1 referrers
//! API with its tag-schema fallback. Registry access follows containerd's: `hosts.toml`
//! under a `config_path` for mirrors, CAs and plain-HTTP registries ([`hosts`]), and
//! credentials from a docker `config.json` ([`auth`]).
//!
//! Everything read is bounded; content fetched by digest is hashed and compared, so a
//! mirror cannot substitute it. Nothing here decides whether a signature is good.

pub mod auth;
pub mod hosts;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub use auth::Credentials;
pub use hosts::Endpoint;

/// Manifests and indexes: registries cap them at 4 MiB.
pub const MAX_MANIFEST: usize = 4 << 20;
/// Referrers considered for one image at most.
pub const MAX_REFERRERS: usize = 64;
const MAX_TOKEN_ANSWER: usize = 1 << 20;
/// A token is reused this long when the service does not say (Docker's default is 60 s).
const TOKEN_REUSE: Duration = Duration::from_secs(50);

/// The media types a manifest or index may have.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What went wrong, saying where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hosts.toml that cannot be used.
    #[error("registry host configuration {path}: {detail}")]
    HostsFile { path: String, detail: String },
    /// A docker config.json that cannot be used.
    #[error("registry credentials file {path}: {detail}")]
    AuthFile { path: String, detail: String },
    /// A CA file named by hosts.toml that cannot be used.
    #[error("CA file {path} named in hosts.toml: {detail}")]
    BadCa { path: String, detail: String },
    /// No answer (connection, timeout, a server error).
    #[error("registry {url} could not be asked: {detail}")]
    Unreachable { url: String, detail: String },
    /// The registry refused (authentication, permission, or an unexpected status).
    #[error("registry {url} answered {status}{detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    /// An answer over its size limit.
    #[error("registry {url} sent more than {limit} bytes")]
    Oversized { url: String, limit: usize },
    /// An answer that is not what was asked for.
    #[error("registry {url} sent {detail}")]
    Invalid { url: String, detail: String },
}

impl Error {
    /// The registry could not be asked, as opposed to having answered.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }
}

/// A document fetched from a registry.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its media type, from the document itself when it says, else the header.
    pub media_type: String,
    /// `sha256:<hex>` of the bytes, computed here.
    pub digest: String,
}

/// A descriptor from an index (referrers answer or fallback tag).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of what it points to.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// The artifact type, for referrers.
    #[serde(rename = "artifactType", default)]
    pub artifact_type: String,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A client for every registry, configured like the node's containerd.
pub struct Client {
    config_path: Option<PathBuf>,
    credentials: Credentials,
    timeout: Duration,
    /// HTTP clients per TLS configuration (CA files, skip_verify).
    http: Mutex<HashMap<(Vec<PathBuf>, bool), reqwest::Client>>,
    /// Bearer tokens per endpoint and repository.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Hosts reached over plain HTTP when no hosts.toml says otherwise (the CLI's
    /// `--insecure-registry`).
    plain_http: Vec<String>,
}

impl Client {
    /// A client reading `hosts.toml` files under `config_path` and credentials from
    /// `auth_file`. Returns warnings for what the credentials file holds but is not used.
    pub fn new(
        config_path: Option<&Path>,
        auth_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<(Client, Vec<String>), Error> {
        let (credentials, warnings) = match auth_file {
            Some(f) => Credentials::load(f)?,
            None => (Credentials::default(), Vec::new()),
        };
        Ok((
            Client {
                config_path: config_path.map(Path::to_path_buf),
                credentials,
                timeout,
                http: Mutex::default(),
                tokens: Mutex::default(),
                plain_http: Vec::new(),
            },
            warnings,
        ))
    }

    /// Reaches `hosts` over plain HTTP where no hosts.toml names their server.
    pub fn with_plain_http(mut self, hosts: Vec<String>) -> Client {
        self.plain_http = hosts;
        self
    }

    fn http(&self, e: &Endpoint) -> Result<reqwest::Client, Error> {
        let key = (e.ca.clone(), e.skip_verify);
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        notary_client::use_ring_for_tls();
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            // Blobs are often redirected to storage; a few hops at most.
            .redirect(reqwest::redirect::Policy::limited(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("pullguardd/", env!("CARGO_PKG_VERSION")));
        for ca in &e.ca {
            let bad = |detail: String| Error::BadCa {
                path: ca.display().to_string(),
                detail,
            };
            let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))? {
                b = b.add_root_certificate(c);
            }
        }
        if e.skip_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let c = b.build().map_err(|err| Error::BadCa {
            path: format!("{:?}", e.ca),
            detail: api::error_chain(&err),
        })?;
        map.insert(key, c.clone());
        Ok(c)
    }

    /// The manifest `reference` (a tag, or `sha256:<hex>`) of `repo` on `host`; `None`
    /// when the registry says it does not exist. By digest, the bytes must hash to it.
    pub async fn manifest(
        &self,
        host: &str,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Fetched>, Error> {
        let by_digest = reference.starts_with("sha256:");
        let got = self
            .get(
                host,
                repo,
                &format!("manifests/{reference}"),
                by_digest,
                MAX_MANIFEST,
            )
            .await?;
        let Some((bytes, header_type, url)) = got else {
            return Ok(None);
        };
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if by_digest && digest != reference {
            return Err(Error::Invalid {
                url,
                detail: format!("a manifest hashing to {digest}, not the {reference} asked for"),
            });
        }
        #[derive(Deserialize)]
        struct Typed {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let media_type = serde_json::from_slice::<Typed>(&bytes)
            .ok()
            .and_then(|t| t.media_type)
            .unwrap_or(header_type);
        Ok(Some(Fetched {
            bytes,
            media_type,
            digest,
        }))
    }

    /// The blob `digest` of `repo`, at most `limit` bytes, checked against its digest.
    pub async fn blob(
        &self,
        host: &str,
        repo: &str,
        digest: &str,
        limit: usize,
    ) -> Result<Vec<u8>, Error> {
        let path = format!("blobs/{digest}");
        let (bytes, _, url) = self
            .get(host, repo, &path, true, limit)
            .await?
            .ok_or_else(|| Error::Refused {
                url: format!("{host}/{repo}/{path}"),
                status: 404,
                detail: ": a blob its manifest lists is missing".to_owned(),
            })?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest {
            return Err(Error::Invalid {
                url,
                detail: format!("a blob hashing to {actual}, not {digest}"),
            });
        }
        Ok(bytes)
    }

    /// The manifests that refer to `digest` with `artifact_type`: the OCI 1.1 referrers
    /// API, or, where the registry has none, the tag-schema fallback `sha256-<hex>`.
    pub async fn referrers(
        &self,
        host: &str,
        repo: &str,
        digest: &str,
        artifact_type: &str,
    ) -> Result<Vec<Descriptor>, Error> {
        let path = format!("referrers/{digest}?artifactType={artifact_type}");
        let index = match self.get(host, repo, &path, true, MAX_MANIFEST).await? {
            Some((bytes, _, url)) => Some((bytes, url)),
            None => {
                let tag = digest.replacen(':', "-", 1);
                self.manifest(host, repo, &tag)
                    .await?
                    .map(|f| (f.bytes, format!("{host}/{repo}:{tag}")))
            }
        };
        let Some((bytes, url)) = index else {
            return Ok(Vec::new());
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
            url: url.clone(),
            detail: format!("a referrers index that is not an OCI index: {e}"),
        })?;
        if index.manifests.len() > MAX_REFERRERS * 4 {
            return Err(Error::Oversized {
                url,
                limit: MAX_REFERRERS * 4,
            });
        }
        // Registries may ignore the filter; it is applied here too.
        Ok(index
            .manifests
            .into_iter()
            .filter(|d| d.artifact_type == artifact_type)
            .take(MAX_REFERRERS)
            .collect())
    }

    /// GET `path` under `repo` from the first endpoint that answers; `None` on 404 from
    /// the last one asked. Mirrors that fail or lack it pass the request on.
    async fn get(
        &self,
        host: &str,
        repo: &str,
        path: &str,
        by_digest: bool,
        limit: usize,
    ) -> Result<Option<(Vec<u8>, String, String)>, Error> {
        let mut endpoints = hosts::endpoints(self.config_path.as_deref(), host)?;
        if self.plain_http.iter().any(|h| h == host) {
            let https = format!("https://{}", hosts::api_host(host));
            for e in endpoints.iter_mut().filter(|e| e.url == https) {
                e.url = format!("http://{}", hosts::api_host(host));
            }
        }
        let usable: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|e| if by_digest { e.pull } else { e.resolve })
            .collect();
        let mut last = Ok(None);
        for e in usable {
            let base = if e.override_path {
                e.url.clone()
            } else {
                format!("{}/v2", e.url)
            };
            let url = format!("{base}/{repo}/{path}");
            match self.get_one(e, host, repo, &url, limit).await {
                Ok(Some(found)) => return Ok(Some(found)),
                other => last = other,
            }
        }
        last
    }

    async fn get_one(
        &self,
        e: &Endpoint,
        host: &str,
        repo: &str,
        url: &str,
        limit: usize,
    ) -> Result<Option<(Vec<u8>, String, String)>, Error> {
        let client = self.http(e)?;
        let token_key = format!("{}\u{0}{repo}", e.url);
        let cached = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&token_key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone());
        let unreachable = |err: reqwest::Error| Error::Unreachable {
            url: url.to_owned(),
            detail: api::error_chain(&err),
        };
        let send = |auth: Option<String>| {
            let mut req = client.get(url).header("Accept", MANIFEST_TYPES.join(", "));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send()
        };
        let mut resp = send(cached).await.map_err(unreachable)?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = header(&resp, "www-authenticate");
            // Credentials of the host that asks for them: a mirror never gets the
            // registry's (containerd keys them by the host it talks to, too).
            let asker = auth::host_of(&e.url);
            let (auth, reuse) = self.answer(&client, &challenge, &asker, repo).await?;
            if let Some(until) = reuse {
                self.tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(token_key, (auth.clone(), until));
            }
            resp = send(Some(auth)).await.map_err(unreachable)?;
        }
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::Unreachable {
                url: url.to_owned(),
                detail: format!("it answered {status}"),
            });
        }
        if !status.is_success() {
            let detail = match status.as_u16() {
                401 | 403 => format!(
                    ": give pullguardd credentials for {host} (registry_auth_file in [daemon])"
                ),
                _ => String::new(),
            };
            return Err(Error::Refused {
                url: url.to_owned(),
                status: status.as_u16(),
                detail,
            });
        }
        let media_type = header(&resp, "content-type");
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(Error::Oversized {
                url: url.to_owned(),
                limit,
            });
        }
        let bytes = read_capped(resp, limit, url).await?;
        Ok(Some((bytes, media_type, url.to_owned())))
    }

    /// The `Authorization` value answering a 401's challenge, and until when a bearer
    /// token may be reused.
    async fn answer(
        &self,
        client: &reqwest::Client,
        challenge: &str,
        host: &str,
        repo: &str,
    ) -> Result<(String, Option<Instant>), Error> {
        let creds = self.credentials.for_host(host);
        let refused = |detail: String| Error::Refused {
            url: host.to_owned(),
            status: 401,
            detail,
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return creds.map(|c| (auth::basic(c), None)).ok_or_else(|| {
                refused(format!(
                    ": {host} wants a login; put credentials for it into registry_auth_file"
                ))
            });
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(refused(format!(
                ": authentication pullguardd does not speak: {:?}",
                challenge.chars().take(100).collect::<String>()
            )));
        }
        let params = auth::challenge_params(params);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = param("realm")
            .ok_or_else(|| refused(": its bearer challenge names no realm".to_owned()))?;
        let scope = param("scope")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("repository:{repo}:pull"));
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        let url = reqwest::Url::parse_with_params(realm, &query)
            .map_err(|e| refused(format!(": its token realm {realm:?} is not a URL: {e}")))?;
        let mut req = client.get(url);
        if let Some(c) = creds {
            req = req.header("Authorization", auth::basic(c));
        }
        let resp = req.send().await.map_err(|e| Error::Unreachable {
            url: realm.to_owned(),
            detail: api::error_chain(&e),
        })?;
        if !resp.status().is_success() {
            return Err(Error::Refused {
                url: realm.to_owned(),
                status: resp.status().as_u16(),
                detail: format!(": the token service refused; check the credentials for {host}"),
            });
        }
        let body = read_capped(resp, MAX_TOKEN_ANSWER, realm).await?;
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| Error::Invalid {
            url: realm.to_owned(),
            detail: format!("no token JSON: {e}"),
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Invalid {
                url: realm.to_owned(),
                detail: "no token".to_owned(),
            })?;
        let reuse = t
            .expires_in
            .map(|s| Duration::from_secs(s.saturating_sub(10)))
            .unwrap_or(TOKEN_REUSE)
            .min(Duration::from_secs(3600));
        Ok((format!("Bearer {token}"), Some(Instant::now() + reuse)))
    }
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Unreachable {
        url: url.to_owned(),
        detail: api::error_chain(&e),
    })? {
        if bytes.len() + chunk.len() > limit {
            return Err(Error::Oversized {
                url: url.to_owned(),
                limit,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
